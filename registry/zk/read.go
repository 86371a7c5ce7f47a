package zk

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	gozk "github.com/go-zookeeper/zk"

	"github.com/gatehouse/gatehouse/registry"
)

// readConcurrency bounds the reads in flight during a list. The driver
// pipelines them over the one connection, so a full list of thousands of
// nodes costs a few dozen round trips' time instead of thousands.
const readConcurrency = 32

// nodeRef names a node to read.
type nodeRef struct {
	service *service
	id      string
	path    string
	n       *node
}

// list reads every service under the root and rebuilds the cache, arming
// whatever is not armed yet.
func (w *watcher) list(ctx context.Context) (registry.Batch, error) {
	names, err := w.rootChildren(ctx)
	if err != nil {
		return registry.Batch{}, err
	}
	services := make(map[string]*service, len(names))
	for _, name := range names {
		s := w.services[name]
		if s == nil {
			s = &service{nodes: make(map[string]*node)}
		}
		services[name] = s
	}
	w.services = services
	if _, _, err := w.readServices(ctx, names, true); err != nil {
		return registry.Batch{}, err
	}
	var refs []nodeRef
	for name, s := range w.services {
		for id, n := range s.nodes {
			refs = append(refs, nodeRef{s, id, w.root + "/" + name + "/" + id, n})
		}
	}
	skipped, err := w.readNodes(ctx, refs)
	if err != nil {
		return registry.Batch{}, err
	}
	b := registry.Batch{Full: true, Services: make(map[string][]registry.Instance, len(w.services)), Skipped: skipped}
	for name, s := range w.services {
		s.reported, s.wasReported = s.instances(), true
		b.Services[name] = s.reported
	}
	return b, nil
}

// update re-reads what fired and returns the complete sets of the services
// it touched. Nodes whose data watch is still armed are served from cache:
// ZooKeeper delivers a watch event before any read that sees the change.
func (w *watcher) update(ctx context.Context, fired map[string]uint8) (registry.Batch, error) {
	changed := make(map[string]bool)
	reread := make(map[string]bool) // services whose children changed
	var refs []nodeRef
	relistRoot := false
	for path, bits := range fired {
		if path == w.root {
			relistRoot = relistRoot || bits&(firedChildren|firedDeleted|firedCreated) != 0
			continue
		}
		name, id, isNode := splitPath(path, w.root)
		s := w.services[name]
		if s == nil {
			continue // a new service: the root's child watch reports it
		}
		if !isNode {
			if bits&(firedChildren|firedDeleted) != 0 {
				reread[name] = true
			}
			continue
		}
		n := s.nodes[id]
		switch {
		case n == nil: // a new node: its service's child watch reports it
		case bits&firedDeleted != 0:
			delete(s.nodes, id)
			changed[name] = true
		case bits&firedData != 0:
			refs = append(refs, nodeRef{s, id, path, n})
			changed[name] = true
		}
	}
	if relistRoot {
		names, err := w.rootChildren(ctx)
		if err != nil {
			return registry.Batch{}, err
		}
		seen := make(map[string]bool, len(names))
		for _, name := range names {
			seen[name] = true
			if w.services[name] == nil {
				w.services[name] = &service{nodes: make(map[string]*node)}
				reread[name] = true
			}
		}
		for name := range w.services {
			if !seen[name] {
				delete(w.services, name)
				changed[name] = true
			}
		}
	}
	names := make([]string, 0, len(reread))
	for name := range reread {
		if w.services[name] != nil {
			names = append(names, name)
			changed[name] = true
		}
	}
	gone, added, err := w.readServices(ctx, names, false)
	if err != nil {
		return registry.Batch{}, err
	}
	for _, name := range gone {
		changed[name] = true
	}
	skipped, err := w.readNodes(ctx, append(refs, added...))
	if err != nil {
		return registry.Batch{}, err
	}
	b := registry.Batch{Services: make(map[string][]registry.Instance, len(changed)), Skipped: skipped}
	for name := range changed {
		s := w.services[name]
		if s == nil {
			b.Services[name] = []registry.Instance{}
			continue
		}
		// One change often fires twice (a node's own watch and its
		// parent's): report a set only when it differs from the last one.
		if ins := s.instances(); !s.wasReported || !sameSet(ins, s.reported) {
			s.reported, s.wasReported = ins, true
			b.Services[name] = ins
		}
	}
	return b, nil
}

// readServices lists the children of the named services and syncs their
// node maps: removed IDs are dropped, new ones added. A service node that
// is gone is dropped and returned in gone. added holds the new nodes, or
// every node if all is set.
func (w *watcher) readServices(ctx context.Context, names []string, all bool) (gone []string, added []nodeRef, err error) {
	ids := make([][]string, len(names))
	missing := make([]bool, len(names))
	err = parallel(ctx, len(names), func(i int) error {
		var err error
		ids[i], err = w.children(ctx, w.root+"/"+names[i], &w.services[names[i]].armed)
		if errors.Is(err, gozk.ErrNoNode) {
			missing[i], err = true, nil
		}
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	for i, name := range names {
		if missing[i] {
			delete(w.services, name)
			gone = append(gone, name)
			continue
		}
		s := w.services[name]
		nodes := make(map[string]*node, len(ids[i]))
		for _, id := range ids[i] {
			n := s.nodes[id]
			if n == nil {
				n = &node{}
			}
			if n != s.nodes[id] || all {
				added = append(added, nodeRef{s, id, w.root + "/" + name + "/" + id, n})
			}
			nodes[id] = n
		}
		s.nodes = nodes
	}
	return gone, added, nil
}

// readNodes reads and decodes the given nodes; nodes found missing are
// dropped from their service. It returns the decode errors of this read.
func (w *watcher) readNodes(ctx context.Context, refs []nodeRef) ([]error, error) {
	missing := make([]bool, len(refs))
	err := parallel(ctx, len(refs), func(i int) error {
		r := refs[i]
		data, err := w.get(ctx, r.path, &r.n.armed)
		if errors.Is(err, gozk.ErrNoNode) {
			missing[i] = true
			return nil
		}
		if err != nil {
			return err
		}
		r.n.inst, r.n.err = w.c.layout.DecodeAt(r.path, data)
		return nil
	})
	if err != nil {
		return nil, err
	}
	var skipped []error
	for i, r := range refs {
		switch {
		case missing[i]:
			if r.service.nodes[r.id] == r.n {
				delete(r.service.nodes, r.id)
			}
		case r.n.err != nil:
			skipped = append(skipped, r.n.err)
		}
	}
	return skipped, nil
}

// rootChildren lists the services. A missing root has none: an exists
// watch then reports its creation.
func (w *watcher) rootChildren(ctx context.Context) ([]string, error) {
	for range maxAttempts {
		names, err := w.children(ctx, w.root, &w.rootArmed)
		if !errors.Is(err, gozk.ErrNoNode) {
			return names, err
		}
		if w.rootExistsW {
			return nil, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ok, _, _, err := w.c.conn.ExistsW(w.root)
		if err != nil {
			return nil, fmt.Errorf("zookeeper: watch %s: %w", w.root, err)
		}
		if !ok {
			w.rootExistsW = true
			return nil, nil
		}
	}
	return nil, fmt.Errorf("zookeeper: %s keeps vanishing", w.root)
}

// children lists path's children, arming a child watch unless one is armed.
func (w *watcher) children(ctx context.Context, path string, armed *bool) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var names []string
	var err error
	if *armed {
		names, _, err = w.c.conn.Children(path)
	} else if names, _, _, err = w.c.conn.ChildrenW(path); err == nil {
		*armed = true
	}
	if err != nil && !errors.Is(err, gozk.ErrNoNode) {
		err = fmt.Errorf("zookeeper: list %s: %w", path, err)
	}
	return names, err
}

// get reads path's data, arming a data watch unless one is armed.
func (w *watcher) get(ctx context.Context, path string, armed *bool) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var data []byte
	var err error
	if *armed {
		data, _, err = w.c.conn.Get(path)
	} else if data, _, _, err = w.c.conn.GetW(path); err == nil {
		*armed = true
	}
	if err != nil && !errors.Is(err, gozk.ErrNoNode) {
		err = fmt.Errorf("zookeeper: read %s: %w", path, err)
	}
	return data, err
}

// instances returns the service's valid records sorted by ID.
func (s *service) instances() []registry.Instance {
	ins := make([]registry.Instance, 0, len(s.nodes))
	for _, n := range s.nodes {
		if n.err == nil {
			ins = append(ins, n.inst)
		}
	}
	registry.SortByID(ins)
	return ins
}

// sameSet reports whether two sets sorted by ID are equal.
func sameSet(a, b []registry.Instance) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// splitPath splits a path below root into its service and, for an instance
// node, its ID.
func splitPath(path, root string) (service, id string, isNode bool) {
	rest := strings.TrimPrefix(path, root+"/")
	service, id, isNode = strings.Cut(rest, "/")
	return service, id, isNode
}

// parallel runs f(0), …, f(n-1) on up to readConcurrency goroutines and
// returns the first error; after an error no new call starts.
func parallel(ctx context.Context, n int, f func(i int) error) error {
	if n == 1 {
		return f(0)
	}
	var (
		next     atomic.Int64
		failed   atomic.Bool
		once     sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	for range min(n, readConcurrency) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				err := ctx.Err()
				if err == nil {
					err = f(i)
				}
				if err != nil {
					once.Do(func() { firstErr = err })
					failed.Store(true)
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}
