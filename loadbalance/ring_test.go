package loadbalance

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse/gatehouse/registry"
)

const ringKeys = 100000

var ringKeyList = sync.OnceValue(func() []string {
	keys := make([]string, ringKeys)
	for k := range keys {
		keys[k] = fmt.Sprintf("key-%d", k)
	}
	return keys
})

func owners(t *testing.T, b Balancer) []string {
	t.Helper()
	got := make([]string, ringKeys)
	for k, key := range ringKeyList() {
		got[k] = pickID(t, b, key)
	}
	return got
}

func TestRingRemapping(t *testing.T) {
	base := instances(10)
	without3 := slices.Delete(slices.Clone(base), 3, 4)
	reweighted := slices.Clone(base)
	reweighted[5].Weight = 3
	tests := []struct {
		name  string
		after []registry.Instance
		// only is the instance every moved key moves to or from.
		only string
		// the moved fraction must lie in [minMoved, maxMoved].
		minMoved, maxMoved float64
	}{
		{name: "add an 11th", after: append(slices.Clone(base), inst("i010", 1)), only: "i010", minMoved: 0.5 / 11, maxMoved: 1.5 / 11},
		{name: "remove one", after: without3, only: "i003", minMoved: 0.5 / 10, maxMoved: 1.5 / 10},
		{name: "triple one's weight", after: reweighted, only: "i005", minMoved: 1.0 / 12, maxMoved: 2.5 / 12},
		{name: "unchanged", after: base, maxMoved: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustNew(t, "consistent_hash", Options{})
			b.Update(snap(base...))
			before := owners(t, b)
			b.Update(snap(tt.after...))
			after := owners(t, b)
			moved := 0
			for k := range before {
				if before[k] == after[k] {
					continue
				}
				moved++
				if before[k] != tt.only && after[k] != tt.only {
					t.Fatalf("key-%d moved %s -> %s, want every move to or from %s", k, before[k], after[k], tt.only)
				}
			}
			frac := float64(moved) / ringKeys
			if frac < tt.minMoved || frac > tt.maxMoved {
				t.Errorf("moved fraction: got %.4f, want in [%.4f, %.4f]", frac, tt.minMoved, tt.maxMoved)
			}
		})
	}
}

func TestRingBalance(t *testing.T) {
	weights := []int{1, 1, 2, 4}
	b := mustNew(t, "consistent_hash", Options{})
	b.Update(snap(weighted(weights...)...))
	counts := make(map[string]int)
	for _, id := range owners(t, b) {
		counts[id]++
	}
	// 160 points per unit of weight: within 25% of the fair share.
	for i, w := range weights {
		id := fmt.Sprintf("i%03d", i)
		want := float64(w) / 8 * ringKeys
		if got := float64(counts[id]); got < 0.75*want || got > 1.25*want {
			t.Errorf("%s: got %v keys, want %.0f±25%%", id, got, want)
		}
	}
}

func TestRingEmptyKeyRoundRobin(t *testing.T) {
	b := mustNew(t, "consistent_hash", Options{})
	b.Update(snap(instances(3)...))
	var got []string
	for range 6 {
		got = append(got, pickID(t, b, ""))
	}
	if want := "i000 i001 i002 i000 i001 i002"; strings.Join(got, " ") != want {
		t.Errorf("got %s, want %s", strings.Join(got, " "), want)
	}
}

func TestRingPointCap(t *testing.T) {
	tests := []struct {
		name       string
		n, weight  int
		maxPoints  int
		wantPoints int
	}{
		{name: "under the cap", n: 10, weight: 100, maxPoints: maxRingPoints, wantPoints: 10 * 100 * DefaultVirtualNodes},
		{name: "halved three times", n: 10000, weight: 1, maxPoints: maxRingPoints, wantPoints: 10000 * DefaultVirtualNodes / 8},
		{name: "one point each at least", n: 150, weight: 1, maxPoints: 100, wantPoints: 150},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eps := make([]*Endpoint, tt.n)
			for i := range eps {
				eps[i] = &Endpoint{Instance: inst(fmt.Sprintf("i%06d", i), tt.weight)}
			}
			r := &ring{eps: eps}
			r.build(DefaultVirtualNodes, tt.maxPoints, nil)
			if got := len(r.points); got != tt.wantPoints {
				t.Errorf("points: got %d, want %d", got, tt.wantPoints)
			}
			if !slices.IsSortedFunc(r.points, func(a, b ringPoint) int { return cmp.Compare(a.hash, b.hash) }) {
				t.Errorf("points not sorted")
			}
		})
	}
}

// TestRingIncrementalBuild checks that a ring built from the previous one
// equals a ring built from scratch, through a series of updates.
func TestRingIncrementalBuild(t *testing.T) {
	base := weighted(1, 2, 3, 1, 1, 4, 1, 2)
	moved := slices.Clone(base)
	moved[2].Address = "http://elsewhere.test:1"
	steps := []struct {
		name string
		ins  []registry.Instance
	}{
		{name: "initial", ins: base},
		{name: "add two", ins: append(slices.Clone(base), inst("i000a", 2), inst("zz", 1))},
		{name: "remove first and last", ins: base[1 : len(base)-1]},
		{name: "reweight", ins: weighted(1, 2, 5, 1, 1, 4, 1, 2)},
		{name: "address change keeps points", ins: moved},
		{name: "halving kicks in", ins: weighted(300, 300, 300, 300, 300, 300, 300, 300)},
		{name: "back under the cap", ins: base},
		{name: "single", ins: base[:1]},
	}
	bal := mustNew(t, "consistent_hash", Options{}).(*balancer)
	for _, st := range steps {
		bal.Update(snap(st.ins...))
		got := bal.cur.Load().p.(*ring)
		want := &ring{eps: got.eps}
		want.build(DefaultVirtualNodes, maxRingPoints, nil)
		if !slices.Equal(got.points, want.points) {
			t.Fatalf("%s: incremental ring differs from a fresh build (%d vs %d points)", st.name, len(got.points), len(want.points))
		}
		if !slices.Equal(got.index, want.index) || got.shift != want.shift {
			t.Fatalf("%s: incremental index differs from a fresh build", st.name)
		}
	}
}
