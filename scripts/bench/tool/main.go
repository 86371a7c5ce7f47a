// Command tool holds the load harness's helpers that are awkward in shell:
// picking free ports, waiting for readiness, checking a target before it is
// measured, and turning the raw samples into the results tables.
//
//	tool ports N
//	tool wait URL TIMEOUT
//	tool wait-instances ADMIN_URL SERVICE N TIMEOUT
//	tool check URL BYTES MIN_BACKENDS
//	tool report -samples FILE [-targets a,b,c] [-ticks 100]
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "ports":
		err = cmdPorts(args)
	case "wait":
		err = cmdWait(args)
	case "wait-instances":
		err = cmdWaitInstances(args)
	case "check":
		err = cmdCheck(args)
	case "report":
		err = cmdReport(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench tool %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage:
  tool ports N
  tool wait URL TIMEOUT
  tool wait-instances ADMIN_URL SERVICE N TIMEOUT
  tool check URL BYTES MIN_BACKENDS
  tool report -samples FILE [-targets a,b,c] [-ticks 100]`)
	os.Exit(2)
}
