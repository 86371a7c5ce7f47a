package discovery

import (
	"context"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/registry"
)

// Watcher is what Subject needs from a registry driver; registry/zk and
// registry/etcd satisfy it.
type Watcher interface {
	Next(ctx context.Context) (registry.Batch, error)
}

// Options tune a Subject; zero values mean defaults.
type Options struct {
	Logger  *zap.Logger
	Backoff registry.Backoff
	// OnSkipped is called for every malformed record a watcher skipped.
	OnSkipped func(error)
}

// Subject runs the watch loop over every service of a registry and publishes
// each service's snapshots to that service's subscribers.
//
// Subscribe, Services, Snapshot and WatchServices are safe for concurrent
// use; Run is called once.
type Subject struct {
	w    Watcher
	opts Options
	log  *zap.Logger

	synced     chan struct{}
	syncedOnce sync.Once

	// mu guards services, svcSubs and nameSubs. It is never held while a
	// subscriber runs: delivery goes through per-subscription mailboxes.
	mu       sync.Mutex
	services map[string]*serviceState
	nameSubs map[*nameSub]struct{}
}

type serviceState struct {
	snap Snapshot
	subs map[*subscription]struct{}
}

// NewSubject returns a Subject over w; call Run to start it.
func NewSubject(w Watcher, opts Options) *Subject {
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	return &Subject{
		w:        w,
		opts:     opts,
		log:      log,
		synced:   make(chan struct{}),
		services: make(map[string]*serviceState),
		nameSubs: make(map[*nameSub]struct{}),
	}
}

// Synced is closed once the first full read of the registry has been applied.
func (s *Subject) Synced() <-chan struct{} { return s.synced }

// Run follows the registry until ctx is done. A watch error keeps every last
// good snapshot and retries the watch, re-listing, after a jittered backoff.
func (s *Subject) Run(ctx context.Context) error {
	attempt := 0
	for {
		b, err := s.w.Next(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			d := s.opts.Backoff.Delay(attempt)
			attempt++
			s.log.Warn("registry watch failed; keeping last known instances",
				zap.Error(err), zap.Duration("retry_in", d))
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			continue
		}
		attempt = 0
		s.apply(b)
		if b.Full {
			s.syncedOnce.Do(func() { close(s.synced) })
		}
	}
}

// apply publishes the services of b whose sets changed.
func (s *Subject) apply(b registry.Batch) {
	for _, e := range b.Skipped {
		s.log.Warn("skipped malformed registry record", zap.Error(e))
		if s.opts.OnSkipped != nil {
			s.opts.OnSkipped(e)
		}
	}
	s.mu.Lock()
	newNames := false
	set := func(name string, ins []registry.Instance) {
		ins = append([]registry.Instance(nil), ins...)
		registry.SortByID(ins)
		st, ok := s.services[name]
		if !ok {
			st = &serviceState{snap: Snapshot{Service: name}, subs: make(map[*subscription]struct{})}
			s.services[name] = st
			newNames = true
		} else if sameInstances(st.snap.Instances, ins) {
			return
		}
		st.snap = Snapshot{Service: name, Instances: ins, Version: st.snap.Version + 1}
		for sub := range st.subs {
			sub.post(st.snap)
		}
	}
	for name, ins := range b.Services {
		set(name, ins)
	}
	if b.Full {
		for name := range s.services {
			if _, ok := b.Services[name]; !ok {
				set(name, nil)
			}
		}
	}
	if newNames {
		names := s.namesLocked()
		for ns := range s.nameSubs {
			ns.post(names)
		}
	}
	s.mu.Unlock()
}

func (s *Subject) namesLocked() []string {
	names := make([]string, 0, len(s.services))
	for n := range s.services {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Services returns the names of every service seen so far, sorted.
func (s *Subject) Services() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.namesLocked()
}

// Snapshot returns the current snapshot of a service seen so far.
func (s *Subject) Snapshot(service string) (Snapshot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.services[service]
	if !ok {
		return Snapshot{}, false
	}
	return st.snap, true
}

// Subscribe delivers the service's current snapshot (if it is known) and
// every later one to sub, until cancel is called. cancel waits for an
// Update in progress to return.
func (s *Subject) Subscribe(service string, sub Subscriber) (cancel func()) {
	m := newMailbox[Snapshot](sub.Update)
	ps := &subscription{mailbox: m}
	s.mu.Lock()
	st, ok := s.services[service]
	if !ok {
		st = &serviceState{snap: Snapshot{Service: service}, subs: make(map[*subscription]struct{})}
		s.services[service] = st
	}
	st.subs[ps] = struct{}{}
	if st.snap.Version > 0 {
		ps.post(st.snap)
	}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(st.subs, ps)
		s.mu.Unlock()
		m.close()
	}
}

// WatchServices calls f with the sorted names of all known services at once
// and again whenever a new service appears, until cancel is called.
func (s *Subject) WatchServices(f func(names []string)) (cancel func()) {
	m := newMailbox[[]string](f)
	ns := &nameSub{mailbox: m}
	s.mu.Lock()
	s.nameSubs[ns] = struct{}{}
	ns.post(s.namesLocked())
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.nameSubs, ns)
		s.mu.Unlock()
		m.close()
	}
}

type subscription struct{ *mailbox[Snapshot] }
type nameSub struct{ *mailbox[[]string] }
