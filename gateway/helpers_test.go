package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/discovery"
	"github.com/gatehouse/gatehouse/loadbalance"
	"github.com/gatehouse/gatehouse/registry"
)

// The real Subject must keep satisfying Source and the priming interface.
var (
	_ Source      = (*discovery.Subject)(nil)
	_ snapshotter = (*discovery.Subject)(nil)
)

// fakeSource is an in-memory Source. It delivers synchronously on the
// goroutine that calls set, so set must not be called concurrently.
type fakeSource struct {
	mu       sync.Mutex
	snaps    map[string]discovery.Snapshot
	subs     map[*fakeSub]string // subscriber → service
	watchers map[*func([]string)]struct{}
}

type fakeSub struct{ s discovery.Subscriber }

func newFakeSource() *fakeSource {
	return &fakeSource{
		snaps:    make(map[string]discovery.Snapshot),
		subs:     make(map[*fakeSub]string),
		watchers: make(map[*func([]string)]struct{}),
	}
}

// set publishes the complete instance set of service.
func (f *fakeSource) set(service string, ins ...registry.Instance) {
	f.mu.Lock()
	old, known := f.snaps[service]
	snap := discovery.Snapshot{Service: service, Instances: ins, Version: old.Version + 1}
	f.snaps[service] = snap
	var subs []discovery.Subscriber
	for s, svc := range f.subs {
		if svc == service {
			subs = append(subs, s.s)
		}
	}
	var watchers []func([]string)
	if !known {
		for w := range f.watchers {
			watchers = append(watchers, *w)
		}
	}
	names := f.namesLocked()
	f.mu.Unlock()
	for _, s := range subs {
		s.Update(snap)
	}
	for _, w := range watchers {
		w(names)
	}
}

func (f *fakeSource) namesLocked() []string {
	var names []string
	for n := range f.snaps {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func (f *fakeSource) Subscribe(service string, s discovery.Subscriber) func() {
	sub := &fakeSub{s: s}
	f.mu.Lock()
	f.subs[sub] = service
	snap, ok := f.snaps[service]
	f.mu.Unlock()
	if ok {
		s.Update(snap)
	}
	return func() {
		f.mu.Lock()
		delete(f.subs, sub)
		f.mu.Unlock()
	}
}

func (f *fakeSource) WatchServices(w func([]string)) func() {
	p := &w
	f.mu.Lock()
	f.watchers[p] = struct{}{}
	names := f.namesLocked()
	f.mu.Unlock()
	w(names)
	return func() {
		f.mu.Lock()
		delete(f.watchers, p)
		f.mu.Unlock()
	}
}

// subscriptions counts the live subscriptions to service.
func (f *fakeSource) subscriptions(service string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, svc := range f.subs {
		if svc == service {
			n++
		}
	}
	return n
}

// echoReply is what echo backends answer: what reached them.
type echoReply struct {
	Backend    string      `json:"backend"`
	Method     string      `json:"method"`
	RequestURI string      `json:"request_uri"`
	Host       string      `json:"host"`
	Body       string      `json:"body"`
	Header     http.Header `json:"header"`
}

// newEcho starts a backend that describes each request it gets.
func newEcho(t testing.TB, name string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Backend", name)
		_ = json.NewEncoder(w).Encode(echoReply{
			Backend: name, Method: r.Method, RequestURI: r.RequestURI, Host: r.Host,
			Body: string(body), Header: r.Header,
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func inst(service, id, addr string) registry.Instance {
	return registry.Instance{Service: service, ID: id, Address: addr}
}

// harnessEngine is the engine of harnesses whose Config names none;
// TestReverseProxyEngine switches it while it reruns tests. No test in this
// package runs in parallel.
var harnessEngine = DefaultEngine

// harness is a gateway behind a real HTTP listener.
type harness struct {
	g      *Gateway
	src    *fakeSource
	front  *httptest.Server
	client *http.Client
}

// newHarness starts a gateway; opts run before it serves, so that they may
// set test seams without racing requests.
func newHarness(t testing.TB, cfg Config, src *fakeSource, log *zap.Logger, opts ...func(*Gateway)) *harness {
	t.Helper()
	if src == nil {
		src = newFakeSource()
	}
	if cfg.Engine == "" {
		cfg.Engine = harnessEngine
	}
	if cfg.Server == "" {
		cfg.Server = harnessServer
	}
	g, err := New(cfg, src, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	for _, o := range opts {
		o(g)
	}
	front := startFront(t, g, cfg.Server)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		front.Close()
		g.Close()
	})
	return &harness{g: g, src: src, front: front, client: &http.Client{Transport: tr}}
}

// do sends a request to the gateway and returns status, body and header.
func (h *harness) do(t testing.TB, method, path, host, body string, hdr http.Header) (int, string, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.front.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if host != "" {
		req.Host = host
	}
	res, err := h.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return res.StatusCode, string(b), res.Header
}

// echo sends a request that must reach an echo backend.
func (h *harness) echo(t testing.TB, method, path, host, body string, hdr http.Header) echoReply {
	t.Helper()
	status, b, _ := h.do(t, method, path, host, body, hdr)
	if status != http.StatusOK {
		t.Fatalf("%s %s (host %q): got status %d, want 200; body %s", method, path, host, status, b)
	}
	var rep echoReply
	if err := json.Unmarshal([]byte(b), &rep); err != nil {
		t.Fatalf("%s %s: decoding %q: %v", method, path, b, err)
	}
	return rep
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// outcomes records what the gateway passed to Done, per instance ID.
type outcomes struct {
	mu  sync.Mutex
	got []outcome
}

type outcome struct {
	id  string
	err error
}

func (o *outcomes) observe(ep *loadbalance.Endpoint, err error) {
	o.mu.Lock()
	o.got = append(o.got, outcome{ep.Instance.ID, err})
	o.mu.Unlock()
}

func (o *outcomes) list() []outcome {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.got)
}
