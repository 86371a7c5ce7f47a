package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestErrorStatuses(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close() // connection refused from now on

	slowDone := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // hold the response header back past ResponseHeaderTimeout
		case <-r.Context().Done():
		case <-slowDone:
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(slowDone) })

	src := newFakeSource()
	src.set("empty")
	src.set("closed", inst("closed", "c1", closedURL))
	src.set("slow", inst("slow", "s1", slow.URL))
	src.set("ok", inst("ok", "o1", newEcho(t, "o1").URL))
	var outs outcomes
	h := newHarness(t, Config{DiscoveryRoutes: true, ResponseHeaderTimeout: 200 * time.Millisecond}, src, nil,
		func(g *Gateway) { g.observe = outs.observe })

	tests := []struct {
		name, path string
		wantStatus int
		wantBody   string
		wantFails  int // Done calls, each with a non-nil error
	}{
		{"unknown service", "/nosuch/x", 404, `{"error":"no route","status":404}` + "\n", 0},
		{"no instances", "/empty/x", 503, `{"error":"no instance available","status":503}` + "\n", 0},
		// A refused connection is retried: 3 attempts by default.
		{"connection refused", "/closed/x", 502, `{"error":"upstream unavailable","status":502}` + "\n", 3},
		// A timeout is not: the backend may still be working on it.
		{"response header timeout", "/slow/x", 504, `{"error":"upstream timeout","status":504}` + "\n", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(outs.list())
			status, body, hdr := h.do(t, "GET", tt.path, "", "", nil)
			if status != tt.wantStatus || body != tt.wantBody {
				t.Errorf("got %d %q, want %d %q", status, body, tt.wantStatus, tt.wantBody)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type: got %q, want application/json", ct)
			}
			got := outs.list()[before:]
			fails := 0
			for _, o := range got {
				if o.err != nil {
					fails++
				}
			}
			if len(got) != tt.wantFails || fails != tt.wantFails {
				t.Errorf("Done outcomes: got %v, want %d failures", got, tt.wantFails)
			}
		})
	}

	// A success releases its endpoint with nil.
	before := len(outs.list())
	h.echo(t, "GET", "/ok/", "", "", nil)
	if got := outs.list()[before:]; len(got) != 1 || got[0].err != nil {
		t.Errorf("Done outcomes after success: got %v, want one nil", got)
	}
}

func TestClientCancel(t *testing.T) {
	started := make(chan struct{})
	cancelled := make(chan error, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		select {
		case <-r.Context().Done():
			cancelled <- r.Context().Err()
		case <-time.After(10 * time.Second):
			cancelled <- errors.New("request context never cancelled")
		}
	}))
	t.Cleanup(backend.Close)
	src := newFakeSource()
	src.set("hang", inst("hang", "h1", backend.URL))
	core, logs := observer.New(zapcore.InfoLevel)
	var outs outcomes
	h := newHarness(t, Config{DiscoveryRoutes: true, AccessLog: true}, src, zap.New(core),
		func(g *Gateway) { g.observe = outs.observe })

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", h.front.URL+"/hang/x", nil)
	errc := make(chan error, 1)
	go func() {
		res, err := h.client.Do(req)
		if err == nil {
			res.Body.Close()
		}
		errc <- err
	}()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("backend never got the request")
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("client error: got %v, want context.Canceled", err)
	}
	select {
	case err := <-cancelled:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("backend request context: got %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("backend request context not cancelled")
	}

	eventually(t, "Done to be called", func() bool { return len(outs.list()) == 1 })
	if got := outs.list()[0]; got.err != nil {
		t.Errorf("Done: got %v, want nil (a client cancel is not the backend's failure)", got.err)
	}
	eventually(t, "the access log line", func() bool { return logs.FilterMessage("access").Len() == 1 })
	fields := logs.FilterMessage("access").All()[0].ContextMap()
	if got := fields["status"]; got != int64(StatusClientClosedRequest) {
		t.Errorf("logged status: got %v, want %d", got, StatusClientClosedRequest)
	}
}

func TestAccessLog(t *testing.T) {
	backend := newEcho(t, "e1")
	src := newFakeSource()
	src.set("echo", inst("echo", "e1", backend.URL))
	core, logs := observer.New(zapcore.InfoLevel)
	cfg := Config{DiscoveryRoutes: true, AccessLog: true,
		Routes: []RouteConfig{{Name: "api", PathPrefix: "/api", Service: "echo", StripPrefix: true}}}
	h := newHarness(t, cfg, src, zap.New(core))

	_, body, _ := h.do(t, "POST", "/api/x?secret=1", "", "hello", nil)
	h.do(t, "GET", "/nowhere", "", "", nil)

	eventually(t, "two access log lines", func() bool { return logs.FilterMessage("access").Len() == 2 })
	all := logs.FilterMessage("access").All()
	tests := []struct {
		name string
		got  map[string]any
		want map[string]any
	}{
		{"proxied", all[0].ContextMap(), map[string]any{
			"method": "POST", "path": "/api/x", "route": "api", "service": "echo",
			"upstream": backend.URL, "status": int64(200), "bytes": int64(len(body)),
		}},
		{"no route", all[1].ContextMap(), map[string]any{
			"method": "GET", "path": "/nowhere", "route": "", "service": "", "upstream": "",
			"status": int64(404), "bytes": int64(len(`{"error":"no route","status":404}` + "\n")),
		}},
	}
	for _, tt := range tests {
		for k, want := range tt.want {
			if got := tt.got[k]; got != want {
				t.Errorf("%s: field %s: got %v (%T), want %v (%T)", tt.name, k, got, got, want, want)
			}
		}
		if _, ok := tt.got["duration"]; !ok {
			t.Errorf("%s: no duration field", tt.name)
		}
	}
}

// TestCutOffResponse: a backend that dies mid-body aborts the client's
// response (it cannot be turned into an error status any more) and counts
// as the backend's failure.
func TestCutOffResponse(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		_, _ = brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
		_ = brw.Flush()
		conn.Close()
	}))
	t.Cleanup(backend.Close)
	src := newFakeSource()
	src.set("cut", inst("cut", "c1", backend.URL))
	core, logs := observer.New(zapcore.InfoLevel)
	var outs outcomes
	h := newHarness(t, Config{DiscoveryRoutes: true, AccessLog: true}, src, zap.New(core),
		func(g *Gateway) { g.observe = outs.observe })

	// The header may not have been flushed before the abort: the client
	// fails either on the response or on its body.
	res, err := h.client.Get(h.front.URL + "/cut/x")
	if err == nil {
		_, err = io.ReadAll(res.Body)
		res.Body.Close()
	}
	if err == nil {
		t.Errorf("got a complete response, want it cut off")
	}
	eventually(t, "Done to be called", func() bool { return len(outs.list()) == 1 })
	if got := outs.list()[0].err; !errors.Is(got, errCutOff) {
		t.Errorf("Done: got %v, want %v", got, errCutOff)
	}
	eventually(t, "the access log line", func() bool { return logs.FilterMessage("access").Len() == 1 })
	if got := logs.FilterMessage("access").All()[0].ContextMap()["error"]; got != errCutOff.Error() {
		t.Errorf("logged error: got %v, want %q", got, errCutOff)
	}
}
