package gateway

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// dropper accepts requests and closes the connection without answering:
// the request was sent, the backend failed.
func dropper(t *testing.T, hits *atomic.Int32) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			c.Close()
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func refusedURL(t *testing.T) string {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	return u
}

func TestRetries(t *testing.T) {
	var dropHits atomic.Int32
	drop := dropper(t, &dropHits)
	good := newEcho(t, "good")
	src := newFakeSource()
	// Each case has its own service, so that no balancer state (rotation,
	// passive health) carries over. IDs order the round robin: bad first.
	for _, svc := range []string{"refused1", "refused2"} {
		src.set(svc, inst(svc, "a-bad", refusedURL(t)), inst(svc, "b-good", good.URL))
	}
	for _, svc := range []string{"dropped1", "dropped2", "dropped3", "dropped4", "dropped5"} {
		src.set(svc, inst(svc, "a-bad", drop.URL), inst(svc, "b-good", good.URL))
	}
	one := RetryConfig{Attempts: 1}
	post := RetryConfig{Methods: []string{"POST"}}
	h := newHarness(t, Config{DiscoveryRoutes: true, Routes: []RouteConfig{
		{Name: "noretry", PathPrefix: "/noretry", Service: "dropped4", StripPrefix: true, Retry: &one},
		{Name: "postretry", PathPrefix: "/postretry", Service: "dropped5", StripPrefix: true, Retry: &post},
	}}, src, nil)

	cases := []struct {
		name, method, path, body string
		want                     int
	}{
		{"refused GET goes to the other instance", "GET", "/refused1/x", "", 200},
		{"refused POST too: it never reached a backend", "POST", "/refused2/x", "payload", 200},
		{"dropped GET is retried: idempotent", "GET", "/dropped1/x", "", 200},
		{"dropped DELETE is retried: idempotent", "DELETE", "/dropped2/x", "", 200},
		{"dropped POST is not: it may have been applied", "POST", "/dropped3/x", "", 502},
		{"route without retries", "GET", "/noretry/x", "", 502},
		{"route allowing POST retries, bodyless", "POST", "/postretry/x", "", 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Round robin over bad and good: of two requests at least one
			// starts on the bad instance. Without a retry exactly one fails.
			var codes []int
			for i := 0; i < 2; i++ {
				status, _, _ := h.do(t, c.method, c.path, "", c.body, nil)
				codes = append(codes, status)
			}
			fails := 0
			for _, code := range codes {
				if code != 200 {
					fails++
					if code != c.want {
						t.Fatalf("got %v, want failures to be %d", codes, c.want)
					}
				}
			}
			if wantFails := map[bool]int{true: 0, false: 1}[c.want == 200]; fails != wantFails {
				t.Fatalf("got %v, want %d failure(s) of %d", codes, wantFails, c.want)
			}
		})
	}
}

func TestRetriedPOSTKeepsItsBody(t *testing.T) {
	good := newEcho(t, "good")
	src := newFakeSource()
	src.set("s", inst("s", "a-bad", refusedURL(t)), inst("s", "b-good", good.URL))
	h := newHarness(t, Config{DiscoveryRoutes: true}, src, nil)
	for i := 0; i < 10; i++ {
		rep := h.echo(t, "POST", "/s/x", "", "the body", nil)
		if rep.Body != "the body" || rep.Backend != "good" {
			t.Fatalf("request %d: got %q from %s, want the body at good", i, rep.Body, rep.Backend)
		}
	}
}

func TestRetryBudget(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newBudget(RetryBudget{Ratio: -1, MinPerSecond: 2})
	for i, want := range []bool{true, true, false, false} {
		if got := b.withdraw(now); got != want {
			t.Fatalf("withdraw %d in one second: got %v, want %v", i, got, want)
		}
	}
	if !b.withdraw(now.Add(time.Second)) {
		t.Fatalf("a new second gives new retries")
	}

	b = newBudget(RetryBudget{Ratio: 0.5, MinPerSecond: -1})
	b.minPerSec = 0
	for i := 0; i < 4; i++ {
		b.deposit()
	}
	got := 0
	for b.withdraw(now) {
		got++
	}
	if got != 2 {
		t.Fatalf("4 requests at ratio 0.5: got %d retries, want 2", got)
	}
}

func TestRetryConfigValidation(t *testing.T) {
	bad := []Config{
		{Retry: RetryConfig{Attempts: -1}},
		{Retry: RetryConfig{Attempts: 11}},
		{Retry: RetryConfig{Methods: []string{"GE T"}}},
		{Routes: []RouteConfig{{Name: "r", PathPrefix: "/r", Service: "s", Retry: &RetryConfig{Attempts: 99}}}},
		{RetryBudget: RetryBudget{MinPerSecond: -1}},
	}
	for i, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("config %d: got nil error, want one", i)
		}
	}
}
