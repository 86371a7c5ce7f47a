package loadbalance

import (
	"fmt"
	"testing"
)

func TestLeastRequest(t *testing.T) {
	tests := []struct {
		name     string
		weights  []int
		inflight []int
		// wantShare is each endpoint's expected share of picks, ±0.05.
		wantShare []float64
	}{
		{name: "fewer in flight wins", weights: []int{1, 1}, inflight: []int{2, 1}, wantShare: []float64{0, 1}},
		{name: "busiest of three never picked", weights: []int{1, 1, 1}, inflight: []int{9, 0, 0}, wantShare: []float64{0, 0.5, 0.5}},
		{name: "ties are random", weights: []int{1, 1}, inflight: []int{3, 3}, wantShare: []float64{0.5, 0.5}},
		{name: "least of three", weights: []int{1, 1, 1}, inflight: []int{0, 5, 9}, wantShare: []float64{2.0 / 3, 1.0 / 3, 0}},
		{name: "weight divides load", weights: []int{10, 1}, inflight: []int{5, 0}, wantShare: []float64{1, 0}},
		{name: "idle heavier wins", weights: []int{2, 1}, inflight: []int{0, 0}, wantShare: []float64{1, 0}},
		{name: "weighted tie", weights: []int{4, 1}, inflight: []int{3, 0}, wantShare: []float64{0.5, 0.5}},
	}
	const picks = 4000
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustNew(t, "least_request", Options{Rand: seeded(3)})
			b.Update(snap(weighted(tt.weights...)...))
			for i, e := range b.Endpoints() {
				for range tt.inflight[i] {
					e.acquire()
				}
			}
			counts := make(map[string]int)
			for range picks {
				counts[pickID(t, b, "")]++
			}
			for i, want := range tt.wantShare {
				id := fmt.Sprintf("i%03d", i)
				if got := float64(counts[id]) / picks; got < want-0.05 || got > want+0.05 {
					t.Errorf("%s: got share %.3f, want %.2f", id, got, want)
				}
			}
		})
	}
}

func TestLeastRequestSingle(t *testing.T) {
	b := mustNew(t, "least_request", Options{Rand: seeded(3)})
	b.Update(snap(inst("only", 1)))
	if got, want := pickID(t, b, ""), "only"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
