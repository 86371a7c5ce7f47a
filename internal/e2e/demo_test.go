package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// The newcomer's command: three echo backends answer in turn.
func TestDemoRoundRobin(t *testing.T) {
	gw := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	admin := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	p := start(t, "demo", "demo", "--listen", gw, "--admin", admin,
		"--registry-addr", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		"--peer-addr", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)))
	url := "http://" + gw + "/echo/hello"
	testenv.WaitFor(t, 30*time.Second, "all three demo backends routable", func() bool {
		seen := map[string]bool{}
		for i := 0; i < 6; i++ {
			name, code, err := echoName(url)
			if err != nil || code != 200 {
				return false
			}
			seen[name] = true
		}
		return len(seen) == 3
	})
	counts := map[string]int{}
	for i := 0; i < 30; i++ {
		name, code, err := echoName(url)
		if err != nil || code != 200 {
			t.Fatalf("request %d: got %d %v, want 200", i, code, err)
		}
		counts[name]++
	}
	for _, n := range []string{"echo-1", "echo-2", "echo-3"} {
		if counts[n] != 10 {
			t.Fatalf("got %v, want 10 requests to each of echo-1..3 (round robin)", counts)
		}
	}
	var svcs any
	if code, err := getJSON("http://"+admin+"/admin/services", &svcs); err != nil || code != 200 {
		t.Fatalf("admin/services: got %d %v, want 200", code, err)
	}
	if !p.HasLine("Try:") {
		t.Fatalf("demo did not print what to try next")
	}
	p.Stop(20 * time.Second)
}
