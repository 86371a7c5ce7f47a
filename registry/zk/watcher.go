package zk

import (
	"context"
	"sync"

	gozk "github.com/go-zookeeper/zk"

	"github.com/gatehouse/gatehouse/registry"
)

// What fired on a path, accumulated between two reads of the inbox.
const (
	firedData uint8 = 1 << iota
	firedChildren
	firedDeleted
	firedCreated
)

// watcher follows every service under the root.
//
// The driver's one-shot watches fire into the Client's event callback,
// which marks the path in this watcher's inbox; Next drains the whole inbox
// at once, so a burst of events becomes one batch. Every path read with a
// watch is remembered as armed, so it is re-armed once it fires and never
// twice (the driver would keep a channel per duplicate until it fires).
type watcher struct {
	c    *Client
	root string // includes the chroot

	// mu guards the inbox below; taken under Client.mu by the callback.
	mu      sync.Mutex
	fired   map[string]uint8
	failure error
	reset   bool // the driver dropped every watch: nothing is armed
	closed  bool
	wake    chan struct{} // one slot: "the inbox changed"

	// Owned by Next.
	listed      bool // the last full list succeeded and no error followed
	rootArmed   bool // child watch on the root
	rootExistsW bool // exists watch on a missing root
	services    map[string]*service
}

// service is the cached state of one service node.
type service struct {
	armed       bool // child watch
	nodes       map[string]*node
	reported    []registry.Instance // the set last returned by Next
	wasReported bool                // reported is meaningful
}

// node is the cached, decoded record of one instance node.
type node struct {
	armed bool // data watch
	inst  registry.Instance
	err   error // non-nil: malformed, left out of the set
}

func newWatcher(c *Client) *watcher {
	return &watcher{
		c:        c,
		root:     c.layout.Root,
		fired:    make(map[string]uint8),
		wake:     make(chan struct{}, 1),
		services: make(map[string]*service),
	}
}

// notify records a fired watch. Called under Client.mu; must not block.
func (w *watcher) notify(ev gozk.Event) {
	if !under(ev.Path, w.root) {
		return
	}
	var bit uint8
	switch ev.Type {
	case gozk.EventNodeDataChanged:
		bit = firedData
	case gozk.EventNodeChildrenChanged:
		bit = firedChildren
	case gozk.EventNodeDeleted:
		bit = firedDeleted
	case gozk.EventNodeCreated:
		bit = firedCreated
	default:
		return
	}
	w.mu.Lock()
	w.fired[ev.Path] |= bit
	w.mu.Unlock()
	w.poke()
}

// fail makes the next Next return err; reset says every watch is gone.
func (w *watcher) fail(err error, reset bool) {
	w.mu.Lock()
	if w.failure == nil {
		w.failure = err
	}
	w.reset = w.reset || reset
	w.mu.Unlock()
	w.poke()
}

func (w *watcher) shutdown() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.poke()
}

func (w *watcher) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// take empties the inbox.
func (w *watcher) take() (fired map[string]uint8, failure error, reset, closed bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	failure, reset, closed = w.failure, w.reset, w.closed
	if len(w.fired) > 0 {
		fired, w.fired = w.fired, make(map[string]uint8)
	}
	w.failure, w.reset = nil, false
	return fired, failure, reset, closed
}

// Next implements registry.Watcher.
func (w *watcher) Next(ctx context.Context) (registry.Batch, error) {
	for {
		fired, failure, reset, closed := w.take()
		if closed {
			return registry.Batch{}, ErrClosed
		}
		if reset {
			w.disarmAll()
		}
		w.disarm(fired)
		if !w.listed {
			// A failure taken here happened before the list, which covers it.
			b, err := w.list(ctx)
			if err != nil {
				return registry.Batch{}, err
			}
			w.listed = true
			return b, nil
		}
		if failure != nil {
			w.listed = false
			return registry.Batch{}, failure
		}
		if len(fired) == 0 {
			select {
			case <-w.wake:
				continue
			case <-ctx.Done():
				return registry.Batch{}, ctx.Err()
			}
		}
		b, err := w.update(ctx, fired)
		if err != nil {
			w.listed = false
			return registry.Batch{}, err
		}
		if len(b.Services) > 0 || len(b.Skipped) > 0 {
			return b, nil
		}
	}
}

// Close implements registry.Watcher. Watches already armed fire once more
// on the server and are then gone; ZooKeeper has no cheaper way to drop them.
func (w *watcher) Close() error {
	w.c.removeWatcher(w)
	w.shutdown()
	return nil
}

// disarmAll forgets every armed watch, after the driver dropped them.
func (w *watcher) disarmAll() {
	w.rootArmed, w.rootExistsW = false, false
	for _, s := range w.services {
		s.armed = false
		for _, n := range s.nodes {
			n.armed = false
		}
	}
}

// disarm marks the watches that fired as no longer armed.
func (w *watcher) disarm(fired map[string]uint8) {
	for path, bits := range fired {
		if path == w.root {
			if bits&(firedChildren|firedDeleted) != 0 {
				w.rootArmed = false
			}
			if bits&firedCreated != 0 {
				w.rootExistsW = false
			}
			continue
		}
		name, id, isNode := splitPath(path, w.root)
		s := w.services[name]
		if s == nil {
			continue
		}
		if !isNode {
			if bits&(firedChildren|firedDeleted) != 0 {
				s.armed = false
			}
			continue
		}
		if n := s.nodes[id]; n != nil && bits&(firedData|firedDeleted) != 0 {
			n.armed = false
		}
	}
}
