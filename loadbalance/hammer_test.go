package loadbalance

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/registry"
)

// TestHealthHammer runs picks whose outcomes eject and re-admit endpoints,
// a clock that moves, membership updates and admin reads, all at once under
// -race. Afterwards nothing may be in flight, and ejections must have
// happened. Pickers move the clock, 1 ms every 16 picks, so ejections end
// and slow start steps while they run.
func TestHealthHammer(t *testing.T) {
	sets := [][]registry.Instance{
		{inst("a", 1), inst("b", 2), inst("c", 3), inst("d", 1)},
		{inst("a", 1), inst("c", 3), inst("d", 1), inst("e", 7)},
		{inst("a", 2), inst("b", 2), inst("c", 1), inst("d", 1), inst("e", 1)},
		{inst("b", 5)},
		{},
	}
	ho := HealthOptions{BaseEjection: 50 * time.Millisecond, MaxEjection: time.Second, SlowStart: 300 * time.Millisecond}
	const pickers, updates = 4, 300
	for _, p := range Policies() {
		t.Run(p, func(t *testing.T) {
			clk := new(fakeClock)
			rnd := seeded(9)
			b := mustNew(t, p, Options{Rand: rnd, Now: clk.Now, Health: ho})
			b.Update(snap(sets[0]...))
			var (
				wg             sync.WaitGroup
				stop           = make(chan struct{})
				picks, ejected atomic.Int64
				seenMu         sync.Mutex
				seen           = make(map[*Endpoint]bool)
				errs           = make(chan error, pickers)
				ready          sync.WaitGroup
			)
			ready.Add(pickers)
			for g := range pickers {
				wg.Go(func() {
					key := fmt.Sprintf("key-%d", g)
					for i := 0; ; i++ {
						if i == 1 {
							ready.Done()
						}
						select {
						case <-stop:
							return
						default:
						}
						e, err := b.Pick(key)
						if errors.Is(err, ErrNoInstances) {
							continue
						}
						if err != nil {
							errs <- err
							return
						}
						picks.Add(1)
						// b and e fail often: both get ejected and come back.
						var outcome error
						switch r := rnd() % 100; {
						case e.Instance.ID == "b" && r < 60, e.Instance.ID == "e" && r < 30:
							outcome = errReset
						case r < 2:
							outcome = errRefused
						}
						e.Done(outcome)
						if outcome != nil && e.Health().Ejected {
							ejected.Add(1)
						}
						if i%16 == 0 {
							clk.Advance(time.Millisecond)
						}
					}
				})
			}
			ready.Wait()
			for i := range updates {
				b.Update(snap(sets[i%len(sets)]...))
				seenMu.Lock()
				for _, e := range b.Endpoints() {
					seen[e] = true
					_ = e.Health()
				}
				seenMu.Unlock()
			}
			close(stop)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("Pick: got %v, want nil or ErrNoInstances", err)
			}
			if picks.Load() == 0 || ejected.Load() == 0 {
				t.Errorf("got %d picks, %d failures that left their endpoint ejected; want some of both", picks.Load(), ejected.Load())
			}
			for e := range seen {
				if got := e.InFlight(); got != 0 {
					t.Errorf("%s InFlight after all Done: got %d, want 0", e.Instance.ID, got)
				}
			}
		})
	}
}

// TestFailureTakesLockOnlyOnTransition: Done does not block on the
// balancer's mutex for a failure that changes nothing.
func TestFailureTakesLockOnlyOnTransition(t *testing.T) {
	b, clk := newHealthy(t, "weighted_round_robin", HealthOptions{}, inst("a", 1), inst("b", 1))
	finish(t, b, "a", 1, errRefused) // ejected: the budget is spent
	finish(t, b, "b", 5, errReset)   // denied: no budget; weight at its floor
	clk.Advance(time.Millisecond)
	steps := []struct {
		name string
		id   string
		err  error
	}{
		{name: "failure on an ejected endpoint", id: "a", err: errRefused},
		{name: "refused, budget spent in the last gap", id: "b", err: errRefused},
		{name: "failure at the weight floor", id: "b", err: errReset},
		{name: "success", id: "b"},
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, st := range steps {
		done := make(chan struct{})
		go func() {
			defer close(done)
			finish(t, b, st.id, 1, st.err)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: Done blocked on the balancer's mutex", st.name)
		}
	}
}
