package gateway

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// flappy is a backend whose /healthz answers as the test says.
func flappy(t *testing.T, name string, healthy *atomic.Bool) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			if !healthy.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			return
		}
		w.Header().Set("X-Backend", name)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestActiveHealthCheck(t *testing.T) {
	var aOK, bOK atomic.Bool
	aOK.Store(true)
	bOK.Store(true)
	a, b := flappy(t, "a", &aOK), flappy(t, "b", &bOK)
	src := newFakeSource()
	src.set("s", inst("s", "a", a.URL), inst("s", "b", b.URL))
	h := newHarness(t, Config{DiscoveryRoutes: true, HealthChecks: []HealthCheckConfig{{
		Service: "s", Interval: 20 * time.Millisecond, Timeout: 10 * time.Millisecond,
		HealthyThreshold: 2, UnhealthyThreshold: 2,
	}}}, src, nil)
	backends := func() map[string]int {
		seen := map[string]int{}
		for i := 0; i < 6; i++ {
			_, _, hdr := h.do(t, "GET", "/s/x", "", "", nil)
			seen[hdr.Get("X-Backend")]++
		}
		return seen
	}
	eventually(t, "both routed while healthy", func() bool { s := backends(); return s["a"] > 0 && s["b"] > 0 })

	aOK.Store(false)
	eventually(t, "a out after failing its checks", func() bool { s := backends(); return s["a"] == 0 && s["b"] == 6 })
	bOK.Store(false)
	eventually(t, "both failing: both routed (panic mode, never none)", func() bool { s := backends(); return s["a"] > 0 && s["b"] > 0 })
	bOK.Store(true)
	eventually(t, "only b while a fails", func() bool { s := backends(); return s["a"] == 0 && s["b"] == 6 })
	aOK.Store(true)
	eventually(t, "a back after passing its checks", func() bool { s := backends(); return s["a"] > 0 && s["b"] > 0 })

	// A registry change still goes through: a removed instance is gone.
	src.set("s", inst("s", "b", b.URL))
	eventually(t, "a removed by the registry", func() bool { s := backends(); return s["a"] == 0 && s["b"] == 6 })
}

func TestHealthCheckValidation(t *testing.T) {
	bad := []HealthCheckConfig{
		{Service: ""},
		{Service: "s", Type: "udp"},
		{Service: "s", Path: "healthz"},
		{Service: "s", Interval: time.Millisecond},
		{Service: "s", Interval: time.Second, Timeout: 2 * time.Second},
		{Service: "s", HealthyThreshold: -1},
	}
	for i, hc := range bad {
		if err := (Config{HealthChecks: []HealthCheckConfig{hc}}).Validate(); err == nil {
			t.Errorf("case %d %+v: got nil error, want one", i, hc)
		}
	}
	dup := Config{HealthChecks: []HealthCheckConfig{{Service: "s"}, {Service: "s"}}}
	if err := dup.Validate(); err == nil {
		t.Errorf("duplicate: got nil error, want one")
	}
}

// A refused connection ejects the instance at once (passive health): the
// admin API shows it and requests stop going there.
func TestPassiveEjectionShown(t *testing.T) {
	good := newEcho(t, "good")
	src := newFakeSource()
	src.set("s", inst("s", "a-bad", refusedURL(t)), inst("s", "b-good", good.URL))
	h := newHarness(t, Config{DiscoveryRoutes: true, PassiveHealth: PassiveHealthConfig{BaseEjection: time.Minute}}, src, nil)
	for i := 0; i < 4; i++ {
		if rep := h.echo(t, "GET", "/s/x", "", "", nil); rep.Backend != "good" {
			t.Fatalf("got %s, want good", rep.Backend)
		}
	}
	var ejected bool
	for _, s := range h.g.Services() {
		for _, in := range s.Instances {
			if in.ID == "a-bad" && in.Health != nil && in.Health.Ejected && !in.Health.EjectedUntil.IsZero() {
				ejected = true
			}
		}
	}
	if !ejected {
		t.Fatalf("got %+v, want a-bad ejected", h.g.Services())
	}
	if err := (Config{PassiveHealth: PassiveHealthConfig{MaxEjectedPercent: 500}}).Validate(); err == nil {
		t.Fatalf("max_ejected_percent 500: got nil error, want one")
	}
}
