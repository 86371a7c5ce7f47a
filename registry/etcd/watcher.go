package etcd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gatehouse/gatehouse/registry"
)

// watcher lists every service at one revision R and then follows one prefix
// watch from R+1, so no change falls between the read and the watch. It keeps
// the instances in memory and reports only the services a change touched,
// so applying a change costs the same however many services there are.
//
// Next is not safe for concurrent use; Close may be called at any time.
type watcher struct {
	c       *Client
	layout  registry.Layout
	silence time.Duration // longest wait on etcd without hearing from it

	ctx    context.Context // ends on Close
	cancel context.CancelFunc

	// mu guards closed; wg.Add happens under it so that Close, once it has
	// set closed, waits for every goroutine that will ever start.
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // goroutines waiting for a watch to be created

	// Only Next touches these. ready delivers the watch channel once the
	// watch is created; services is nil until the first successful list.
	ready     chan clientv3.WatchChan
	wch       clientv3.WatchChan
	stopWatch context.CancelFunc
	services  map[string]map[string]registry.Instance
}

func newWatcher(c *Client) *watcher {
	ctx, cancel := context.WithCancel(c.ctx)
	return &watcher{
		c:       c,
		layout:  c.layout,
		silence: time.Duration(c.ttl) * time.Second,
		ctx:     ctx,
		cancel:  cancel,
	}
}

// Close ends the watch and waits for its goroutines; Next then returns
// ErrClosed.
func (w *watcher) Close() error {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.cancel()
	w.wg.Wait()
	return nil
}

// Next returns every service on the first call and after an error, and then
// blocks until something changes. An error never stands for "no instances":
// a closed watch, a compaction, a lost leader, or an etcd that stays silent
// for the lease TTL and then fails a read all return an error, and the next
// call lists afresh.
func (w *watcher) Next(ctx context.Context) (registry.Batch, error) {
	if w.ctx.Err() != nil {
		w.reset()
		return registry.Batch{}, ErrClosed
	}
	var b registry.Batch
	var err error
	if w.services == nil {
		b, err = w.list(ctx)
	} else {
		b, err = w.follow(ctx)
	}
	if err != nil {
		w.reset()
		if w.ctx.Err() != nil {
			return registry.Batch{}, ErrClosed
		}
		return registry.Batch{}, err
	}
	return b, nil
}

// request bounds one request by ctx, the client's timeout, and Close.
func (w *watcher) request(ctx context.Context) (context.Context, context.CancelFunc) {
	rctx, cancel := w.c.request(ctx)
	stop := context.AfterFunc(w.ctx, cancel)
	return rctx, func() {
		stop()
		cancel()
	}
}

// reset drops the watch and the cached state, so the next call re-lists.
func (w *watcher) reset() {
	if w.stopWatch != nil {
		w.stopWatch()
	}
	w.ready, w.wch, w.stopWatch, w.services = nil, nil, nil, nil
}

// list reads the whole prefix at one revision and starts the watch after it.
func (w *watcher) list(ctx context.Context) (registry.Batch, error) {
	rctx, cancel := w.request(ctx)
	resp, err := w.c.cli.Get(rctx, w.layout.Prefix(), clientv3.WithPrefix())
	cancel()
	if err != nil {
		return registry.Batch{}, fmt.Errorf("etcd registry: list %s: %w", w.layout.Prefix(), err)
	}
	services := make(map[string]map[string]registry.Instance)
	b := registry.Batch{Full: true, Services: make(map[string][]registry.Instance)}
	for _, kv := range resp.Kvs {
		in, err := w.layout.DecodeAt(string(kv.Key), kv.Value)
		if err != nil {
			b.Skipped = append(b.Skipped, err)
			continue
		}
		set := services[in.Service]
		if set == nil {
			set = make(map[string]registry.Instance)
			services[in.Service] = set
		}
		set[in.ID] = in
	}
	for name, set := range services {
		b.Services[name] = sorted(set)
	}

	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return registry.Batch{}, ErrClosed
	}
	w.wg.Add(1)
	w.mu.Unlock()
	// A leaderless member cancels the watch instead of leaving it silent.
	wctx, stop := context.WithCancel(clientv3.WithRequireLeader(w.ctx))
	ready := make(chan clientv3.WatchChan, 1)
	rev := resp.Header.Revision + 1
	// clientv3's Watch blocks until the server confirms the watch (or wctx
	// ends); follow waits for it under its own deadlines instead.
	go func() {
		defer w.wg.Done()
		ready <- w.c.cli.Watch(wctx, w.layout.Prefix(),
			clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithProgressNotify())
	}()
	w.ready, w.stopWatch, w.services = ready, stop, services
	return b, nil
}

// follow waits for the next change and returns the services it touched,
// together with every change already pending.
func (w *watcher) follow(ctx context.Context) (registry.Batch, error) {
	// Halfway through a silent window, ask for a progress notification: any
	// response proves the watch alive. etcd answers none while the watch
	// starts past its current revision (nothing written since the list, or
	// since a transparent resume), so an unanswered window ends with a read
	// that proves the cluster reachable, or with an error.
	timer := time.NewTimer(w.silence / 2)
	defer timer.Stop()
	probed := false
	heard := func() {
		probed = false
		timer.Reset(w.silence / 2)
	}
	for {
		select {
		case <-ctx.Done():
			return registry.Batch{}, ctx.Err()
		case <-w.ctx.Done():
			return registry.Batch{}, ErrClosed
		case wch := <-w.ready:
			w.wch, w.ready = wch, nil
			heard()
		case <-timer.C:
			if !probed && w.requestProgress() == nil {
				probed = true
				timer.Reset(w.silence / 2)
				continue
			}
			if err := w.ping(ctx); err != nil {
				return registry.Batch{}, err
			}
			heard()
		case resp, ok := <-w.wch:
			heard()
			changed := make(map[string]struct{})
			var skipped []error
			if err := w.apply(resp, ok, changed, &skipped); err != nil {
				return registry.Batch{}, err
			}
			// Coalesce what is already pending, without waiting for more.
			for pending := true; pending; {
				select {
				case resp, ok := <-w.wch:
					if err := w.apply(resp, ok, changed, &skipped); err != nil {
						return registry.Batch{}, err
					}
				default:
					pending = false
				}
			}
			if len(changed) == 0 && len(skipped) == 0 {
				continue // progress or created notifications only
			}
			b := registry.Batch{Services: make(map[string][]registry.Instance, len(changed)), Skipped: skipped}
			for name := range changed {
				b.Services[name] = sorted(w.services[name])
			}
			return b, nil
		}
	}
}

// requestProgress asks etcd for a progress notification on the watch stream.
func (w *watcher) requestProgress() error {
	// The stream is found by the context's metadata, hence the leader flag.
	pctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(w.ctx), w.silence/2)
	defer cancel()
	return w.c.cli.RequestProgress(pctx)
}

// ping makes one linearizable read of a single key: it succeeds only while
// the cluster has a leader and answers.
func (w *watcher) ping(ctx context.Context) error {
	rctx, cancel := w.request(ctx)
	defer cancel()
	if _, err := w.c.cli.Get(rctx, w.layout.Root, clientv3.WithCountOnly()); err != nil {
		return fmt.Errorf("etcd registry: watch silent for %v and etcd unreachable: %w", w.silence, err)
	}
	return nil
}

// apply folds one watch response into the cached state, noting the services
// it changed and the malformed records it met.
func (w *watcher) apply(resp clientv3.WatchResponse, ok bool, changed map[string]struct{}, skipped *[]error) error {
	if !ok {
		return errors.New("etcd registry: watch channel closed")
	}
	if err := resp.Err(); err != nil {
		if resp.CompactRevision != 0 {
			return fmt.Errorf("etcd registry: watch: compacted at revision %d: %w", resp.CompactRevision, err)
		}
		return fmt.Errorf("etcd registry: watch: %w", err)
	}
	for _, ev := range resp.Events {
		key := string(ev.Kv.Key)
		service, id, perr := w.layout.Parse(key)
		if ev.Type == clientv3.EventTypeDelete {
			if perr == nil {
				w.remove(service, id, changed)
			}
			continue
		}
		in, err := w.layout.DecodeAt(key, ev.Kv.Value)
		if err != nil {
			*skipped = append(*skipped, err)
			// A valid record overwritten by garbage is no longer routable.
			if perr == nil {
				w.remove(service, id, changed)
			}
			continue
		}
		set := w.services[service]
		if set == nil {
			set = make(map[string]registry.Instance)
			w.services[service] = set
		}
		set[id] = in
		changed[service] = struct{}{}
	}
	return nil
}

func (w *watcher) remove(service, id string, changed map[string]struct{}) {
	set, ok := w.services[service]
	if !ok {
		return
	}
	if _, ok := set[id]; !ok {
		return
	}
	delete(set, id)
	if len(set) == 0 {
		delete(w.services, service)
	}
	changed[service] = struct{}{}
}

// sorted returns a service's instances in ID order; an absent service gives
// an empty, non-nil set.
func sorted(set map[string]registry.Instance) []registry.Instance {
	ins := make([]registry.Instance, 0, len(set))
	for _, in := range set {
		ins = append(ins, in)
	}
	registry.SortByID(ins)
	return ins
}
