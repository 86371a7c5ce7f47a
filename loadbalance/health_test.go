package loadbalance

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/gatehouse/gatehouse/registry"
)

// fakeClock is a settable clock, safe for concurrent use; calls counts reads.
type fakeClock struct {
	ns    atomic.Int64
	calls atomic.Int64
}

var clockBase = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func (c *fakeClock) Now() time.Time {
	c.calls.Add(1)
	return clockBase.Add(time.Duration(c.ns.Load()))
}

func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

var (
	errReset   = errors.New("read: connection reset by peer")
	errRefused = &url.Error{Op: "Get", URL: "http://x", Err: &net.OpError{
		Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
)

// newHealthy returns a balancer on a fake clock.
func newHealthy(t testing.TB, policy string, ho HealthOptions, ins ...registry.Instance) (*balancer, *fakeClock) {
	t.Helper()
	clk := new(fakeClock)
	b := mustNew(t, policy, Options{Rand: seeded(5), Now: clk.Now, Health: ho}).(*balancer)
	b.Update(snap(ins...))
	return b, clk
}

// finish ends n requests on the member id with err.
func finish(t testing.TB, b Balancer, id string, n int, err error) {
	t.Helper()
	e := endpointByID(b)[id]
	if e == nil {
		t.Fatalf("no member %s", id)
	}
	for range n {
		e.acquire().Done(err)
	}
}

// pickCounts picks n times (keys key-0, key-1, ... or "" if noKey) and
// counts picks per instance ID. Requests stay in flight until all n are
// picked, so least_request spreads by load and not by weight alone; they end
// in success.
func pickCounts(t testing.TB, b Balancer, n int, noKey bool) map[string]int {
	t.Helper()
	counts := make(map[string]int)
	held := make([]*Endpoint, 0, n)
	for i := range n {
		key := ""
		if !noKey {
			key = fmt.Sprintf("key-%d", i)
		}
		e, err := b.Pick(key)
		if err != nil {
			t.Fatalf("Pick(%q): %v", key, err)
		}
		held = append(held, e)
		counts[e.Instance.ID]++
	}
	for _, e := range held {
		e.Done(nil)
	}
	return counts
}

func healthOf(b Balancer, id string) HealthState { return endpointByID(b)[id].Health() }

func TestEjection(t *testing.T) {
	type outcome struct {
		n   int
		err error
	}
	tests := []struct {
		name         string
		outcomes     []outcome
		wantEjected  bool
		wantFailures int
	}{
		{name: "four failures", outcomes: []outcome{{4, errReset}}, wantFailures: 4},
		{name: "five failures", outcomes: []outcome{{5, errReset}}, wantEjected: true},
		{name: "success resets the count", outcomes: []outcome{{4, errReset}, {1, nil}, {4, errReset}}, wantFailures: 4},
		{name: "connection refused at once", outcomes: []outcome{{1, errRefused}}, wantEjected: true},
		{name: "client cancels are reported as nil", outcomes: []outcome{{50, nil}}},
		{name: "refused after four", outcomes: []outcome{{4, errReset}, {1, errRefused}}, wantEjected: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, clk := newHealthy(t, "round_robin", HealthOptions{}, instances(4)...)
			clk.Advance(time.Minute)
			for _, o := range tt.outcomes {
				finish(t, b, "i001", o.n, o.err)
			}
			got := healthOf(b, "i001")
			if got.Ejected != tt.wantEjected || got.ConsecutiveFailures != tt.wantFailures {
				t.Errorf("got ejected %v, %d failures; want %v, %d", got.Ejected, got.ConsecutiveFailures, tt.wantEjected, tt.wantFailures)
			}
			wantUntil := time.Time{}
			if tt.wantEjected {
				wantUntil = clk.Now().Add(DefaultBaseEjection)
			}
			if !got.EjectedUntil.Equal(wantUntil) {
				t.Errorf("EjectedUntil: got %v, want %v", got.EjectedUntil, wantUntil)
			}
		})
	}
}

// TestEjectedGetsNoPicks covers both ways an ejected endpoint is avoided:
// skipped at pick time until the rate-limited rebuild, then left out.
func TestEjectedGetsNoPicks(t *testing.T) {
	for _, p := range Policies() {
		for _, noKey := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/nokey=%v", p, noKey), func(t *testing.T) {
				b, clk := newHealthy(t, p, HealthOptions{}, weighted(1, 3, 2, 1, 1)...)
				finish(t, b, "i001", 5, errReset) // the heaviest
				phases := []struct {
					name    string
					advance time.Duration
					wantB   bool
				}{
					{name: "before the rebuild", wantB: false},
					{name: "after the rebuild", advance: minRebuildGap, wantB: false},
					{name: "just before re-admission", advance: DefaultBaseEjection - minRebuildGap - 1, wantB: false},
					{name: "re-admitted", advance: 1, wantB: true},
				}
				for _, ph := range phases {
					clk.Advance(ph.advance)
					counts := pickCounts(t, b, 3000, noKey)
					if got := counts["i001"] > 0; got != ph.wantB {
						t.Errorf("%s: i001 picked %d times, want picks %v", ph.name, counts["i001"], ph.wantB)
					}
					if len(counts) < 4 {
						t.Errorf("%s: got picks on %d members, want at least 4: %v", ph.name, len(counts), counts)
					}
					if got := healthOf(b, "i001").Ejected; got == ph.wantB {
						t.Errorf("%s: Ejected: got %v, want %v", ph.name, got, !ph.wantB)
					}
				}
			})
		}
	}
}

func TestEjectionBackoff(t *testing.T) {
	ho := HealthOptions{BaseEjection: 10 * time.Second, MaxEjection: 35 * time.Second}
	b, clk := newHealthy(t, "random", ho, instances(3)...)
	steps := []struct {
		name string
		wait time.Duration // after the previous ejection ended
		want time.Duration
	}{
		{name: "first", want: 10 * time.Second},
		{name: "second", want: 20 * time.Second},
		{name: "third", want: 30 * time.Second},
		{name: "capped", want: 35 * time.Second},
		{name: "stays capped", wait: 9 * time.Second, want: 35 * time.Second},
		{name: "one base healthy: one step down", wait: 10 * time.Second, want: 35 * time.Second},
		// Envoy's order: decay while healthy, then count this ejection.
		{name: "two bases healthy: two steps down", wait: 20 * time.Second, want: 30 * time.Second},
		{name: "long healthy: back to base", wait: time.Hour, want: 10 * time.Second},
		{name: "and up again", want: 20 * time.Second},
	}
	for _, st := range steps {
		clk.Advance(st.wait)
		finish(t, b, "i000", 1, errRefused)
		h := healthOf(b, "i000")
		if got := h.EjectedUntil.Sub(clk.Now()); !h.Ejected || got != st.want {
			t.Fatalf("%s: got ejected %v for %v, want %v", st.name, h.Ejected, got, st.want)
		}
		clk.Advance(st.want)
		if h := healthOf(b, "i000"); h.Ejected {
			t.Fatalf("%s: still ejected at the end of its ejection", st.name)
		}
	}
}

func TestMaxEjectedPercent(t *testing.T) {
	tests := []struct {
		name        string
		n, percent  int
		wantEjected int
	}{
		{name: "two, default", n: 2, wantEjected: 1},
		{name: "three, default", n: 3, wantEjected: 1},
		{name: "ten, default", n: 10, wantEjected: 5},
		{name: "one, default: never", n: 1, wantEjected: 0},
		{name: "ten, 20%", n: 10, percent: 20, wantEjected: 2},
		{name: "two, 100%: panic", n: 2, percent: 100, wantEjected: 2},
	}
	for _, p := range Policies() {
		for _, tt := range tests {
			t.Run(p+"/"+tt.name, func(t *testing.T) {
				b, clk := newHealthy(t, p, HealthOptions{MaxEjectedPercent: tt.percent}, instances(tt.n)...)
				for _, e := range b.Endpoints() {
					finish(t, b, e.Instance.ID, 5, errReset)
				}
				ejected := 0
				for _, e := range b.Endpoints() {
					if e.Health().Ejected {
						ejected++
					}
				}
				if ejected != tt.wantEjected {
					t.Errorf("ejected: got %d, want %d", ejected, tt.wantEjected)
				}
				// Picks never fail, and in panic spread over all.
				for _, advance := range []time.Duration{0, minRebuildGap} {
					clk.Advance(advance)
					counts := pickCounts(t, b, 2000, p != "consistent_hash")
					if want := max(1, tt.n-ejected); ejected < tt.n && len(counts) != want {
						t.Errorf("+%v: picked %d members, want %d", advance, len(counts), want)
					}
					if ejected == tt.n && len(counts) != tt.n {
						t.Errorf("+%v panic: picked %d members, want all %d", advance, len(counts), tt.n)
					}
					if got, want := b.cur.Load().panic, ejected == tt.n && advance > 0; got != want {
						t.Errorf("+%v: panic picker: got %v, want %v", advance, got, want)
					}
				}
			})
		}
	}
}

// TestPanicAfterShrink: the registry, not health, says who is a member.
func TestPanicAfterShrink(t *testing.T) {
	for _, p := range Policies() {
		t.Run(p, func(t *testing.T) {
			b, clk := newHealthy(t, p, HealthOptions{}, inst("a", 1), inst("b", 1))
			finish(t, b, "a", 1, errRefused)
			clk.Advance(minRebuildGap)
			b.Update(snap(inst("a", 1)))
			if got := pickCounts(t, b, 10, false); got["a"] != 10 {
				t.Errorf("got %v, want every pick on a", got)
			}
		})
	}
}

func TestHealthSurvivesUpdate(t *testing.T) {
	for _, p := range Policies() {
		t.Run(p, func(t *testing.T) {
			b, clk := newHealthy(t, p, HealthOptions{}, instances(4)...)
			finish(t, b, "i001", 5, errReset)
			finish(t, b, "i002", 3, errReset)
			reweighted := inst("i001", 4)
			reweighted.Metadata = map[string]string{registry.MetaVersion: "2"}
			moved := inst("i003", 1)
			moved.Address = "http://elsewhere.test:1"
			b.Update(snap(inst("i000", 1), reweighted, inst("i002", 1), moved, inst("i004", 1)))
			clk.Advance(minRebuildGap)
			tests := []struct {
				id           string
				wantEjected  bool
				wantFailures int
			}{
				{id: "i001", wantEjected: true}, // successor shares the state
				{id: "i002", wantFailures: 3},   // same *Endpoint
				{id: "i003"},                    // new address, new backend
				{id: "i004"},                    // new
			}
			for _, tt := range tests {
				h := healthOf(b, tt.id)
				if h.Ejected != tt.wantEjected || h.ConsecutiveFailures != tt.wantFailures {
					t.Errorf("%s: got ejected %v, %d failures; want %v, %d", tt.id, h.Ejected, h.ConsecutiveFailures, tt.wantEjected, tt.wantFailures)
				}
			}
			finish(t, b, "i002", 2, errReset) // the count went on
			if !healthOf(b, "i002").Ejected {
				t.Errorf("i002: got not ejected after 3+2 failures, want ejected")
			}
			if n := pickCounts(t, b, 1000, false)["i001"]; n != 0 {
				t.Errorf("i001 picked %d times after the update, want 0", n)
			}
		})
	}
}

func TestHealthDisabled(t *testing.T) {
	b, _ := newHealthy(t, "weighted_round_robin", HealthOptions{Disable: true}, instances(3)...)
	finish(t, b, "i000", 20, errRefused)
	h := healthOf(b, "i000")
	if h.Ejected || h.EffectiveWeight != 1 || h.ConsecutiveFailures != 20 {
		t.Errorf("got %+v, want not ejected, weight 1, 20 failures", h)
	}
}

func TestHealthOptionsInvalid(t *testing.T) {
	tests := []struct {
		name string
		ho   HealthOptions
		want string
	}{
		{name: "negative failures", ho: HealthOptions{ConsecutiveFailures: -1}, want: "consecutive failures"},
		{name: "negative base", ho: HealthOptions{BaseEjection: -time.Second}, want: "base ejection"},
		{name: "max under base", ho: HealthOptions{BaseEjection: time.Minute, MaxEjection: time.Second}, want: "max ejection"},
		{name: "percent over 100", ho: HealthOptions{MaxEjectedPercent: 101}, want: "max ejected percent"},
		{name: "negative slow start", ho: HealthOptions{SlowStart: -1}, want: "slow start"},
		{name: "slow start a year", ho: HealthOptions{SlowStart: 365 * 24 * time.Hour}, want: "slow start"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New("random", Options{Health: tt.ho})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error about %s", err, tt.want)
			}
		})
	}
}

// TestHealthyPicksDoNotReadClock: the clock is read only while something
// is pending (an ejection here).
func TestHealthyPicksDoNotReadClock(t *testing.T) {
	for _, p := range Policies() {
		t.Run(p, func(t *testing.T) {
			b, clk := newHealthy(t, p, HealthOptions{}, weighted(1, 2, 3, 4)...)
			before := clk.calls.Load()
			pickCounts(t, b, 1000, false)
			if got := clk.calls.Load() - before; got != 0 {
				t.Errorf("clock reads in 1000 healthy picks: got %d, want 0", got)
			}
			finish(t, b, "i003", 1, errRefused)
			before = clk.calls.Load()
			pickCounts(t, b, 1000, false)
			if got := clk.calls.Load() - before; got == 0 {
				t.Errorf("clock reads with an ejection pending: got 0, want some")
			}
		})
	}
}

// TestLiveStateNextToURL: the state a pick touches stays within a cache
// line or two of URL, which the proxy reads right after.
func TestLiveStateNextToURL(t *testing.T) {
	var e Endpoint
	url, state := unsafe.Offsetof(e.URL), unsafe.Offsetof(e.own)
	if d := state - url; d > 16 || unsafe.Sizeof(e.own) > 32 {
		t.Errorf("own is %d bytes after URL and %d bytes long; want adjacent, at most 32", d, unsafe.Sizeof(e.own))
	}
	if got := unsafe.Sizeof(e); got > 112 {
		t.Errorf("Endpoint: got %d bytes, want at most 112 (a size class)", got)
	}
}

// TestEjectionBudgetFreed: a refusal denied for lack of budget is retried
// once a re-admission frees a slot.
func TestEjectionBudgetFreed(t *testing.T) {
	b, clk := newHealthy(t, "random", HealthOptions{}, inst("a", 1), inst("b", 1))
	steps := []struct {
		name         string
		advance      time.Duration
		fail         string
		wantA, wantB bool
	}{
		{name: "a refused", fail: "a", wantA: true},
		{name: "b refused: no budget", fail: "b", wantA: true},
		{name: "b refused again at once", advance: time.Millisecond, fail: "b", wantA: true},
		{name: "a re-admitted, b refused", advance: DefaultBaseEjection, fail: "b", wantB: true},
	}
	for _, st := range steps {
		clk.Advance(st.advance)
		finish(t, b, st.fail, 1, errRefused)
		if a, bb := healthOf(b, "a").Ejected, healthOf(b, "b").Ejected; a != st.wantA || bb != st.wantB {
			t.Errorf("%s: ejected a %v, b %v; want %v, %v", st.name, a, bb, st.wantA, st.wantB)
		}
	}
}
