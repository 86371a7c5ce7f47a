package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// The gateway on its embedded registry with an in-process registered echo
// backend: configured routes, access log, SIGHUP reload (a bad file is
// refused and the old routes keep serving), and a SIGTERM that lets an
// in-flight request finish.
func TestGatewayLifecycle(t *testing.T) {
	for _, server := range []string{"nethttp", "fasthttp"} {
		t.Run(server, func(t *testing.T) { testGatewayLifecycle(t, server) })
	}
}

func testGatewayLifecycle(t *testing.T, server string) {
	gwAddr, adminAddr, regAddr := addr(t), addr(t), addr(t)
	cfg := filepath.Join(t.TempDir(), "gatehouse.yaml")
	write := func(body string) {
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("routes:\n  - {name: api, path_prefix: /api, service: echo, strip_prefix: true}\n")
	gw := start(t, "gateway", "gateway", "--config", cfg, "--listen", gwAddr, "--admin", adminAddr,
		"--embedded-client-addr", regAddr, "--embedded-peer-addr", addr(t), "--shutdown-timeout", "10s",
		"--server", server)
	echo := start(t, "echo", "echo", "--listen", addr(t), "--name", "e1", "--registry", "etcd://"+regAddr,
		"--service", "echo", "--ttl", "2s", "--drain", "100ms")

	path := func(url string) (string, int) {
		var body struct {
			Path string `json:"path"`
		}
		code, err := getJSON(url, &body)
		if err != nil {
			return "", code
		}
		return body.Path, code
	}
	testenv.WaitFor(t, 30*time.Second, "echo routable through the discovery route", func() bool {
		p, code := path("http://" + gwAddr + "/echo/x")
		return code == 200 && p == "/x"
	})
	if p, code := path("http://" + gwAddr + "/api/users?id=1"); code != 200 || p != "/users" {
		t.Fatalf("configured route: got %q %d, want /users 200", p, code)
	}
	testenv.WaitFor(t, 5*time.Second, "an access-log line for the configured route", func() bool {
		return gw.HasLine(`"route":"api"`, `"path":"/api/users"`, `"status":200`, `"upstream"`)
	})

	// A bad file is refused on SIGHUP; the running routes keep serving.
	write("routes:\n  - {name: api, path_prefix: /api, service: echo, policy: fastest}\n")
	gw.Signal(syscall.SIGHUP)
	testenv.WaitFor(t, 5*time.Second, "the reload refusal logged", func() bool { return gw.HasLine("reload refused", "fastest") })
	if p, code := path("http://" + gwAddr + "/api/a"); code != 200 || p != "/a" {
		t.Fatalf("after a refused reload: got %q %d, want /a 200", p, code)
	}
	// A good file applies.
	write("routes:\n  - {name: v2, path_prefix: /v2, service: echo, strip_prefix: true}\n")
	gw.Signal(syscall.SIGHUP)
	testenv.WaitFor(t, 5*time.Second, "the new route", func() bool { p, code := path("http://" + gwAddr + "/v2/b"); return code == 200 && p == "/b" })
	if _, code := path("http://" + gwAddr + "/api/a"); code != http.StatusNotFound {
		t.Fatalf("removed route: got %d, want 404", code)
	}

	// SIGTERM drains: a request in flight finishes with 200.
	result := make(chan int, 1)
	go func() {
		_, code, err := echoName("http://" + gwAddr + "/echo/slow?sleep=1s")
		if err != nil {
			code = -1
		}
		result <- code
	}()
	testenv.WaitFor(t, 5*time.Second, "the slow request in flight", func() bool {
		var svcs []struct {
			Name      string `json:"name"`
			Instances []struct {
				InFlight int64 `json:"in_flight"`
			} `json:"instances"`
		}
		if code, err := getJSON("http://"+adminAddr+"/admin/services", &svcs); err != nil || code != 200 {
			return false
		}
		for _, s := range svcs {
			for _, in := range s.Instances {
				if s.Name == "echo" && in.InFlight > 0 {
					return true
				}
			}
		}
		return false
	})
	gw.Stop(15 * time.Second)
	select {
	case code := <-result:
		if code != 200 {
			t.Fatalf("in-flight request during shutdown: got %d, want 200", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("in-flight request did not finish")
	}
	echo.Stop(10 * time.Second)
}
