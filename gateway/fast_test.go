package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/net/http2"
)

// harnessServer is the front end of harnesses whose Config names none;
// TestFastFrontEnd switches it while it reruns tests.
var harnessServer = ServerNetHTTP

// startFront serves g on a loopback listener: with httptest's own server
// for net/http, with Gateway.Serve for fasthttp. The returned server only
// carries the URL and closes the listener.
func startFront(t testing.TB, g *Gateway, server string) *httptest.Server {
	t.Helper()
	if server != ServerFastHTTP {
		return httptest.NewServer(g)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- g.Serve(ln) }()
	// Runs after the harness's own cleanup (registered later).
	t.Cleanup(func() {
		// A stream whose client left is noticed only at its next write,
		// so Shutdown may time out here; Serve must return regardless.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = g.Shutdown(ctx)
		select {
		case <-served:
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return after Shutdown")
		}
	})
	return &httptest.Server{URL: "http://" + ln.Addr().String(), Listener: ln, Config: &http.Server{}}
}

// TestFastFrontEnd reruns the proxying tests with the fasthttp front end.
func TestFastFrontEnd(t *testing.T) {
	tests := []struct {
		name string
		f    func(*testing.T)
	}{
		{"DiscoveryRoute", TestDiscoveryRoute},
		{"ForwardedHeaders", TestForwardedHeaders},
		{"RoundRobin", TestRoundRobin},
		{"Routing", TestRouting},
		{"ConsistentHash", TestConsistentHash},
		{"Streaming", TestStreaming},
		{"ErrorStatuses", TestErrorStatuses},
		{"AccessLog", TestAccessLog},
		{"Retries", TestRetries},
		{"RetriedPOSTKeepsItsBody", TestRetriedPOSTKeepsItsBody},
		{"WebSocketUpgrade", TestWebSocketUpgrade},
		{"LeanChunkedResponseAndTrailers", testFastChunked},
		{"LeanSplitChunk", TestLeanSplitChunk},
		{"LeanCloseDelimitedBody", TestLeanCloseDelimitedBody},
		{"LeanLargeBodies", TestLeanLargeBodies},
		{"LeanStaleConnRetry", TestLeanStaleConnRetry},
		{"LeanReusesConnections", TestLeanReusesConnections},
		{"LeanIdleConnsClosed", TestLeanIdleConnsClosed},
		{"LeanHammer", TestLeanHammer},
		{"Reload", TestReload},
	}
	harnessServer = ServerFastHTTP
	t.Cleanup(func() { harnessServer = ServerNetHTTP })
	for _, tt := range tests {
		t.Run(tt.name, tt.f)
	}
}

// testFastChunked is TestLeanChunkedResponseAndTrailers without trailers,
// which the fast front end drops.
func testFastChunked(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := range 5 {
			fmt.Fprintf(w, "part %d;", i)
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(backend.Close)
	h := leanHarness(t, backend.URL, Config{})
	status, body, _ := h.do(t, "GET", "/s/x", "", "", nil)
	if want := "part 0;part 1;part 2;part 3;part 4;"; status != 200 || body != want {
		t.Errorf("got %d %q, want 200 %q", status, body, want)
	}
}

func fastHarness(t *testing.T, cfg Config, src *fakeSource, log *zap.Logger, opts ...func(*Gateway)) *harness {
	t.Helper()
	cfg.Server = ServerFastHTTP
	return newHarness(t, cfg, src, log, opts...)
}

// TestFastH2C sends HTTP/2 cleartext requests, with and without a body, to
// the fasthttp front end's sniffing listener; they are served by net/http.
func TestFastH2C(t *testing.T) {
	src := newFakeSource()
	src.set("s", inst("s", "s1", newEcho(t, "s1").URL))
	h := fastHarness(t, Config{DiscoveryRoutes: true}, src, nil)
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	for _, body := range []string{"", "hello h2c"} {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest("POST", h.front.URL+"/s/x?q=1", rd)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var rep echoReply
		err = json.NewDecoder(res.Body).Decode(&rep)
		res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if res.ProtoMajor != 2 {
			t.Errorf("protocol: got %s, want HTTP/2", res.Proto)
		}
		if rep.Body != body || rep.RequestURI != "/x?q=1" {
			t.Errorf("backend got %q %q, want %q %q", rep.RequestURI, rep.Body, "/x?q=1", body)
		}
	}
	// HTTP/1.1 on the same listener still works.
	if rep := h.echo(t, "GET", "/s/y", "", "", nil); rep.RequestURI != "/y" {
		t.Errorf("HTTP/1.1 after h2c: got %q, want /y", rep.RequestURI)
	}
}

// TestFastShutdownInFlight: Shutdown waits for a request in flight, which
// completes, and Serve then returns http.ErrServerClosed.
func TestFastShutdownInFlight(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "finished")
	}))
	t.Cleanup(backend.Close)
	src := newFakeSource()
	src.set("s", inst("s", "s1", backend.URL))
	g, err := New(Config{DiscoveryRoutes: true, Server: ServerFastHTTP}, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- g.Serve(ln) }()

	got := make(chan string, 1)
	go func() {
		res, err := http.Get("http://" + ln.Addr().String() + "/s/x")
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		got <- string(b)
	}()
	<-started
	shut := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() { shut <- g.Shutdown(ctx) }()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	// New connections are refused once shutting down.
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.SetDeadline(time.Now().Add(time.Second))
		io.WriteString(c, "GET /s/x HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
			t.Errorf("a new connection was served during shutdown")
		}
		c.Close()
	}
	close(release)
	if b := <-got; b != "finished" {
		t.Errorf("in-flight request: got %q, want finished", b)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve: got %v, want http.ErrServerClosed", err)
	}
}

// TestFastClientGoneMidStream: a client that leaves an event stream ends the
// upstream request at the next event, and the backend is not blamed.
func TestFastClientGoneMidStream(t *testing.T) {
	backendDone := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(backendDone)
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}))
	t.Cleanup(backend.Close)
	src := newFakeSource()
	src.set("sse", inst("sse", "s1", backend.URL))
	core, logs := observer.New(zapcore.InfoLevel)
	var outs outcomes
	h := fastHarness(t, Config{DiscoveryRoutes: true, AccessLog: true}, src, zap.New(core),
		func(g *Gateway) { g.observe = outs.observe })
	c, err := net.Dial("tcp", strings.TrimPrefix(h.front.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /sse/ HTTP/1.1\r\nHost: gw\r\n\r\n")
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(res.Body).ReadString('\n')
	if line != "data: 0\n" {
		t.Errorf("first event: got %q", line)
	}
	c.Close()
	select {
	case <-backendDone:
	case <-time.After(5 * time.Second):
		t.Fatal("upstream stream not ended after the client left")
	}
	eventually(t, "Done", func() bool { return len(outs.list()) == 1 })
	if got := outs.list()[0].err; got != nil {
		t.Errorf("Done: got %v, want nil", got)
	}
	eventually(t, "the access log line", func() bool { return logs.FilterMessage("access").Len() == 1 })
	if got := logs.FilterMessage("access").All()[0].ContextMap()["status"]; got != int64(StatusClientClosedRequest) {
		t.Errorf("logged status: got %v, want 499", got)
	}
}

// TestFastCutOff: a streamed body that breaks off is the backend's failure
// and cuts the client's response off.
func TestFastCutOff(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, _ := http.NewResponseController(w).Hijack()
		brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + strings.Repeat("x", 100000))
		brw.Flush()
		conn.Close()
	}))
	t.Cleanup(backend.Close)
	src := newFakeSource()
	src.set("cut", inst("cut", "c1", backend.URL))
	var outs outcomes
	h := fastHarness(t, Config{DiscoveryRoutes: true}, src, nil, func(g *Gateway) { g.observe = outs.observe })
	res, err := h.client.Get(h.front.URL + "/cut/x")
	if err == nil {
		_, err = io.ReadAll(res.Body)
		res.Body.Close()
	}
	if err == nil {
		t.Errorf("got a complete response, want it cut off")
	}
	eventually(t, "Done", func() bool { return len(outs.list()) == 1 })
	if got := outs.list()[0].err; !errors.Is(got, errCutOff) {
		t.Errorf("Done: got %v, want %v", got, errCutOff)
	}
}

// TestFastHeaderTimeoutBoundsWait: without a request context, a hanging
// upstream is bounded by ResponseHeaderTimeout (504, the backend's
// connection closed).
func TestFastHeaderTimeoutBoundsWait(t *testing.T) {
	var cancelled atomic.Bool
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			cancelled.Store(true)
		case <-time.After(10 * time.Second):
		}
	}))
	t.Cleanup(backend.Close)
	src := newFakeSource()
	src.set("hang", inst("hang", "h1", backend.URL))
	h := fastHarness(t, Config{DiscoveryRoutes: true, ResponseHeaderTimeout: 150 * time.Millisecond}, src, nil)
	start := time.Now()
	status, _, _ := h.do(t, "GET", "/hang/x", "", "", nil)
	if status != http.StatusGatewayTimeout || time.Since(start) > 3*time.Second {
		t.Errorf("got %d after %v, want 504 soon after 150ms", status, time.Since(start))
	}
	eventually(t, "the backend to see the connection closed", cancelled.Load)
}

func TestSplitRequestURI(t *testing.T) {
	tests := []struct{ in, path, raw, query string }{
		{"/a/b?x=1", "/a/b", "", "x=1"},
		{"/a%2Fb?q=%20", "/a/b", "/a%2Fb", "q=%20"},
		{"/a%20b", "/a b", "", ""},
		{"http://h/p?q", "/p", "", "q"},
	}
	for _, tt := range tests {
		p, r, q, ok := splitRequestURI(tt.in)
		if !ok || p != tt.path || r != tt.raw || q != tt.query {
			t.Errorf("%q: got %q %q %q %v, want %q %q %q", tt.in, p, r, q, ok, tt.path, tt.raw, tt.query)
		}
	}
}
