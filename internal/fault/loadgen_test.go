package fault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// loadConfig describes a load loop. Zero fields take the defaults.
type loadConfig struct {
	URL      string        // where to send, e.g. http://gateway/echo/load
	Rate     int           // requests per second, GET and POST alternating; default 200
	Duration time.Duration // the loop stops by itself after this; default 55s
	Timeout  time.Duration // per request; default 5s
	MaxConc  int           // requests in flight at most; one more is skipped; default 256
}

// failure is one failed request on the scenario's timeline.
type failure struct {
	at     time.Duration // since the load started
	method string
	kind   string
}

// mark is a scenario event on the same timeline, to read failures against.
type mark struct {
	at   time.Duration
	what string
}

// load sends requests at a fixed rate until stopped or its duration ends.
// Requests run concurrently so that one slow answer does not slow the rate.
type load struct {
	cfg    loadConfig
	client *http.Client
	start  time.Time
	stop   chan struct{} // closed by halt, once
	once   sync.Once
	done   chan struct{}  // closed when run has returned
	wg     sync.WaitGroup // in-flight requests

	mu       sync.Mutex // guards everything below
	sent     map[string]int
	ok       map[string]int
	failed   map[string]map[string]int // method → kind → count
	failures []failure
	marks    []mark
	skipped  int
	lastSeen map[string]time.Time // X-Echo-Name → last success
	served   map[string]int       // X-Echo-Name → successes
}

// startLoad starts the loop; it is stopped when the test ends if the test
// has not stopped it.
func startLoad(t *testing.T, cfg loadConfig) *load {
	t.Helper()
	if cfg.Rate <= 0 {
		cfg.Rate = 200
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 55 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.MaxConc <= 0 {
		cfg.MaxConc = 256
	}
	if _, err := http.NewRequest(http.MethodGet, cfg.URL, nil); err != nil {
		t.Fatalf("load: %v", err)
	}
	l := &load{
		cfg: cfg,
		client: &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{
			MaxIdleConnsPerHost: cfg.MaxConc, IdleConnTimeout: 30 * time.Second}},
		start:    time.Now(),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		sent:     map[string]int{},
		ok:       map[string]int{},
		failed:   map[string]map[string]int{},
		lastSeen: map[string]time.Time{},
		served:   map[string]int{},
	}
	go l.run()
	t.Cleanup(l.halt)
	return l
}

// run issues request i at start + i/Rate. After a stall (a busy machine)
// it catches up with at most 100 ms worth of requests at once and counts
// the rest as skipped, so the rate holds on average without a burst.
func (l *load) run() {
	defer close(l.done)
	interval := time.Second / time.Duration(l.cfg.Rate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	end := time.NewTimer(l.cfg.Duration)
	defer end.Stop()
	sem := make(chan struct{}, l.cfg.MaxConc)
	burst := max(1, l.cfg.Rate/10)
	for issued := 0; ; {
		select {
		case <-l.stop:
			l.wg.Wait()
			return
		case <-end.C:
			l.wg.Wait()
			return
		case <-tick.C:
		}
		due := int(time.Since(l.start)/interval) + 1
		if due-issued > burst {
			l.mu.Lock()
			l.skipped += due - issued - burst
			l.mu.Unlock()
			issued = due - burst
		}
		for ; issued < due; issued++ {
			select {
			case sem <- struct{}{}:
			default:
				l.mu.Lock()
				l.skipped++
				l.mu.Unlock()
				continue
			}
			i, method := issued, http.MethodGet
			if i%2 == 1 {
				method = http.MethodPost
			}
			l.wg.Go(func() {
				defer func() { <-sem }()
				l.one(method, i)
			})
		}
	}
}

// one sends a request and records its outcome.
func (l *load) one(method string, i int) {
	body := fmt.Sprintf("load-%d-%d", i, time.Now().UnixNano())
	var rd io.Reader
	if method == http.MethodPost {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, l.cfg.URL, rd) // the URL was checked by startLoad
	name, kind := "", ""
	resp, err := l.client.Do(req)
	if err != nil {
		kind = "transport: " + errKind(err)
	} else {
		name, kind = check(resp, method, body)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent[method]++
	if kind == "" {
		l.ok[method]++
		l.lastSeen[name] = time.Now()
		l.served[name]++
		return
	}
	if l.failed[method] == nil {
		l.failed[method] = map[string]int{}
	}
	l.failed[method][kind]++
	l.failures = append(l.failures, failure{at: time.Since(l.start), method: method, kind: kind})
}

// check verifies an echo answer: 200, the backend's name, and for POST the
// body echoed back. It returns the name, or the kind of failure.
func check(resp *http.Response, method, body string) (name, kind string) {
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Sprintf("status %d", resp.StatusCode)
	}
	if err != nil {
		return "", "body: " + errKind(err)
	}
	name = resp.Header.Get("X-Echo-Name")
	var echo struct {
		Method string `json:"method"`
		Body   string `json:"body"`
	}
	switch {
	case name == "":
		return "", "no X-Echo-Name"
	case json.Unmarshal(b, &echo) != nil:
		return "", "bad echo JSON"
	case echo.Method != method:
		return "", "wrong method echoed"
	case method == http.MethodPost && echo.Body != body:
		return "", "wrong body echoed"
	}
	return name, ""
}

// errKind names a transport error by its cause, not its addresses.
func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "EOF"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return err.Error()
}

// Mark records a scenario event on the load's timeline.
func (l *load) Mark(what string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.marks = append(l.marks, mark{at: time.Since(l.start), what: what})
}

// halt stops the loop and waits for the requests in flight.
func (l *load) halt() {
	l.once.Do(func() { close(l.stop) })
	<-l.done
}

// Wait lets the loop run until its duration ends and returns its counts.
func (l *load) Wait() loadResult {
	<-l.done
	return l.Stop()
}

// Seen reports whether backend name answered a request after since.
func (l *load) Seen(name string, since time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastSeen[name].After(since)
}

// loadResult is what a stopped load counted.
type loadResult struct {
	Sent, OK map[string]int
	Failed   map[string]map[string]int
	Failures []failure
	Marks    []mark
	Skipped  int
	Served   map[string]int
	Rate     int
	Start    time.Time
	Elapsed  time.Duration
}

// FailedOf counts the failures of one method.
func (r loadResult) FailedOf(method string) int {
	n := 0
	for _, c := range r.Failed[method] {
		n += c
	}
	return n
}

// Stop halts the loop and returns its counts.
func (l *load) Stop() loadResult {
	l.halt()
	l.mu.Lock()
	defer l.mu.Unlock()
	r := loadResult{Sent: maps.Clone(l.sent), OK: maps.Clone(l.ok), Failed: map[string]map[string]int{},
		Failures: slices.Clone(l.failures), Marks: slices.Clone(l.marks), Skipped: l.skipped,
		Served: maps.Clone(l.served), Rate: l.cfg.Rate, Start: l.start, Elapsed: time.Since(l.start)}
	for m, k := range l.failed {
		r.Failed[m] = maps.Clone(k)
	}
	return r
}

// Report is the counts and the timeline, for t.Logf and failure messages.
func (r loadResult) Report() string {
	var b bytes.Buffer
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		fmt.Fprintf(&b, "%s: sent %d, ok %d, failed %d %v\n", m, r.Sent[m], r.OK[m], r.FailedOf(m), r.Failed[m])
	}
	fmt.Fprintf(&b, "over %v from %s; skipped (load loop starved) %d; answered by %v\n",
		r.Elapsed.Round(time.Millisecond), r.Start.Format("15:04:05.000"), r.Skipped, r.Served)
	// The timeline: events and failures in order, failures of one kind in a
	// row folded into one line.
	type entry struct {
		at           time.Duration
		line, method string // method is "" for a mark
	}
	var es []entry
	for _, m := range r.Marks {
		es = append(es, entry{m.at, "== " + m.what, ""})
	}
	for _, f := range r.Failures {
		es = append(es, entry{f.at, "   FAIL " + f.kind, f.method})
	}
	slices.SortStableFunc(es, func(a, b entry) int { return int(a.at - b.at) })
	for i, lines := 0, 0; i < len(es) && lines < 80; lines++ {
		e, j := es[i], i+1
		if e.method == "" {
			fmt.Fprintf(&b, "%9.3fs %s\n", e.at.Seconds(), e.line)
			i = j
			continue
		}
		per := map[string]int{e.method: 1}
		for ; j < len(es) && es[j].method != "" && es[j].line == e.line; j++ {
			per[es[j].method]++
		}
		fmt.Fprintf(&b, "%9.3fs %s ×%d %v until %.3fs\n", e.at.Seconds(), e.line, j-i, per, es[j-1].at.Seconds())
		i = j
	}
	return b.String()
}
