package loadbalance

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/registry"
)

// nginxSequence is nginx's smooth weighted round robin, step by step, as a
// reference: current += weight; pick the largest (first on ties); subtract
// the total from it.
func nginxSequence(weights []int, steps int) []int {
	cur := make([]int, len(weights))
	total := 0
	for _, w := range weights {
		total += w
	}
	seq := make([]int, steps)
	for s := range seq {
		best := -1
		for i, w := range weights {
			cur[i] += w
			if best < 0 || cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		seq[s] = best
	}
	return seq
}

func weighted(weights ...int) []registry.Instance {
	ins := make([]registry.Instance, len(weights))
	for i, w := range weights {
		ins[i] = inst(fmt.Sprintf("i%03d", i), w)
	}
	return ins
}

func TestSmoothWRRLiteral(t *testing.T) {
	b := mustNew(t, "weighted_round_robin", Options{})
	b.Update(snap(inst("a", 5), inst("b", 1), inst("c", 1)))
	var got []string
	for range 14 {
		got = append(got, pickID(t, b, ""))
	}
	if want := "a a b a c a a a a b a c a a"; strings.Join(got, " ") != want {
		t.Errorf("got %s, want %s", strings.Join(got, " "), want)
	}
}

func TestSmoothWRRMatchesNginx(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
	}{
		{name: "5,1,1", weights: []int{5, 1, 1}},
		{name: "3,2", weights: []int{3, 2}},
		{name: "equal", weights: []int{1, 1, 1, 1}},
		{name: "4,3,2,1", weights: []int{4, 3, 2, 1}},
		{name: "ties across groups", weights: []int{7, 3, 7, 3, 1}},
		{name: "common divisor", weights: []int{2, 4, 6, 6}},
		{name: "zero means one", weights: []int{0, 2, 0}},
		{name: "extremes", weights: []int{1000, 999, 1, 500}},
		{name: "many small", weights: []int{1, 2, 1, 2, 3, 1, 1, 5, 1, 2, 8, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustNew(t, "weighted_round_robin", Options{})
			b.Update(snap(weighted(tt.weights...)...))
			eff := make([]int, len(tt.weights))
			total := 0
			for i, w := range tt.weights {
				eff[i] = max(1, w)
				total += eff[i]
			}
			want := nginxSequence(eff, 5*total+3)
			for step, wi := range want {
				if got, want := pickID(t, b, ""), fmt.Sprintf("i%03d", wi); got != want {
					t.Fatalf("step %d: got %s, want %s", step, got, want)
				}
			}
		})
	}
}

func TestWRRScaledCycle(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		wantLen int // 0: equal weights, no cycle table
	}{
		{name: "100 equal weights of 1000", weights: repeat(1000, 100), wantLen: 0},
		{name: "gcd 500", weights: []int{1000, 500, 500}, wantLen: 4},
		{name: "scaled, then gcd 2", weights: append(repeat(1000, 70), 999, 7), wantLen: 32734},
		{name: "scaled, small weights kept at 1", weights: append(repeat(1000, 66), repeat(1, 10)...), wantLen: 65482},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eps := make([]int64, len(tt.weights))
			total := 0
			for i, ins := range weighted(tt.weights...) {
				eps[i] = int64(ins.EffectiveWeight())
				total += tt.weights[i]
			}
			cycle := smoothCycle(cycleWeights(eps))
			if got := len(cycle); got != tt.wantLen {
				t.Fatalf("cycle length: got %d, want %d", got, tt.wantLen)
			}
			// Each share is within one step of its weight's share.
			counts := make([]int, len(eps))
			for _, i := range cycle {
				counts[i]++
			}
			for i, c := range counts {
				want := float64(tt.weights[i]) / float64(total) * float64(len(cycle))
				if diff := float64(c) - want; diff > 1 || diff < -1 {
					t.Errorf("%d: picks per cycle: got %d, want %.2f±1", i, c, want)
				}
			}
		})
	}
}

func repeat(w, n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = w
	}
	return s
}

func TestWRRDistribution(t *testing.T) {
	b := mustNew(t, "weighted_round_robin", Options{})
	weights := []int{1, 2, 3, 4, 10}
	b.Update(snap(weighted(weights...)...))
	const cycles = 100
	counts := make(map[string]int)
	for range 20 * cycles {
		counts[pickID(t, b, "")]++
	}
	for i, w := range weights {
		id := fmt.Sprintf("i%03d", i)
		if got, want := counts[id], w*cycles; got != want {
			t.Errorf("%s: got %d picks, want %d", id, got, want)
		}
	}
}

func TestRoundRobinOrder(t *testing.T) {
	b := mustNew(t, "round_robin", Options{})
	b.Update(snap(inst("c", 9), inst("a", 1), inst("b", 1)))
	var got []string
	for range 7 {
		got = append(got, pickID(t, b, ""))
	}
	if want := "a b c a b c a"; strings.Join(got, " ") != want {
		t.Errorf("got %s, want %s", strings.Join(got, " "), want)
	}
}
