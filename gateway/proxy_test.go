package gateway

import (
	"bufio"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/registry"
)

func TestDiscoveryRoute(t *testing.T) {
	src := newFakeSource()
	e1 := newEcho(t, "e1")
	src.set("echo", inst("echo", "e1", e1.URL))
	src.set("based", inst("based", "b1", e1.URL+"/base"))
	h := newHarness(t, Config{DiscoveryRoutes: true}, src, nil)

	tests := []struct {
		name, method, path, body string
		wantURI                  string
	}{
		{"path and query", "GET", "/echo/hello?x=1", "", "/hello?x=1"},
		{"bare service", "GET", "/echo", "", "/"},
		{"trailing slash", "GET", "/echo/", "", "/"},
		{"escaped slash kept", "GET", "/echo/a%2Fb?q=%20", "", "/a%2Fb?q=%20"},
		{"post body", "POST", "/echo/items", `{"n":1}`, "/items"},
		{"instance base path", "GET", "/based/x?y=2", "", "/base/x?y=2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := h.echo(t, tt.method, tt.path, "", tt.body, nil)
			if rep.RequestURI != tt.wantURI {
				t.Errorf("backend request URI: got %q, want %q", rep.RequestURI, tt.wantURI)
			}
			if rep.Method != tt.method {
				t.Errorf("backend method: got %q, want %q", rep.Method, tt.method)
			}
			if rep.Body != tt.body {
				t.Errorf("backend body: got %q, want %q", rep.Body, tt.body)
			}
		})
	}
}

func TestForwardedHeaders(t *testing.T) {
	backend := newEcho(t, "e1")
	incoming := http.Header{
		"X-Forwarded-For":   {"203.0.113.7"},
		"X-Forwarded-Host":  {"public.example"},
		"X-Forwarded-Proto": {"https"},
	}
	tests := []struct {
		name      string
		trusted   []string
		hdr       http.Header
		wantFor   string
		wantHost  string // "" means the gateway's own host
		wantProto string
	}{
		{"untrusted overwrites", nil, incoming, "127.0.0.1", "", "http"},
		{"other network untrusted", []string{"10.0.0.0/8"}, incoming, "127.0.0.1", "", "http"},
		{"trusted extends", []string{"127.0.0.0/8"}, incoming, "203.0.113.7, 127.0.0.1", "public.example", "https"},
		{"trusted bare IP", []string{"127.0.0.1"}, incoming, "203.0.113.7, 127.0.0.1", "public.example", "https"},
		{"trusted IPv4-mapped prefix", []string{"::ffff:127.0.0.0/104"}, incoming, "203.0.113.7, 127.0.0.1", "public.example", "https"},
		{"trusted without headers", []string{"127.0.0.0/8"}, nil, "127.0.0.1", "", "http"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newFakeSource()
			src.set("echo", inst("echo", "e1", backend.URL))
			h := newHarness(t, Config{DiscoveryRoutes: true, TrustedProxies: tt.trusted}, src, nil)
			rep := h.echo(t, "GET", "/echo/x", "", "", tt.hdr)
			wantHost := tt.wantHost
			if wantHost == "" {
				wantHost = strings.TrimPrefix(h.front.URL, "http://")
			}
			for _, c := range []struct{ key, want string }{
				{"X-Forwarded-For", tt.wantFor},
				{"X-Forwarded-Host", wantHost},
				{"X-Forwarded-Proto", tt.wantProto},
			} {
				if got := strings.Join(rep.Header[c.key], ","); got != c.want {
					t.Errorf("%s: got %q, want %q", c.key, got, c.want)
				}
			}
			if want := strings.TrimPrefix(backend.URL, "http://"); rep.Host != want {
				t.Errorf("Host at backend: got %q, want %q", rep.Host, want)
			}
		})
	}
}

func TestRoundRobin(t *testing.T) {
	src := newFakeSource()
	src.set("echo",
		inst("echo", "a", newEcho(t, "a").URL),
		inst("echo", "b", newEcho(t, "b").URL),
		inst("echo", "c", newEcho(t, "c").URL))
	h := newHarness(t, Config{DiscoveryRoutes: true}, src, nil)

	counts := map[string]int{}
	for range 30 {
		counts[h.echo(t, "GET", "/echo/", "", "", nil).Backend]++
	}
	for _, id := range []string{"a", "b", "c"} {
		if counts[id] != 10 {
			t.Errorf("requests to %s: got %d, want 10 (all: %v)", id, counts[id], counts)
		}
	}
}

func TestRouting(t *testing.T) {
	src := newFakeSource()
	src.set("alpha", inst("alpha", "a", newEcho(t, "alpha").URL))
	src.set("beta", inst("beta", "b", newEcho(t, "beta").URL))
	src.set("gamma", inst("gamma", "c", newEcho(t, "gamma").URL))
	cfg := Config{
		DiscoveryRoutes: true,
		Routes: []RouteConfig{
			{Name: "api", PathPrefix: "/api", Service: "alpha", StripPrefix: true},
			{Name: "api-users", PathPrefix: "/api/users/", Service: "beta"},
			{Name: "shop", Host: "shop.example.com", PathPrefix: "/", Service: "gamma"},
			{Name: "wild", Host: "*.example.org", PathPrefix: "/", Service: "beta"},
			{Name: "post-only", PathPrefix: "/submit", Methods: []string{"post"}, Service: "gamma"},
			{Name: "beta-override", PathPrefix: "/beta", Service: "alpha"},
		},
	}
	h := newHarness(t, cfg, src, nil)

	tests := []struct {
		name, method, path, host string
		wantBackend, wantURI     string // wantBackend "" means 404
	}{
		{"strip prefix", "GET", "/api/x?y=1", "", "alpha", "/x?y=1"},
		{"strip whole prefix", "GET", "/api", "", "alpha", "/"},
		{"longest prefix wins", "GET", "/api/users/7", "", "beta", "/api/users/7"},
		{"prefix without trailing slash", "GET", "/api/users", "", "beta", "/api/users"},
		{"segment boundary", "GET", "/apix", "", "", ""},
		{"exact host first", "GET", "/api/x", "shop.example.com", "gamma", "/api/x"},
		{"host port ignored", "GET", "/q", "SHOP.example.com:8080", "gamma", "/q"},
		{"wildcard host", "GET", "/z", "a.b.example.org", "beta", "/z"},
		{"wildcard needs a subdomain", "GET", "/z", "example.org", "", ""},
		{"method matches", "POST", "/submit", "", "gamma", "/submit"},
		{"method mismatch is no route", "GET", "/submit", "", "", ""},
		{"configured beats discovery", "GET", "/beta/x", "", "alpha", "/beta/x"},
		{"discovery route", "GET", "/gamma/q", "", "gamma", "/q"},
		{"unknown service", "GET", "/nosuch/x", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.wantBackend == "" {
				status, body, hdr := h.do(t, tt.method, tt.path, tt.host, "", nil)
				if status != http.StatusNotFound {
					t.Fatalf("status: got %d, want 404 (body %s)", status, body)
				}
				if want := `{"error":"no route","status":404}` + "\n"; body != want {
					t.Errorf("body: got %q, want %q", body, want)
				}
				if ct := hdr.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type: got %q, want application/json", ct)
				}
				return
			}
			rep := h.echo(t, tt.method, tt.path, tt.host, "", nil)
			if rep.Backend != tt.wantBackend || rep.RequestURI != tt.wantURI {
				t.Errorf("got %s %s, want %s %s", rep.Backend, rep.RequestURI, tt.wantBackend, tt.wantURI)
			}
		})
	}
}

func TestConsistentHash(t *testing.T) {
	src := newFakeSource()
	var ins []registry.Instance
	for i := range 5 {
		id := fmt.Sprintf("i%d", i)
		ins = append(ins, inst("echo", id, newEcho(t, id).URL))
	}
	src.set("echo", ins...)
	cfg := Config{Routes: []RouteConfig{{
		Name: "sticky", PathPrefix: "/", Service: "echo", Policy: "consistent_hash", HashKey: "header:x-user",
	}}}
	h := newHarness(t, cfg, src, nil)

	seen := map[string]bool{}
	for u := range 20 {
		hdr := http.Header{"X-User": {fmt.Sprintf("user-%d", u)}}
		first := h.echo(t, "GET", "/", "", "", hdr).Backend
		seen[first] = true
		for range 5 {
			if got := h.echo(t, "GET", "/other", "", "", hdr).Backend; got != first {
				t.Fatalf("user-%d: got backend %s, want %s as before", u, got, first)
			}
		}
	}
	// Not a property of stickiness, but a constant key would also pass above.
	if len(seen) < 2 {
		t.Errorf("20 users landed on %d backend(s), want the keys spread", len(seen))
	}
}

// TestStreaming checks that an event stream is flushed through as it is
// written, not when the response ends.
func TestStreaming(t *testing.T) {
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, "data: two\n\n")
	}))
	t.Cleanup(backend.Close)
	t.Cleanup(func() { close(release) })
	src := newFakeSource()
	src.set("sse", inst("sse", "s1", backend.URL))
	h := newHarness(t, Config{DiscoveryRoutes: true, AccessLog: true}, src, nil)

	res, err := h.client.Get(h.front.URL + "/sse/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	done := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(res.Body).ReadString('\n')
		done <- line
	}()
	select {
	case line := <-done:
		if line != "data: one\n" {
			t.Errorf("first line: got %q, want %q", line, "data: one\n")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("first event not flushed through while the stream is open")
	}
}
