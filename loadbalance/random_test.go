package loadbalance

import (
	"fmt"
	"math"
	"testing"
)

// TestAliasTableExact checks that the table gives every endpoint exactly its
// weight's share: column mass kept plus alias mass received.
func TestAliasTableExact(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		wantNil bool
	}{
		{name: "equal weights use the uniform path", weights: []int{3, 3, 3}, wantNil: true},
		{name: "5,1,1", weights: []int{5, 1, 1}},
		{name: "one heavy", weights: []int{1000, 1, 1, 1, 1, 1}},
		{name: "mixed", weights: []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0}},
		{name: "two", weights: []int{2, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eps := make([]int64, len(tt.weights))
			for i, in := range weighted(tt.weights...) {
				eps[i] = int64(in.EffectiveWeight())
			}
			cols, total := aliasTable(eps)
			if got := cols == nil; got != tt.wantNil {
				t.Fatalf("nil table: got %v, want %v", got, tt.wantNil)
			}
			if cols == nil {
				return
			}
			mass := make([]uint64, len(eps))
			for i, c := range cols {
				mass[i] += uint64(c.prob)
				mass[c.alias] += total - uint64(c.prob)
			}
			for i, w := range tt.weights {
				if got, want := mass[i], uint64(max(1, w)*len(eps)); got != want {
					t.Errorf("%d: mass got %d, want %d", i, got, want)
				}
			}
		})
	}
}

func TestRandomDistribution(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
	}{
		{name: "uniform", weights: []int{1, 1, 1, 1}},
		{name: "weighted", weights: []int{1, 2, 3, 4}},
		{name: "skewed", weights: []int{50, 1, 1, 8}},
	}
	const picks = 200000
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustNew(t, "random", Options{Rand: seeded(42)})
			b.Update(snap(weighted(tt.weights...)...))
			counts := make(map[string]int)
			for range picks {
				counts[pickID(t, b, "")]++
			}
			assertShares(t, counts, tt.weights, picks)
		})
	}
}

// assertShares checks counts against weight shares within 5 standard
// deviations of a binomial, so a wrong share fails and noise does not.
func assertShares(t *testing.T, counts map[string]int, weights []int, picks int) {
	t.Helper()
	total := 0
	for _, w := range weights {
		total += w
	}
	for i, w := range weights {
		id := fmt.Sprintf("i%03d", i)
		p := float64(w) / float64(total)
		want := p * float64(picks)
		tol := 5 * math.Sqrt(float64(picks)*p*(1-p))
		if got := float64(counts[id]); math.Abs(got-want) > tol {
			t.Errorf("%s: got %v picks, want %.0f±%.0f", id, got, want, tol)
		}
	}
}
