package loadbalance

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gatehouse/gatehouse/discovery"
	"github.com/gatehouse/gatehouse/registry"
)

// picker is one policy's immutable view of a non-empty endpoint set, in ID
// order. pick runs concurrently, must not block or allocate, and leaves
// acquire to the caller.
type picker interface {
	pick(key string) *Endpoint
}

// balancer is what every policy shares: the endpoint set kept by ID, the
// serialized Update and the atomically swapped picker. A policy only
// supplies build, which may keep state across pickers (counters).
type balancer struct {
	build func(eps []*Endpoint) picker // called with mu held

	// mu serializes Update (callers already should; this makes misuse a
	// delay, not a race) and guards set.
	mu  sync.Mutex
	set endpointSet

	cur atomic.Pointer[current] // nil while empty
}

type current struct {
	eps []*Endpoint
	p   picker
}

func (b *balancer) Update(s discovery.Snapshot) {
	b.mu.Lock()
	defer b.mu.Unlock()
	eps := b.set.update(s.Instances)
	if len(eps) == 0 {
		b.cur.Store(nil)
		return
	}
	b.cur.Store(&current{eps: eps, p: b.build(eps)})
}

func (b *balancer) Pick(key string) (*Endpoint, error) {
	c := b.cur.Load()
	if c == nil {
		return nil, ErrNoInstances
	}
	return c.p.pick(key).acquire(), nil
}

func (b *balancer) Endpoints() []*Endpoint {
	if c := b.cur.Load(); c != nil {
		return slices.Clone(c.eps)
	}
	return nil
}

// endpointSet keeps one *Endpoint per instance ID across updates, so the live
// state of an instance survives changes to the others.
type endpointSet struct {
	byID map[string]*Endpoint
}

// update returns the endpoints for ins in ID order and forgets absent IDs.
// An unchanged record keeps its *Endpoint; a changed weight or metadata at
// the same address gets a successor sharing the live state (Endpoint fields
// are read by concurrent Picks, so they are never written); a new address is
// a new backend with fresh state.
func (s *endpointSet) update(ins []registry.Instance) []*Endpoint {
	next := make(map[string]*Endpoint, len(ins))
	eps := make([]*Endpoint, 0, len(ins))
	for _, in := range ins {
		if _, dup := next[in.ID]; dup {
			continue
		}
		old := s.byID[in.ID]
		var ep *Endpoint
		var err error
		switch {
		case old != nil && old.Instance.Equal(in):
			ep = old
		case old != nil && old.Instance.Address == in.Address:
			ep, err = old.successor(in)
		default:
			ep, err = NewEndpoint(in)
		}
		if err != nil {
			continue // unroutable; registry.Validate rejects it upstream
		}
		next[in.ID] = ep
		eps = append(eps, ep)
	}
	// Snapshots come sorted by ID; ring ties and WRR order rely on it.
	byID := func(a, b *Endpoint) int { return strings.Compare(a.Instance.ID, b.Instance.ID) }
	if !slices.IsSortedFunc(eps, byID) {
		slices.SortFunc(eps, byID)
	}
	s.byID = next
	return eps
}

// counter is an atomic sequence number padded to its own cache line, so the
// counters of different balancers do not false-share.
type counter struct {
	n atomic.Uint64
	_ [56]byte
}

// next returns 0, 1, 2, ...
func (c *counter) next() uint64 { return c.n.Add(1) - 1 }

// fastrange maps a uniform 32-bit x onto [0, n) with a multiply, not a
// division (Lemire).
func fastrange(x uint32, n int) int { return int(uint64(x) * uint64(n) >> 32) }
