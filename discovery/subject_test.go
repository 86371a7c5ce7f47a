package discovery

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/registry"
)

// scriptWatcher replays batches and errors sent by the test.
type scriptWatcher struct {
	steps chan step
}

type step struct {
	b   registry.Batch
	err error
}

func newScript() *scriptWatcher { return &scriptWatcher{steps: make(chan step, 16)} }

func (w *scriptWatcher) Next(ctx context.Context) (registry.Batch, error) {
	select {
	case <-ctx.Done():
		return registry.Batch{}, ctx.Err()
	case s := <-w.steps:
		return s.b, s.err
	}
}

func inst(svc, id string) registry.Instance {
	return registry.Instance{Service: svc, ID: id, Address: "http://127.0.0.1:1"}
}

// recorder is a subscriber that keeps every snapshot it got.
type recorder struct {
	mu    sync.Mutex
	snaps []Snapshot
}

func (r *recorder) Update(s Snapshot) { r.mu.Lock(); r.snaps = append(r.snaps, s); r.mu.Unlock() }

func (r *recorder) last() (Snapshot, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.snaps) == 0 {
		return Snapshot{}, 0
	}
	return r.snaps[len(r.snaps)-1], len(r.snaps)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func ids(s Snapshot) []string {
	out := make([]string, len(s.Instances))
	for i, in := range s.Instances {
		out[i] = in.ID
	}
	return out
}

func start(t *testing.T, w Watcher) *Subject {
	t.Helper()
	return startWith(t, w, Options{PanicFloor: -1})
}

func startWith(t *testing.T, w Watcher, o Options) *Subject {
	t.Helper()
	o.Backoff = registry.Backoff{Base: time.Millisecond, Max: 2 * time.Millisecond}
	s := NewSubject(w, o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func TestSubjectPublishesDedupesAndKeepsLastGood(t *testing.T) {
	w := newScript()
	s := start(t, w)
	rec := &recorder{}
	cancel := s.Subscribe("echo", rec)
	defer cancel()

	w.steps <- step{b: registry.Batch{Full: true, Services: map[string][]registry.Instance{
		"echo": {inst("echo", "b"), inst("echo", "a")}}}}
	<-s.Synced()
	waitFor(t, "first snapshot", func() bool { _, n := rec.last(); return n == 1 })
	if got, _ := rec.last(); len(got.Instances) != 2 || got.Instances[0].ID != "a" || got.Version != 1 {
		t.Fatalf("got %v v%d, want sorted [a b] v1", ids(got), got.Version)
	}

	// Same set again, then errors: nothing published, last good kept.
	w.steps <- step{b: registry.Batch{Services: map[string][]registry.Instance{
		"echo": {inst("echo", "a"), inst("echo", "b")}}}}
	w.steps <- step{err: errors.New("connection lost")}
	w.steps <- step{err: errors.New("connection lost")}
	// A change to another service proves the steps above were consumed.
	w.steps <- step{b: registry.Batch{Services: map[string][]registry.Instance{"other": {inst("other", "x")}}}}
	waitFor(t, "other service", func() bool { _, ok := s.Snapshot("other"); return ok })
	if _, n := rec.last(); n != 1 {
		t.Fatalf("got %d snapshots, want 1: unchanged sets and errors must not publish", n)
	}
	if snap, _ := s.Snapshot("echo"); len(snap.Instances) != 2 {
		t.Fatalf("got %v, want last good [a b] kept through errors", ids(snap))
	}

	// A full re-list that leaves the service out empties it: the registry said so.
	w.steps <- step{b: registry.Batch{Full: true, Services: map[string][]registry.Instance{"other": {inst("other", "x")}}}}
	waitFor(t, "empty echo", func() bool { got, n := rec.last(); return n == 2 && len(got.Instances) == 0 })
	if got, _ := rec.last(); got.Version != 2 {
		t.Fatalf("got version %d, want 2", got.Version)
	}
}

func TestSubjectNewSubscriberGetsCurrent(t *testing.T) {
	w := newScript()
	s := start(t, w)
	w.steps <- step{b: registry.Batch{Full: true, Services: map[string][]registry.Instance{"echo": {inst("echo", "a")}}}}
	<-s.Synced()
	rec := &recorder{}
	defer s.Subscribe("echo", rec)()
	waitFor(t, "current snapshot", func() bool { got, n := rec.last(); return n == 1 && len(got.Instances) == 1 })
}

func TestSubjectServicesAndSkipped(t *testing.T) {
	w := newScript()
	var skipped atomic.Int32
	s := NewSubject(w, Options{OnSkipped: func(error) { skipped.Add(1) }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	var names atomic.Value
	defer s.WatchServices(func(n []string) { names.Store(n) })()
	w.steps <- step{b: registry.Batch{Full: true,
		Services: map[string][]registry.Instance{"b": {inst("b", "1")}, "a": {inst("a", "1")}},
		Skipped:  []error{errors.New("bad record")}}}
	waitFor(t, "names", func() bool { n, _ := names.Load().([]string); return len(n) == 2 })
	if n := names.Load().([]string); n[0] != "a" || n[1] != "b" {
		t.Fatalf("got %v, want [a b]", n)
	}
	if got := skipped.Load(); got != 1 {
		t.Fatalf("got %d skipped, want 1", got)
	}
}

// blockingSub blocks in Update until released.
type blockingSub struct {
	release chan struct{}
	mu      sync.Mutex
	got     []uint64
}

func (b *blockingSub) Update(s Snapshot) {
	<-b.release
	b.mu.Lock()
	b.got = append(b.got, s.Version)
	b.mu.Unlock()
}

func TestSlowSubscriberDoesNotBlockAndGetsLatest(t *testing.T) {
	w := newScript()
	s := start(t, w)
	slow := &blockingSub{release: make(chan struct{})}
	fast := &recorder{}
	defer s.Subscribe("echo", slow)()
	defer s.Subscribe("echo", fast)()
	for i := 0; i < 10; i++ {
		ins := []registry.Instance{inst("echo", "a")}
		for j := 0; j <= i; j++ {
			ins = append(ins, inst("echo", string(rune('b'+j))))
		}
		w.steps <- step{b: registry.Batch{Full: i == 0, Services: map[string][]registry.Instance{"echo": ins}}}
	}
	// The fast subscriber reaches the last version while the slow one is stuck.
	waitFor(t, "fast subscriber at v10", func() bool { got, _ := rec(fast); return got.Version == 10 })
	close(slow.release)
	waitFor(t, "slow subscriber at v10", func() bool {
		slow.mu.Lock()
		defer slow.mu.Unlock()
		return len(slow.got) > 0 && slow.got[len(slow.got)-1] == 10
	})
	slow.mu.Lock()
	defer slow.mu.Unlock()
	if len(slow.got) > 3 {
		t.Fatalf("got %d deliveries to the slow subscriber, want at most 3 (latest wins)", len(slow.got))
	}
}

func rec(r *recorder) (Snapshot, int) { return r.last() }

func TestSubjectHammer(t *testing.T) {
	w := newScript()
	s := start(t, w)
	w.steps <- step{b: registry.Batch{Full: true, Services: map[string][]registry.Instance{"echo": {inst("echo", "a")}}}}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				cancel := s.Subscribe("echo", SubscriberFunc(func(Snapshot) {}))
				s.Services()
				s.Snapshot("echo")
				cancel()
			}
		}()
	}
	for i := 0; i < 200; i++ {
		ins := []registry.Instance{inst("echo", "a")}
		if i%2 == 0 {
			ins = append(ins, inst("echo", "b"))
		}
		w.steps <- step{b: registry.Batch{Services: map[string][]registry.Instance{"echo": ins}}}
	}
	waitFor(t, "all steps consumed", func() bool { return len(w.steps) == 0 })
	close(stop)
	wg.Wait()
}
