package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/discovery"
	"github.com/gatehouse/gatehouse/loadbalance"
	"github.com/gatehouse/gatehouse/registry"
)

// bindingOf returns the balancer binding of the named configured route.
func bindingOf(t *testing.T, g *Gateway, name string) *binding {
	t.Helper()
	for _, rt := range g.table.Load().routes {
		if rt.name == name {
			return rt.bind
		}
	}
	t.Fatalf("no route %q in the table", name)
	return nil
}

func TestReload(t *testing.T) {
	src := newFakeSource()
	src.set("echo",
		inst("echo", "a", newEcho(t, "a").URL),
		inst("echo", "b", newEcho(t, "b").URL),
		inst("echo", "c", newEcho(t, "c").URL))
	src.set("other", inst("other", "o", newEcho(t, "o").URL))
	main := RouteConfig{Name: "main", PathPrefix: "/main", Service: "echo", StripPrefix: true}
	h := newHarness(t, Config{Routes: []RouteConfig{main}}, src, nil)
	next := func(path string) string { return h.echo(t, "GET", path, "", "", nil).Backend }
	first := bindingOf(t, h.g, "main")

	if got := next("/main/"); got != "a" {
		t.Fatalf("first pick: got %s, want a", got)
	}

	// An invalid config is refused whole and the old table keeps serving.
	bad := Config{Routes: []RouteConfig{main, {Name: "x", PathPrefix: "/x", Service: "other", Policy: "foo"}}}
	err := h.g.Reload(bad)
	if err == nil || !strings.Contains(err.Error(), `route "x": unknown policy "foo" (valid: `) {
		t.Fatalf("Reload(invalid): got %v, want an unknown policy error naming the route", err)
	}
	if status, _, _ := h.do(t, "GET", "/x", "", "", nil); status != http.StatusNotFound {
		t.Errorf("route of a refused config: got status %d, want 404", status)
	}
	if got := next("/main/"); got != "b" {
		t.Errorf("after refused reload: got %s, want b", got)
	}

	// Adding a route keeps main's balancer: the rotation goes on.
	if err := h.g.Reload(Config{Routes: []RouteConfig{main, {Name: "other", PathPrefix: "/other", Service: "other"}}}); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if b := bindingOf(t, h.g, "main"); b != first {
		t.Errorf("unchanged route got a new balancer")
	}
	if got := next("/main/"); got != "c" {
		t.Errorf("after reload: got %s, want c (rotation continued)", got)
	}
	if got := next("/other/"); got != "o" {
		t.Errorf("new route: got %s, want o", got)
	}

	// Removing a route ends its subscription; changing a policy replaces
	// the balancer.
	changed := main
	changed.Policy = "random"
	if err := h.g.Reload(Config{Routes: []RouteConfig{changed}}); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if status, _, _ := h.do(t, "GET", "/other/", "", "", nil); status != http.StatusNotFound {
		t.Errorf("removed route: got status %d, want 404", status)
	}
	if n := src.subscriptions("other"); n != 0 {
		t.Errorf("subscriptions to a service no route uses: got %d, want 0", n)
	}
	if n := src.subscriptions("echo"); n != 1 {
		t.Errorf("subscriptions to echo: got %d, want 1", n)
	}
	if b := bindingOf(t, h.g, "main"); b == first || b.key.policy != "random" {
		t.Errorf("policy change: got balancer %p with policy %q, want a new random one", b, b.key.policy)
	}
	if got := next("/main/"); got == "" {
		t.Errorf("changed route does not serve")
	}
}

func TestSharedBalancer(t *testing.T) {
	src := newFakeSource()
	src.set("echo", inst("echo", "a", newEcho(t, "a").URL))
	cfg := Config{DiscoveryRoutes: true, Routes: []RouteConfig{
		{Name: "one", PathPrefix: "/one", Service: "echo"},
		{Name: "two", PathPrefix: "/two", Service: "echo"},
		{Name: "hashed", PathPrefix: "/three", Service: "echo", Policy: "consistent_hash", HashKey: "ip"},
	}}
	h := newHarness(t, cfg, src, nil)
	one, two, hashed := bindingOf(t, h.g, "one"), bindingOf(t, h.g, "two"), bindingOf(t, h.g, "hashed")
	disc := h.g.table.Load().discovery["echo"]
	if one != two || one != disc {
		t.Errorf("routes with the same service and policy do not share a balancer")
	}
	if hashed == one {
		t.Errorf("a consistent_hash route shares the round robin balancer")
	}
	if n := src.subscriptions("echo"); n != 2 {
		t.Errorf("subscriptions: got %d, want 2 (one per balancer)", n)
	}
}

// fakeWatcher feeds batches to a real discovery.Subject.
type fakeWatcher struct{ batches chan registry.Batch }

func (w *fakeWatcher) Next(ctx context.Context) (registry.Batch, error) {
	select {
	case b := <-w.batches:
		return b, nil
	case <-ctx.Done():
		return registry.Batch{}, ctx.Err()
	}
}

// TestSubjectSource runs the gateway on a real Subject, whose deliveries are
// asynchronous: a newly announced service must route once announced.
func TestSubjectSource(t *testing.T) {
	w := &fakeWatcher{batches: make(chan registry.Batch)}
	subj := discovery.NewSubject(w, discovery.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = subj.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	g, err := New(Config{DiscoveryRoutes: true}, subj, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	backend := newEcho(t, "e1")
	w.batches <- registry.Batch{Full: true, Services: map[string][]registry.Instance{
		"echo": {inst("echo", "e1", backend.URL)},
	}}
	eventually(t, "the echo discovery route", func() bool {
		_, ok := g.table.Load().discovery["echo"]
		return ok
	})
	// Primed from Subject.Snapshot: no window of 503s after the route appears.
	ep, err := g.table.Load().discovery["echo"].bal.Pick("")
	if err != nil {
		t.Fatalf("Pick right after the route appeared: %v", err)
	}
	ep.Done(nil)
}

// TestHammerReload serves requests while routes are reloaded and services
// announced: every request on a route present in all generations succeeds.
func TestHammerReload(t *testing.T) {
	src := newFakeSource()
	src.set("echo", inst("echo", "a", newEcho(t, "a").URL), inst("echo", "b", newEcho(t, "b").URL))
	stable := RouteConfig{Name: "stable", PathPrefix: "/stable", Service: "echo", StripPrefix: true}
	cfgs := []Config{
		{DiscoveryRoutes: true, Routes: []RouteConfig{stable}},
		{DiscoveryRoutes: true, AccessLog: true, Routes: []RouteConfig{stable,
			{Name: "extra", PathPrefix: "/extra", Service: "echo", Policy: "least_request"}}},
		{DiscoveryRoutes: false, DialTimeout: time.Second, Routes: []RouteConfig{stable}},
	}
	h := newHarness(t, cfgs[0], src, nil)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	failures := make(chan string, 100)
	var served atomic.Int64
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := httptest.NewRequest("GET", "/stable/x", nil)
				w := httptest.NewRecorder()
				h.g.ServeHTTP(w, r)
				served.Add(1)
				if w.Code != http.StatusOK {
					select {
					case failures <- fmt.Sprintf("status %d: %s", w.Code, w.Body):
					default:
					}
				}
			}
		}()
	}
	// Reload until the requests have overlapped plenty of swaps.
	for i := 0; i < 60 || served.Load() < 300; i++ {
		if err := h.g.Reload(cfgs[i%len(cfgs)]); err != nil {
			t.Errorf("Reload: %v", err)
		}
		if i%10 == 0 && i < 100 {
			src.set(fmt.Sprintf("svc%d", i), inst("x", "x1", "http://127.0.0.1:1"))
		}
		_ = h.g.Services()
	}
	close(stop)
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
}

// TestReloadBalancerFailure makes a new balancer fail mid-build: the reload
// is refused, the balancers it had created are unsubscribed, and the old
// table keeps serving.
func TestReloadBalancerFailure(t *testing.T) {
	src := newFakeSource()
	src.set("echo", inst("echo", "a", newEcho(t, "a").URL))
	src.set("other", inst("other", "o", newEcho(t, "o").URL))
	main := RouteConfig{Name: "main", PathPrefix: "/main", Service: "echo"}
	h := newHarness(t, Config{Routes: []RouteConfig{main}}, src, nil, func(g *Gateway) {
		g.newBalancer = func(policy string, opts loadbalance.Options) (loadbalance.Balancer, error) {
			if policy == "random" {
				return nil, errors.New("injected failure")
			}
			return loadbalance.New(policy, opts)
		}
	})
	err := h.g.Reload(Config{Routes: []RouteConfig{main,
		{Name: "ok", PathPrefix: "/ok", Service: "other", Policy: "least_request"},
		{Name: "bad", PathPrefix: "/bad", Service: "other", Policy: "random"},
	}})
	if err == nil || !strings.Contains(err.Error(), `route "bad": balancer for service "other": injected failure`) {
		t.Fatalf("Reload: got %v, want the injected failure naming the route", err)
	}
	if n := src.subscriptions("other"); n != 0 {
		t.Errorf("subscriptions left by the failed reload: got %d, want 0", n)
	}
	if got := h.echo(t, "GET", "/main/", "", "", nil).Backend; got != "a" {
		t.Errorf("old route: got %s, want a", got)
	}
	if status, _, _ := h.do(t, "GET", "/ok/", "", "", nil); status != http.StatusNotFound {
		t.Errorf("route of the failed reload: got status %d, want 404", status)
	}
}
