// Package testenv starts real dependencies (ZooKeeper, etcd) for integration
// tests and holds the small helpers they share.
//
// The skip rule: a test that needs a dependency calls Require with the error
// from finding or starting it. Outside CI the test is skipped, so a laptop
// without Java still runs the rest; under CI=true it fails, so a broken CI
// image can never turn integration tests into silent skips.
package testenv

import (
	"net"
	"os"
	"strconv"
	"testing"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// InCI reports whether the environment variable CI is a true value.
func InCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// Require stops the test when a dependency is unavailable (err != nil):
// t.Fatalf under CI=true, t.Skipf otherwise. See the package doc.
func Require(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if InCI() {
		t.Fatalf("testenv: %s unavailable (CI=true, not skipping): %v", what, err)
		return
	}
	t.Skipf("testenv: %s unavailable, skipping: %v", what, err)
}
