package loadbalance

import (
	"slices"
	"time"
)

// Rebuild pacing. Health transitions on the failure path rebuild at most
// every minRebuildGap, so a failure storm costs one rebuild per gap, not one
// per request. Slow start and recovering weights are polled at most every
// pollGap: they change gradually and a picker a second late is fine.
const (
	minRebuildGap = 100 * time.Millisecond
	pollGap       = time.Second
)

// maxProbes bounds how many other endpoints a pick tries when its first
// choice is ejected (picker.skip). Rebuilds leave ejected endpoints out, so
// probing only covers the time until the next rebuild (and consistent_hash,
// which keeps them to keep keys in place); if all probes fail the first
// choice stands.
const maxProbes = 16

// view is what a picker is built from.
type view struct {
	all []*Endpoint // every member, ID order (consistent_hash)
	eps []*Endpoint // the members to pick from, ID order
	w   []int64     // eps' weights, > 0, divided by their GCD
	// panic: every member is ejected, so eps is all of them and Pick does
	// not look for better.
	panic bool
}

// viewLocked weighs the members for a picker at now. It returns the view,
// each member's weight (0 when left out), and when the picker should be
// rebuilt because time alone changes the view (0: never).
func (b *balancer) viewLocked(all []*Endpoint, now int64) (v view, w []int64, due int64) {
	soon := func(t int64) {
		if due == 0 || t < due {
			due = t
		}
	}
	w = make([]int64, len(all))
	left := 0 // members left out as ejected
	for i, e := range all {
		s := e.live()
		w[i] = 1
		if b.policy.weighted {
			hl := level(s.lost.Load())
			if hl < 10 {
				soon(now + int64(pollGap)) // recovering: successes raise it
			}
			wl, next := b.h.warmLevel(s.cold, now)
			if next != 0 {
				soon(max(next, now+int64(pollGap)))
			}
			w[i] = int64(e.Instance.EffectiveWeight()) * hl * wl
		}
		if !b.policy.excludes {
			continue
		}
		if u := s.ejectedUntil.Load(); u > now {
			soon(u)
			w[i], left = -w[i], left+1 // negated: left out unless in panic
		} else if u != 0 {
			s.ejectedUntil.CompareAndSwap(u, 0) // re-admitted
		}
	}
	v = view{all: all}
	if left == len(all) {
		v.panic, left = true, 0 // pick among all
		for i := range w {
			w[i] = -w[i]
		}
	}
	if left == 0 {
		v.eps = all
	} else {
		v.eps = make([]*Endpoint, 0, len(all)-left)
	}
	v.w = make([]int64, 0, len(v.eps))
	for i, e := range all {
		if w[i] > 0 {
			if left != 0 {
				v.eps = append(v.eps, e)
			}
			v.w = append(v.w, w[i])
		}
		w[i] = max(0, w[i])
	}
	divideByGCD(v.w)
	return v, w, due
}

// buildLocked publishes a picker for the current members as of now,
// reusing the current one if nothing it depends on changed.
func (b *balancer) buildLocked(now int64) {
	eps := b.set.eps
	if len(eps) == 0 {
		b.cur.Store(nil)
		return
	}
	v, w, due := b.viewLocked(eps, now)
	c := &current{due: due, eps: eps, w: w, panic: v.panic}
	if old := b.cur.Load(); old != nil && old.panic == c.panic &&
		slices.Equal(old.eps, eps) && slices.Equal(old.w, w) {
		c.p = old.p
	} else {
		c.p = b.policy.build(v)
		b.built = now
	}
	b.cur.Store(c)
}

// refreshLocked applies a health transition: at once, or when the rate limit
// allows, by the first Pick after that.
func (b *balancer) refreshLocked(now int64) {
	c := b.cur.Load()
	if c == nil {
		return
	}
	at := b.built + int64(minRebuildGap)
	if now >= at {
		b.buildLocked(now)
		return
	}
	if c.due == 0 || at < c.due {
		n := *c
		n.due = at
		b.cur.Store(&n)
	}
}

// poll runs on the pick path when the current picker has a due time: the
// first Pick past it rebuilds, the others go on with the current picker.
// TryLock keeps Pick from blocking; whoever holds the lock instead (Update,
// a failure) publishes a picker with its own due time. It returns the
// picker to use.
func (b *balancer) poll(c *current) *current {
	now := b.h.nanos()
	if now < c.due || !b.mu.TryLock() {
		return c
	}
	if b.cur.Load() == c {
		b.buildLocked(now)
	}
	b.mu.Unlock()
	if n := b.cur.Load(); n != nil {
		return n
	}
	return c // emptied meanwhile: this pick still has c
}

// divideByGCD divides w by the GCD of its elements and returns the new sum.
func divideByGCD(w []int64) int64 {
	g, sum := int64(0), int64(0)
	for _, x := range w {
		for x != 0 {
			g, x = x, g%x
		}
		if g == 1 {
			break // the usual case; divisions cost 20-30 ns each
		}
	}
	for i := range w {
		if g > 1 {
			w[i] /= g
		}
		sum += w[i]
	}
	return sum
}
