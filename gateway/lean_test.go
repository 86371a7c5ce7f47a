package gateway

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// leanHarness proxies service "s" to backend through the lean engine.
func leanHarness(t *testing.T, backend string, cfg Config) *harness {
	t.Helper()
	src := newFakeSource()
	src.set("s", inst("s", "s1", backend))
	cfg.DiscoveryRoutes, cfg.Engine = true, EngineLean
	return newHarness(t, cfg, src, nil)
}

func TestLeanChunkedResponseAndTrailers(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		for i := range 5 {
			fmt.Fprintf(w, "part %d;", i)
			w.(http.Flusher).Flush()
		}
		w.Header().Set("X-Sum", "done")
	}))
	t.Cleanup(backend.Close)
	h := leanHarness(t, backend.URL, Config{})
	res, err := h.client.Get(h.front.URL + "/s/x")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if want := "part 0;part 1;part 2;part 3;part 4;"; string(body) != want {
		t.Errorf("body: got %q, want %q", body, want)
	}
	if got := res.Trailer.Get("X-Sum"); got != "done" {
		t.Errorf("trailer X-Sum: got %q, want done", got)
	}
}

// TestLeanSplitChunk: a chunk whose data arrives in pieces, with pauses,
// comes through whole and in order, and its first piece is not held back.
func TestLeanSplitChunk(t *testing.T) {
	var sb strings.Builder
	for i := 0; sb.Len() < 6000; i++ {
		fmt.Fprintf(&sb, "%d,", i) // no period: a repeated piece shows
	}
	data := sb.String()
	addr, _ := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s", len(data), data[:1000])
		time.Sleep(30 * time.Millisecond)
		io.WriteString(c, data[1000:4000])
		time.Sleep(30 * time.Millisecond)
		io.WriteString(c, data[4000:]+"\r\n0\r\n\r\n")
	})
	h := leanHarness(t, addr, Config{})
	for range 3 {
		status, body, _ := h.do(t, "GET", "/s/x", "", "", nil)
		if status != 200 || body != data {
			t.Fatalf("got %d and %d bytes (equal: %v), want 200 and the %d bytes sent", status, len(body), body == data, len(data))
		}
	}
}

// rawBackend serves each connection with handle, on a plain listener.
func rawBackend(t *testing.T, handle func(c net.Conn, br *bufio.Reader)) (addr string, accepted *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	accepted = new(atomic.Int32)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c, bufio.NewReader(c))
			}()
		}
	}()
	return "http://" + ln.Addr().String(), accepted
}

func TestLeanCloseDelimitedBody(t *testing.T) {
	want := strings.Repeat("close-delimited ", 5000)
	addr, _ := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"+want)
	})
	h := leanHarness(t, addr, Config{})
	for range 3 { // each on a new upstream connection
		status, body, _ := h.do(t, "GET", "/s/x", "", "", nil)
		if status != 200 || body != want {
			t.Fatalf("got %d and %d bytes, want 200 and %d bytes", status, len(body), len(want))
		}
	}
}

// TestLeanLargeBodies sends large bodies both ways, with and without a
// known length.
func TestLeanLargeBodies(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sum := sha256.New()
		n, _ := io.Copy(sum, r.Body)
		w.Header().Set("X-Got", fmt.Sprintf("%d %x", n, sum.Sum(nil)))
		w.Header().Set("X-Proto-Len", fmt.Sprint(r.ContentLength))
		size := 3 << 20
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", fmt.Sprint(size))
		}
		block := bytes.Repeat([]byte("0123456789abcdef"), 1024)
		for written := 0; written < size; written += len(block) {
			w.Write(block)
		}
	}))
	t.Cleanup(backend.Close)
	h := leanHarness(t, backend.URL, Config{})
	payload := bytes.Repeat([]byte("payload!"), 600_000)
	wantGot := fmt.Sprintf("%d %x", len(payload), sha256.Sum256(payload))
	for _, tt := range []struct {
		name        string
		knownLength bool
		query       string
	}{
		{"known lengths", true, ""},
		{"streamed request, chunked response", false, "?chunked=1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = bytes.NewReader(payload)
			if !tt.knownLength {
				body = io.MultiReader(body) // hides the length: chunked upload
			}
			req, _ := http.NewRequest("POST", h.front.URL+"/s/up"+tt.query, body)
			res, err := h.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			n, err := io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if err != nil || n != 3<<20 {
				t.Errorf("response body: got %d bytes, err %v; want %d", n, err, 3<<20)
			}
			if got := res.Header.Get("X-Got"); got != wantGot {
				t.Errorf("backend got %q, want %q", got, wantGot)
			}
			wantLen := "-1"
			if tt.knownLength {
				wantLen = fmt.Sprint(len(payload))
			}
			if got := res.Header.Get("X-Proto-Len"); got != wantLen {
				t.Errorf("backend ContentLength: got %s, want %s", got, wantLen)
			}
		})
	}
}

// TestLeanStaleConnRetry: the backend closes every connection after one
// response, without saying so. The next request finds a dead pooled
// connection and must still succeed: a GET is retried, a POST's dead
// connection is caught by the liveness check before its body is sent.
func TestLeanStaleConnRetry(t *testing.T) {
	closed := make(chan struct{}, 16)
	addr, accepted := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, _ := io.ReadAll(req.Body)
		reply := req.Method + " " + string(body)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(reply), reply)
		c.Close()
		closed <- struct{}{}
	})
	h := leanHarness(t, addr, Config{})
	for i, tt := range []struct{ method, body string }{
		{"GET", ""}, {"GET", ""}, {"POST", "data"}, {"DELETE", ""}, {"PUT", "more"},
	} {
		status, got, _ := h.do(t, tt.method, "/s/x", "", tt.body, nil)
		if want := tt.method + " " + tt.body; status != 200 || got != want {
			t.Fatalf("request %d: got %d %q, want 200 %q", i, status, got, want)
		}
		<-closed
		// Let the FIN arrive, as it would while a connection sits idle.
		time.Sleep(20 * time.Millisecond)
	}
	if got := accepted.Load(); got != 5 {
		t.Errorf("backend connections: got %d, want 5 (one per request)", got)
	}
}

func TestLeanReusesConnections(t *testing.T) {
	addr, accepted := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	h := leanHarness(t, addr, Config{})
	for range 20 {
		if status, body, _ := h.do(t, "POST", "/s/x", "", "abc", nil); status != 200 || body != "ok" {
			t.Fatalf("got %d %q, want 200 ok", status, body)
		}
	}
	if got := accepted.Load(); got != 1 {
		t.Errorf("backend connections: got %d, want 1", got)
	}
}

// TestLeanIdleConnsClosed: idle connections are closed after the idle
// timeout and the host's pool is dropped, as for a removed instance.
func TestLeanIdleConnsClosed(t *testing.T) {
	gone := make(chan struct{}, 1)
	addr, _ := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		for {
			if _, err := http.ReadRequest(br); err != nil {
				gone <- struct{}{}
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	h := leanHarness(t, addr, Config{IdleConnTimeout: 50 * time.Millisecond})
	if status, _, _ := h.do(t, "GET", "/s/x", "", "", nil); status != 200 {
		t.Fatalf("status %d", status)
	}
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("idle upstream connection not closed")
	}
	eng := h.g.table.Load().eng.(*leanEngine)
	eventually(t, "the pool to be dropped", func() bool { return len(*eng.pools.pools.Load()) == 0 })
}

// TestLeanHammer runs concurrent mixed requests over a few pooled
// connections; run it with -race.
func TestLeanHammer(t *testing.T) {
	src := newFakeSource()
	src.set("s", inst("s", "a", newEcho(t, "a").URL), inst("s", "b", newEcho(t, "b").URL))
	h := newHarness(t, Config{DiscoveryRoutes: true, Engine: EngineLean, MaxIdleConnsPerHost: 2}, src, nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 40 {
				body := ""
				method := "GET"
				if i%3 == 0 {
					method, body = "POST", strings.Repeat(fmt.Sprint(g), i*100)
				}
				rep := h.echo(t, method, fmt.Sprintf("/s/p%d?i=%d", g, i), "", body, nil)
				if rep.Body != body || rep.RequestURI != fmt.Sprintf("/p%d?i=%d", g, i) {
					t.Errorf("got %s %q with %d body bytes, want %d", rep.Method, rep.RequestURI, len(rep.Body), len(body))
					return
				}
			}
		})
	}
	wg.Wait()
	h.g.table.Load().eng.closeIdle() // concurrently safe with nothing in flight
}

func TestLeanable(t *testing.T) {
	plain, _ := url.Parse("http://10.0.0.1:80")
	tls, _ := url.Parse("https://10.0.0.1")
	tests := []struct {
		name   string
		mod    func(r *http.Request)
		target *url.URL
		want   bool
	}{
		{"plain GET", func(*http.Request) {}, plain, true},
		{"https upstream", func(*http.Request) {}, tls, false},
		{"websocket", func(r *http.Request) { r.Header.Set("Upgrade", "websocket") }, plain, false},
		{"expect continue", func(r *http.Request) { r.Header.Set("Expect", "100-continue") }, plain, false},
		{"grpc", func(r *http.Request) { r.Header.Set("Content-Type", "application/grpc+proto") }, plain, false},
		{"request trailers", func(r *http.Request) { r.Trailer = http.Header{"X": nil} }, plain, false},
		{"h2 stream of unknown length", func(r *http.Request) { r.ProtoMajor, r.ContentLength = 2, -1 }, plain, false},
		{"h2 with length", func(r *http.Request) { r.ProtoMajor, r.ContentLength = 2, 10 }, plain, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/x", nil)
			tt.mod(r)
			if got := leanable(r, &target{url: tt.target}); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestReverseProxyEngine reruns the proxying tests on the
// httputil.ReverseProxy engine, which the lean engine must match and which
// stays available as Config.Engine "reverseproxy".
func TestReverseProxyEngine(t *testing.T) {
	tests := map[string]func(*testing.T){
		"DiscoveryRoute":   TestDiscoveryRoute,
		"ForwardedHeaders": TestForwardedHeaders,
		"ErrorStatuses":    TestErrorStatuses,
		"ClientCancel":     TestClientCancel,
		"CutOffResponse":   TestCutOffResponse,
		"Streaming":        TestStreaming,
		"WebSocketUpgrade": TestWebSocketUpgrade,
	}
	harnessEngine = EngineReverseProxy
	t.Cleanup(func() { harnessEngine = DefaultEngine })
	for name, f := range tests {
		t.Run(name, f)
	}
}

// TestLeanHTTP2Client: requests from HTTP/2 clients go upstream over the
// lean engine (known length) or the fallback (streamed body).
func TestLeanHTTP2Client(t *testing.T) {
	src := newFakeSource()
	src.set("s", inst("s", "s1", newEcho(t, "s1").URL))
	g, err := New(Config{DiscoveryRoutes: true, Engine: EngineLean}, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewUnstartedServer(g)
	front.EnableHTTP2 = true
	front.StartTLS()
	t.Cleanup(func() { front.Close(); g.Close() })
	client := front.Client()
	for _, tt := range []struct {
		name string
		body io.Reader
	}{
		{"no body", nil},
		{"known length", strings.NewReader("hello h2")},
		{"streamed", io.MultiReader(strings.NewReader("hello h2"))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", front.URL+"/s/x?q=1", tt.body)
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if res.ProtoMajor != 2 {
				t.Fatalf("client protocol: got %s, want HTTP/2", res.Proto)
			}
			var rep echoReply
			if err := json.NewDecoder(res.Body).Decode(&rep); err != nil {
				t.Fatal(err)
			}
			want := ""
			if tt.body != nil {
				want = "hello h2"
			}
			if rep.Body != want || rep.RequestURI != "/x?q=1" {
				t.Errorf("backend got %q %q, want %q %q", rep.RequestURI, rep.Body, "/x?q=1", want)
			}
			if got := rep.Header.Get("X-Forwarded-Proto"); got != "https" {
				t.Errorf("X-Forwarded-Proto: got %q, want https", got)
			}
		})
	}
}
