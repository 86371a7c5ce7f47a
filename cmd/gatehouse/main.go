// Command gatehouse is an API gateway whose routes follow service discovery in
// ZooKeeper or etcd, with the registration sidecar and a demo backend.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "gatehouse:", err)
		os.Exit(1)
	}
}
