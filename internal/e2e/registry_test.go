package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/regurl"
	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/registry"
)

// liveRegistry is a real registry server started for one test.
type liveRegistry struct {
	url         string
	stop, start func()
}

func startRegistry(t testing.TB, kind string) liveRegistry {
	switch kind {
	case "etcd":
		e := testenv.StartEtcd(t)
		return liveRegistry{url: "etcd://" + e.Endpoint, stop: e.Stop, start: e.Start}
	case "zk":
		z := testenv.StartZooKeeper(t)
		return liveRegistry{url: "zk://" + z.Addr, stop: z.Stop, start: z.Start}
	}
	t.Fatalf("unknown registry %q", kind)
	return liveRegistry{}
}

func addr(t testing.TB) string { return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) }

// The whole product path on each real registry, with every component a
// separate process: gateway, echo backends, sidecars.
func TestRegistryPath(t *testing.T) {
	for _, kind := range []string{"etcd", "zk"} {
		t.Run(kind, func(t *testing.T) { testRegistryPath(t, kind) })
	}
}

func testRegistryPath(t *testing.T, kind string) {
	reg := startRegistry(t, kind)
	gwAddr, adminAddr := addr(t), addr(t)
	start(t, "gateway", "gateway", "--listen", gwAddr, "--admin", adminAddr, "--registry", reg.url,
		"--registry-ttl", "2s", "--access-log=false", "--log-level", "warn")
	testenv.WaitFor(t, 20*time.Second, "gateway ready", func() bool {
		resp, err := client.Get("http://" + adminAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	url := "http://" + gwAddr + "/echo/hello"
	routedTo := func(name string) bool {
		for i := 0; i < 4; i++ {
			if n, _, _ := echoName(url); n == name {
				return true
			}
		}
		return false
	}

	aAddr, bAddr := addr(t), addr(t)
	start(t, "echo-a", "echo", "--listen", aAddr, "--name", "a")
	echoB := start(t, "echo-b", "echo", "--listen", bAddr, "--name", "b")
	sidecar := func(name, backend string) *testenv.Proc {
		return start(t, "sidecar-"+name, "sidecar", "--registry", reg.url, "--service", "echo", "--id", name,
			"--address", "http://"+backend, "--health", "http://"+backend+"/healthz",
			"--interval", "100ms", "--fall", "2", "--ttl", "2s", "--drain", "300ms", "--log-level", "info")
	}
	sideA := sidecar("a", aAddr)
	testenv.WaitFor(t, 20*time.Second, "a routable through its sidecar", func() bool { return routedTo("a") })

	// Registration → first routed request, deregistration → last routed
	// request, measured with an in-process registrar.
	up, down := measureCycles(t, reg.url, url, "http://"+bAddr, 10)
	t.Logf("%s: registration→first routed: p50 %v max %v; deregistration→last routed: p50 %v max %v",
		kind, up[len(up)/2], up[len(up)-1], down[len(down)/2], down[len(down)-1])

	// A sidecar killed with SIGKILL: the record goes when its session or lease expires.
	sideB := sidecar("b", bAddr)
	testenv.WaitFor(t, 10*time.Second, "b routable through its sidecar", func() bool { return routedTo("b") })
	t0 := time.Now()
	sideB.Signal(syscall.SIGKILL)
	testenv.WaitFor(t, 15*time.Second, "b gone after its sidecar was killed", func() bool { return !routedTo("b") && !routedTo("b") })
	t.Logf("%s: sidecar SIGKILL → unrouted after %v (TTL 2s)", kind, time.Since(t0).Round(10*time.Millisecond))

	// Health: the backend stops, its sidecar deregisters it; it returns, and so does its record.
	sidecar("b2", bAddr)
	testenv.WaitFor(t, 10*time.Second, "b routable through a new sidecar", func() bool { return routedTo("b") })
	echoB.Stop(10 * time.Second)
	testenv.WaitFor(t, 10*time.Second, "b unrouted after its health check failed", func() bool {
		for i := 0; i < 4; i++ {
			if n, code, _ := echoName(url); n != "a" || code != 200 {
				return false
			}
		}
		return true
	})
	start(t, "echo-b-again", "echo", "--listen", bAddr, "--name", "b")
	testenv.WaitFor(t, 10*time.Second, "b routable again after recovering", func() bool { return routedTo("b") })

	// SIGTERM of a sidecar deregisters, and it exits once the gateway
	// confirms it no longer routes there.
	sideA.Stop(10 * time.Second)
	if !sideA.HasLine("gateways confirmed the removal", `"confirmed":1`, `"unconfirmed":0`) {
		t.Fatalf("sidecar did not wait for the gateway's confirmation")
	}
	testenv.WaitFor(t, 5*time.Second, "a unrouted after its sidecar stopped", func() bool {
		for i := 0; i < 4; i++ {
			if n, _, _ := echoName(url); n != "b" {
				return false
			}
		}
		return true
	})

	// Registry down: the gateway keeps routing to the last known instances.
	reg.stop()
	deadline := time.Now().Add(3 * time.Second)
	for n := 0; time.Now().Before(deadline); n++ {
		name, code, err := echoName(url)
		if err != nil || code != 200 || name != "b" {
			t.Fatalf("request %d with the registry down: got %q %d %v, want b 200", n, name, code, err)
		}
	}
	reg.start()
}

// measureCycles registers and deregisters an instance of service echo at
// backend n times through an in-process registrar, and returns the sorted
// times from registration to the first request the gateway routes to it, and
// from deregistration to the last one (0 when none came after the call).
// A load loop runs across each deregistration, so that the last request
// routed to the instance is seen however soon after the call it lands.
func measureCycles(t testing.TB, regURL, url, backend string, n int) (up, down []time.Duration) {
	t.Helper()
	ctx := context.Background()
	spec, err := regurl.Parse(regURL)
	if err != nil {
		t.Fatal(err)
	}
	r, err := regurl.Open(ctx, spec, regurl.Options{TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	routedTo := func(name string) bool {
		for i := 0; i < 4; i++ {
			if got, _, _ := echoName(url); got == name {
				return true
			}
		}
		return false
	}
	b := registry.Instance{Service: "echo", ID: "b", Address: backend}
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if _, err := r.Register(ctx, b); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, time.Second, "b routable within 1s of registration", func() bool { return routedTo("b") })
		up = append(up, time.Since(t0))

		stopLoad := make(chan struct{})
		lastB := make(chan time.Time, 1)
		go func() {
			var last time.Time
			defer func() { lastB <- last }()
			for {
				select {
				case <-stopLoad:
					return
				default:
				}
				if n, _, _ := echoName(url); n == "b" {
					last = time.Now()
				}
			}
		}()
		t0 = time.Now()
		if err := r.Deregister(ctx, b); err != nil {
			t.Fatal(err)
		}
		streak := 0
		testenv.WaitFor(t, 2*time.Second, "b unrouted within 2s of deregistration", func() bool {
			if n, _, _ := echoName(url); n == "b" {
				streak = 0
			} else {
				streak++
			}
			return streak >= 20
		})
		close(stopLoad)
		if last := <-lastB; last.After(t0) {
			down = append(down, last.Sub(t0))
		} else {
			down = append(down, 0)
		}
	}
	slices.Sort(up)
	slices.Sort(down)
	return up, down
}

// BenchmarkRegistrationLatency: 100 register/deregister cycles on each
// registry through a gateway process, reported as p50 and p99.
//
//	go test -run '^$' -bench RegistrationLatency -benchtime 1x ./internal/e2e/
func BenchmarkRegistrationLatency(b *testing.B) {
	for _, kind := range []string{"etcd", "zk"} {
		b.Run(kind, func(b *testing.B) {
			reg := startRegistry(b, kind)
			gwAddr, adminAddr, aAddr, bAddr := addr(b), addr(b), addr(b), addr(b)
			start(b, "gateway", "gateway", "--listen", gwAddr, "--admin", adminAddr, "--registry", reg.url,
				"--access-log=false", "--log-level", "warn")
			start(b, "echo-a", "echo", "--listen", aAddr, "--name", "a", "--registry", reg.url, "--service", "echo", "--id", "a")
			start(b, "echo-b", "echo", "--listen", bAddr, "--name", "b")
			url := "http://" + gwAddr + "/echo/x"
			testenv.WaitFor(b, 30*time.Second, "a routable", func() bool { n, _, _ := echoName(url); return n == "a" })
			b.ResetTimer()
			up, down := measureCycles(b, reg.url, url, "http://"+bAddr, 100)
			b.StopTimer()
			q := func(d []time.Duration, p int) float64 { return float64(d[len(d)*p/100].Microseconds()) / 1000 }
			b.ReportMetric(q(up, 50), "reg_p50_ms")
			b.ReportMetric(q(up, 99), "reg_p99_ms")
			b.ReportMetric(q(down, 50), "dereg_p50_ms")
			b.ReportMetric(q(down, 99), "dereg_p99_ms")
		})
	}
}
