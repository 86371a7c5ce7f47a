package loadbalance

import (
	"math"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gatehouse/gatehouse/discovery"
	"github.com/gatehouse/gatehouse/registry"
)

// picker is one policy's immutable view of a non-empty endpoint set, in ID
// order. Its methods run concurrently, must not block or allocate, and leave
// acquire to the caller.
type picker interface {
	// pick chooses by the policy alone, ignoring health.
	pick(key string) *Endpoint
	// skip is the slow path when pick's choice e for key is ejected at now:
	// an endpoint that is not, found in the policy's order within maxProbes
	// tries, else e.
	skip(key string, e *Endpoint, now int64) *Endpoint
}

// policy is what a balancing policy supplies.
type policy struct {
	build func(v view) picker // called with the balancer's mu held
	// weighted policies are rebuilt when effective weights change; excludes
	// policies leave ejected endpoints out of their pickers (until then,
	// Pick skips them). Every policy excludes today.
	weighted, excludes bool
}

// balancer is what every policy shares: the endpoint set kept by ID, the
// serialized Update, passive health and the atomically swapped picker. A
// policy supplies build, which may keep state across pickers (counters).
type balancer struct {
	policy policy
	h      health

	// mu serializes Update (callers already should; this makes misuse a
	// delay, not a race) and health transitions, and guards set, built and
	// every coldState's ejection fields. Lock order: mu, then nothing.
	mu    sync.Mutex
	set   endpointSet
	built int64 // when the last picker was built (h's clock): the rate limit
	// denied is when an ejection was last refused for MaxEjectedPercent.
	denied atomic.Int64

	cur atomic.Pointer[current] // nil while empty
}

// current is immutable once published.
type current struct {
	p picker
	// due is when time alone changes the picker (an ejection ends, a weight
	// recovers, slow start steps): Pick then reads the clock and the first
	// one past due rebuilds. 0, the healthy case: Pick never reads the clock.
	due   int64
	eps   []*Endpoint // every member
	w     []int64     // each member's weight in p, 0 when left out
	panic bool        // every member ejected: p picks among all, unchecked
}

func (b *balancer) Update(s discovery.Snapshot) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.h.nanos()
	warmUntil := b.h.warmUntil(now, len(b.set.eps) == 0)
	eps := b.set.update(s.Instances, func(ls *liveState) {
		ls.cold = &coldState{owner: b, warmUntil: warmUntil}
	})
	// Any change to a record changes its *Endpoint, so the same pointers
	// mean the same set: keep the picker (a ring is costly to rebuild).
	if c := b.cur.Load(); c != nil && slices.Equal(c.eps, eps) {
		return
	}
	b.buildLocked(now)
}

func (b *balancer) Pick(key string) (*Endpoint, error) {
	c := b.cur.Load()
	if c == nil {
		return nil, ErrNoInstances
	}
	if c.due != 0 {
		c = b.poll(c)
	}
	e := c.p.pick(key)
	s := e.live()
	// The one health check of a healthy pick: a load from the cache line
	// the in-flight add below writes anyway.
	if s.ejectedUntil.Load() != 0 {
		return avoid(key, e), nil
	}
	s.inflight.Add(1)
	return e, nil
}

// avoid is Pick's slow path, for a choice e with an ejection on record:
// unless it has lapsed, let the picker find another. It is kept out of Pick
// so that the fast path stays short; it finds the balancer through e and
// loads the picker afresh, so only key lives across the pick.
//
//go:noinline
func avoid(key string, e *Endpoint) *Endpoint {
	b := e.live().cold.owner // set: only a balancer ejects
	now := b.h.nanos()
	if c := b.cur.Load(); c != nil && !c.panic && ejectedAt(e, now) {
		e = c.p.skip(key, e, now)
	}
	return e.acquire()
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
	eps []*Endpoint // sorted by ID
}

func byID(a, b registry.Instance) int { return strings.Compare(a.ID, b.ID) }

// update returns the endpoints for ins in ID order and forgets absent IDs.
// An unchanged record keeps its *Endpoint; a changed weight or metadata at
// the same address gets a successor sharing the live state (Endpoint fields
// are read by concurrent Picks, so they are never written); a new address is
// a new backend with fresh state, set up by fresh. Both sides are sorted by
// ID, so one merge walk pairs them, without a map.
func (s *endpointSet) update(ins []registry.Instance, fresh func(*liveState)) []*Endpoint {
	if !slices.IsSortedFunc(ins, byID) { // snapshots are sorted; be safe
		ins = slices.Clone(ins)
		slices.SortStableFunc(ins, byID)
	}
	eps := make([]*Endpoint, 0, len(ins))
	old, j := s.eps, 0
	for k, in := range ins {
		if k > 0 && ins[k-1].ID == in.ID {
			continue // duplicate ID: the first record wins
		}
		for j < len(old) && old[j].Instance.ID < in.ID {
			j++
		}
		var ep *Endpoint
		var err error
		switch {
		case j < len(old) && old[j].Instance.ID == in.ID && old[j].Instance.Equal(in):
			ep = old[j]
		case j < len(old) && old[j].Instance.ID == in.ID && old[j].Instance.Address == in.Address:
			ep, err = old[j].successor(in)
		default:
			if ep, err = NewEndpoint(in); err == nil {
				fresh(&ep.own)
			}
		}
		if err != nil {
			continue // unroutable; registry.Validate rejects it upstream
		}
		eps = append(eps, ep)
	}
	s.eps = eps
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

// divisor computes a mod d without a division instruction, which costs
// 20-30 ns for 64 bits on the Xeon we benchmark on: with M = ceil(2^128/d), a mod d is the high
// 128 bits of (M*a mod 2^128)*d, exact for every 64-bit a and d (Lemire,
// Kaser and Kurz, "Faster remainder by direct computation", 2019).
type divisor struct {
	d, mhi, mlo uint64
}

func newDivisor(d int) divisor {
	u := uint64(d)
	// M = floor((2^128-1)/d) + 1; for d == 1 it wraps to 0, which gives 0.
	qhi := math.MaxUint64 / u
	qlo, _ := bits.Div64(math.MaxUint64%u, math.MaxUint64, u)
	mlo, carry := bits.Add64(qlo, 1, 0)
	return divisor{d: u, mhi: qhi + carry, mlo: mlo}
}

func (v divisor) mod(a uint64) uint64 {
	hi, lo := bits.Mul64(v.mlo, a)
	hi += v.mhi * a // (lowhi, lo) = M*a mod 2^128
	h2, _ := bits.Mul64(lo, v.d)
	h3, l3 := bits.Mul64(hi, v.d)
	_, carry := bits.Add64(l3, h2, 0)
	return h3 + carry
}

// fastrange maps a uniform 32-bit x onto [0, n) with a multiply, not a
// division (Lemire).
func fastrange(x uint32, n int) int { return int(uint64(x) * uint64(n) >> 32) }
