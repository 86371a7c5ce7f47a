package discovery

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
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
	// MaxStaleness, when positive, expires every service (publishes it
	// empty) once the registry has been unreachable that long. Zero keeps
	// the last good sets forever.
	MaxStaleness time.Duration
	// PanicFloor is the share of a service's instances (0..1) that one update
	// may remove at once; an update removing more (and more than one
	// instance) is held until ConfirmDelay passes or a full re-list confirms
	// it. Negative disables it; zero means 0.5.
	PanicFloor float64
	// ConfirmDelay is how long a held update waits; zero means 3s.
	ConfirmDelay time.Duration
	// SnapshotPath, when set, is the file the routing state is written to
	// after each change and restored from at start.
	SnapshotPath string
}

// Subject runs the watch loop over every service of a registry and publishes
// each service's snapshots to that service's subscribers.
//
// Subscribe, Services, Snapshot, WatchServices, Status and Ready are safe
// for concurrent use; Run is called once.
type Subject struct {
	w    Watcher
	opts Options
	log  *zap.Logger

	synced     chan struct{}
	syncedOnce sync.Once
	skipped    atomic.Uint64
	saver      *saver

	// mu guards everything below. It is never held while a subscriber runs:
	// delivery goes through per-subscription mailboxes.
	mu       sync.Mutex
	services map[string]*serviceState
	nameSubs map[*nameSub]struct{}
	status   Status
	expiry   *time.Timer
}

type serviceState struct {
	snap Snapshot // as published
	subs map[*subscription]struct{}
	// lastGood is the registry's last set while the service is expired.
	lastGood []registry.Instance
	// restored marks a set loaded from the snapshot file and not yet
	// replaced by a registry read.
	restored bool
	held     *heldUpdate
	// base is the set published when the panic floor's window began.
	base   []registry.Instance
	baseAt time.Time
}

// NewSubject returns a Subject over w; call Run to start it.
func NewSubject(w Watcher, opts Options) *Subject {
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	if opts.PanicFloor == 0 {
		opts.PanicFloor = 0.5
	}
	if opts.ConfirmDelay <= 0 {
		opts.ConfirmDelay = 3 * time.Second
	}
	s := &Subject{
		w:        w,
		opts:     opts,
		log:      log,
		synced:   make(chan struct{}),
		services: make(map[string]*serviceState),
		nameSubs: make(map[*nameSub]struct{}),
	}
	if opts.SnapshotPath != "" {
		s.saver = newSaver(opts.SnapshotPath, log)
		s.restore()
	}
	return s
}

// Synced is closed once the first full read of the registry has been applied.
func (s *Subject) Synced() <-chan struct{} { return s.synced }

// Run follows the registry until ctx is done. A watch error keeps every last
// good snapshot and retries the watch, re-listing, after a jittered backoff.
func (s *Subject) Run(ctx context.Context) error {
	if s.saver != nil {
		done := make(chan struct{})
		go func() { defer close(done); s.saver.run(ctx) }()
		defer func() { <-done }()
	}
	defer func() {
		s.mu.Lock()
		if s.expiry != nil {
			s.expiry.Stop()
		}
		for _, st := range s.services {
			st.cancelHeldLocked()
		}
		s.mu.Unlock()
	}()
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
			s.mu.Lock()
			s.markErrorLocked(err, time.Now())
			s.mu.Unlock()
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
		s.skipped.Add(1)
		s.log.Warn("skipped malformed registry record", zap.Error(e))
		if s.opts.OnSkipped != nil {
			s.opts.OnSkipped(e)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.markSyncedLocked(time.Now())
	s.status.Skipped = s.skipped.Load()
	wasRestored := s.status.Restored
	if b.Full {
		s.status.Restored = false
	}
	newNames := false
	for name, ins := range b.Services {
		newNames = s.setLocked(name, ins, b.Full) || newNames
	}
	if b.Full {
		for name, st := range s.services {
			if _, ok := b.Services[name]; !ok && (len(st.snap.Instances) > 0 || st.held != nil || len(st.lastGood) > 0) {
				s.setLocked(name, nil, true)
			}
		}
	}
	if newNames {
		s.notifyNamesLocked()
	}
	if wasRestored && b.Full {
		s.log.Info("registry read: routing state restored from the snapshot file is replaced")
	}
}

// setLocked takes the registry's set for one service through the panic floor
// and publishes it if it changed. It reports whether the service is new.
func (s *Subject) setLocked(name string, ins []registry.Instance, full bool) bool {
	ins = append([]registry.Instance(nil), ins...)
	registry.SortByID(ins)
	st, isNew := s.stateLocked(name)
	st.lastGood = nil
	if full {
		// A set restored from the snapshot file meets the registry here; it
		// goes through the panic floor like any other, since a registry
		// just back from an outage may list a service before its
		// instances have re-registered.
		st.restored = false
	}
	s.publishLocked(name, st, s.floorLocked(name, st, ins, full))
	return isNew
}

func (s *Subject) stateLocked(name string) (*serviceState, bool) {
	st, ok := s.services[name]
	if !ok {
		st = &serviceState{snap: Snapshot{Service: name}, subs: make(map[*subscription]struct{})}
		s.services[name] = st
	}
	return st, !ok
}

// publishLocked sends a new snapshot to the service's subscribers unless the
// set is unchanged.
func (s *Subject) publishLocked(name string, st *serviceState, ins []registry.Instance) {
	if st.snap.Version > 0 && sameInstances(st.snap.Instances, ins) {
		return
	}
	st.snap = Snapshot{Service: name, Instances: ins, Version: st.snap.Version + 1}
	for sub := range st.subs {
		sub.post(st.snap)
	}
	if s.saver != nil && s.status.State != Expired {
		s.saver.changed(s.copySets)
	}
}

func (s *Subject) notifyNamesLocked() {
	names := s.namesLocked()
	for ns := range s.nameSubs {
		ns.post(names)
	}
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
// Update in progress to return and must not be called from Update.
func (s *Subject) Subscribe(service string, sub Subscriber) (cancel func()) {
	m := newMailbox[Snapshot](sub.Update)
	ps := &subscription{mailbox: m}
	s.mu.Lock()
	st, _ := s.stateLocked(service)
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
