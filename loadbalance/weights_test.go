package loadbalance

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/registry"
)

// observe picks n times with an empty key and releases each pick without an
// outcome, so observing does not feed passive health.
func observe(t testing.TB, b Balancer, n int) map[string]int {
	t.Helper()
	counts := make(map[string]int)
	for range n {
		e, err := b.Pick("")
		if err != nil {
			t.Fatalf("Pick: %v", err)
		}
		counts[e.Instance.ID]++
		e.live().inflight.Add(-1)
	}
	return counts
}

// countBuilds counts the pickers b builds from now on.
func countBuilds(b *balancer) *atomic.Int64 {
	n := new(atomic.Int64)
	inner := b.policy.build
	b.policy.build = func(v view) picker { n.Add(1); return inner(v) }
	return n
}

func TestRingEjectionMovesOnlyItsKeys(t *testing.T) {
	tests := []struct {
		name    string
		base    []registry.Instance
		ejected []string
	}{
		{name: "one", base: weighted(1, 2, 1, 1, 3, 1, 1, 2, 1, 1), ejected: []string{"i003"}},
		{name: "three", base: weighted(1, 2, 1, 1, 3, 1, 1, 2, 1, 1), ejected: []string{"i001", "i004", "i007"}},
		// Runs of its points longer than the probe budget: the walk must
		// skip a run in one step.
		{name: "heavy", base: weighted(1, 1, 60, 1, 1, 1, 1, 1, 1, 1), ejected: []string{"i002"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, clk := newHealthy(t, "consistent_hash", HealthOptions{}, tt.base...)
			before := owners(t, b)
			// Where the keys would go if the ejected were removed.
			var rest []registry.Instance
			for _, in := range tt.base {
				if !slices.Contains(tt.ejected, in.ID) {
					rest = append(rest, in)
				}
			}
			removed := mustNew(t, "consistent_hash", Options{})
			removed.Update(snap(rest...))
			want := owners(t, removed)

			for _, id := range tt.ejected {
				finish(t, b, id, 1, errRefused)
			}
			// Walked past until the rebuild, then left out: the same keys.
			for _, advance := range []time.Duration{0, minRebuildGap} {
				clk.Advance(advance)
				during := owners(t, b)
				moved := 0
				for k := range during {
					if during[k] != want[k] {
						t.Fatalf("+%v: key-%d: got %s, want %s as if the ejected were removed", advance, k, during[k], want[k])
					}
					if during[k] != before[k] {
						moved++
					}
				}
				if moved == 0 {
					t.Fatalf("+%v: no key moved", advance)
				}
			}
			clk.Advance(DefaultBaseEjection - minRebuildGap)
			if after := owners(t, b); !slices.Equal(after, before) {
				t.Errorf("after re-admission the keys did not all move back")
			}
		})
	}
}

// TestWRREffectiveWeight: failures lower the weight in the cycle, successes
// bring it back; rebuilds follow with the rate limit and the lazy poll.
func TestWRREffectiveWeight(t *testing.T) {
	b, clk := newHealthy(t, "weighted_round_robin", HealthOptions{}, inst("a", 10), inst("b", 10))
	builds := countBuilds(b)
	steps := []struct {
		name         string
		outcome      error
		n            int
		advance      time.Duration
		wantA, wantB int // in 360 picks
		wantBuilds   int64
	}{
		{name: "healthy", wantA: 180, wantB: 180},
		{name: "two failures: rate-limited", outcome: errReset, n: 2, wantA: 180, wantB: 180},
		{name: "rebuilt after the gap: 10:6", advance: minRebuildGap, wantA: 225, wantB: 135, wantBuilds: 1},
		{name: "two successes: lazy", outcome: nil, n: 2, wantA: 225, wantB: 135, wantBuilds: 1},
		{name: "polled: 10:8", advance: pollGap, wantA: 200, wantB: 160, wantBuilds: 2},
		{name: "recovered", outcome: nil, n: 2, advance: pollGap, wantA: 180, wantB: 180, wantBuilds: 3},
	}
	for _, st := range steps {
		finish(t, b, "b", st.n, st.outcome)
		clk.Advance(st.advance)
		got := observe(t, b, 360)
		if got["a"] != st.wantA || got["b"] != st.wantB {
			t.Errorf("%s: got a %d, b %d; want %d, %d", st.name, got["a"], got["b"], st.wantA, st.wantB)
		}
		if got := builds.Load(); got != st.wantBuilds {
			t.Errorf("%s: builds: got %d, want %d", st.name, got, st.wantBuilds)
		}
	}
	if due := b.cur.Load().due; due != 0 {
		t.Errorf("fully recovered: due %d, want 0 (no clock reads)", due)
	}
}

// TestRebuildRateLimit: a failure storm that changes the weight level nine
// times within one gap rebuilds once, then once more after the gap.
func TestRebuildRateLimit(t *testing.T) {
	b, clk := newHealthy(t, "weighted_round_robin", HealthOptions{ConsecutiveFailures: 1000}, inst("a", 10), inst("b", 10))
	builds := countBuilds(b)
	clk.Advance(minRebuildGap)
	for range 900 {
		finish(t, b, "b", 1, errReset)
		clk.Advance(time.Microsecond)
		observe(t, b, 1)
	}
	if got := builds.Load(); got != 1 {
		t.Errorf("builds during the storm: got %d, want 1", got)
	}
	clk.Advance(minRebuildGap)
	got := observe(t, b, 110) // weights 10:1
	if got["b"] != 10 || builds.Load() != 2 {
		t.Errorf("after the gap: got b %d picks, %d builds; want 10, 2", got["b"], builds.Load())
	}
}

func TestSlowStart(t *testing.T) {
	ho := HealthOptions{SlowStart: 10 * time.Second}
	tests := []struct {
		policy string
		// want is c's share at 0, 5 s and 10 s; exact for WRR.
		want  [3]float64
		exact bool
		tol   float64
		picks int
	}{
		{policy: "weighted_round_robin", want: [3]float64{1.0 / 21, 1.0 / 5, 1.0 / 3}, exact: true, picks: 2100},
		// 5 standard deviations of a binomial at p = 1/3.
		{policy: "random", want: [3]float64{1.0 / 21, 1.0 / 5, 1.0 / 3}, tol: 0.016, picks: 21000},
		// P2C under load gives about equal load per unit of weight.
		{policy: "least_request", want: [3]float64{1.0 / 21, 1.0 / 5, 1.0 / 3}, tol: 0.05, picks: 2100},
	}
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			changed := inst("b", 10)
			changed.Metadata = map[string]string{registry.MetaVersion: "2"}
			b, clk := newHealthy(t, tt.policy, ho, inst("a", 10), inst("b", 10))
			clk.Advance(time.Minute)
			b.Update(snap(inst("a", 10), changed, inst("c", 10)))
			for id, want := range map[string]bool{"a": false, "b": false, "c": true} {
				if got := healthOf(b, id).Warming; got != want {
					t.Errorf("%s: Warming: got %v, want %v", id, got, want)
				}
			}
			for i, adv := range []time.Duration{0, 5 * time.Second, 5 * time.Second} {
				clk.Advance(adv)
				got := float64(pickCounts(t, b, tt.picks, true)["c"]) / float64(tt.picks)
				if d := got - tt.want[i]; tt.exact && d != 0 || d > tt.tol || d < -tt.tol {
					t.Errorf("+%v: c's share: got %.4f, want %.4f±%.3f", time.Duration(i)*5*time.Second, got, tt.want[i], tt.tol)
				}
			}
			if h := healthOf(b, "c"); h.Warming || h.EffectiveWeight != 10 {
				t.Errorf("after the window: got %+v, want not warming, weight 10", h)
			}
			if due := b.cur.Load().due; due != 0 {
				t.Errorf("after the window: due %d, want 0", due)
			}
		})
	}
}

func TestSlowStartHealth(t *testing.T) {
	ho := HealthOptions{SlowStart: 10 * time.Second}
	b, clk := newHealthy(t, "random", ho, inst("a", 10))
	if healthOf(b, "a").Warming {
		t.Errorf("a member of the first set: got warming, want not")
	}
	b.Update(snap(inst("a", 10), inst("c", 10)))
	for _, st := range []struct {
		advance time.Duration
		want    int
	}{{0, 1}, {5 * time.Second, 6}, {5*time.Second - 1, 10}} {
		clk.Advance(st.advance)
		if got := healthOf(b, "c").EffectiveWeight; got != st.want {
			t.Errorf("+%v: EffectiveWeight: got %d, want %d", st.advance, got, st.want)
		}
	}
}

// TestPickAllocsDegraded covers the slow paths: an ejected endpoint still in
// the picker (probing), then left out with a pending readmission (polling).
func TestPickAllocsDegraded(t *testing.T) {
	ins := weighted(5, 1, 3, 1, 2, 2)
	for _, p := range Policies() {
		for _, key := range []string{"user-42", ""} {
			t.Run(fmt.Sprintf("%s/key=%q", p, key), func(t *testing.T) {
				b, clk := newHealthy(t, p, HealthOptions{SlowStart: time.Minute}, ins...)
				b.Update(snap(append(ins, inst("new", 2))...))
				finish(t, b, "i000", 1, errRefused)
				finish(t, b, "i002", 2, errReset)
				for _, adv := range []time.Duration{0, minRebuildGap} {
					clk.Advance(adv)
					observe(t, b, 1) // the rebuild, if due, allocates
					got := testing.AllocsPerRun(1000, func() {
						e, err := b.Pick(key)
						if err != nil {
							panic(err)
						}
						e.Done(nil)
					})
					if got != 0 {
						t.Errorf("+%v: allocs per Pick+Done: got %v, want 0", adv, got)
					}
				}
			})
		}
	}
}
