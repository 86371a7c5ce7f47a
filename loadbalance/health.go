package loadbalance

import (
	"errors"
	"fmt"
	"syscall"
	"time"
)

// Passive health defaults (Envoy's outlier detection, nginx's effective
// weight).
const (
	DefaultConsecutiveFailures = 5
	DefaultBaseEjection        = 10 * time.Second
	DefaultMaxEjection         = 5 * time.Minute
	DefaultMaxEjectedPercent   = 50
)

// HealthOptions tune passive health: outlier ejection, effective weights and
// slow start. Zero values mean defaults.
//
// An endpoint is ejected after ConsecutiveFailures failures in a row, or at
// once on a refused connection, for BaseEjection times the number of times it
// has been ejected, capped at MaxEjection; the multiplier drops by one for
// every BaseEjection it then goes without an ejection. It is re-admitted when
// the time is up. At most MaxEjectedPercent of the members are ejected at
// once; if every member is ejected all the same (MaxEjectedPercent 100, or a
// membership change), Pick picks among all of them: the registry, not passive
// health, decides who is a member.
//
// Each failure also takes 1/ConsecutiveFailures of the endpoint's weight
// away (down to 10%), and each success gives one unit of weight back, as
// nginx does with effective_weight. Weighted policies apply it in steps of
// 10%; round_robin and consistent_hash ignore weights, so they only eject.
type HealthOptions struct {
	// Disable turns ejection and effective weights off; Done then only
	// counts requests. Slow start is separate.
	Disable             bool
	ConsecutiveFailures int           // default DefaultConsecutiveFailures, at most 1000
	BaseEjection        time.Duration // default DefaultBaseEjection
	MaxEjection         time.Duration // default DefaultMaxEjection, at least BaseEjection
	MaxEjectedPercent   int           // default DefaultMaxEjectedPercent, 1..100
	// SlowStart is the window over which an instance that joins a non-empty
	// set ramps from about 10% to 100% of its weight, in ~10% steps (random,
	// least_request, weighted_round_robin). 0, the default, is off. Members of
	// a balancer's first set, and a member whose record changes, do not warm.
	SlowStart time.Duration
}

func (o HealthOptions) withDefaults() (HealthOptions, error) {
	if o.ConsecutiveFailures == 0 {
		o.ConsecutiveFailures = DefaultConsecutiveFailures
	}
	if o.BaseEjection == 0 {
		o.BaseEjection = DefaultBaseEjection
	}
	if o.MaxEjection == 0 {
		o.MaxEjection = max(DefaultMaxEjection, o.BaseEjection)
	}
	if o.MaxEjectedPercent == 0 {
		o.MaxEjectedPercent = DefaultMaxEjectedPercent
	}
	switch {
	case o.ConsecutiveFailures < 0 || o.ConsecutiveFailures > 1000:
		return o, fmt.Errorf("consecutive failures %d out of range 1..1000", o.ConsecutiveFailures)
	case o.BaseEjection < 0:
		return o, fmt.Errorf("base ejection %v is negative", o.BaseEjection)
	case o.MaxEjection < o.BaseEjection:
		return o, fmt.Errorf("max ejection %v is less than base ejection %v", o.MaxEjection, o.BaseEjection)
	case o.MaxEjectedPercent < 0 || o.MaxEjectedPercent > 100:
		return o, fmt.Errorf("max ejected percent %d out of range 1..100", o.MaxEjectedPercent)
	case o.MaxEjection > maxDuration:
		return o, fmt.Errorf("max ejection %v over %v", o.MaxEjection, maxDuration)
	case o.SlowStart < 0 || o.SlowStart > maxDuration:
		return o, fmt.Errorf("slow start %v out of range 0..%v", o.SlowStart, maxDuration)
	}
	return o, nil
}

// HealthState is an endpoint's passive health, for the admin API.
type HealthState struct {
	Ejected             bool
	EjectedUntil        time.Time // zero unless Ejected
	ConsecutiveFailures int
	// EffectiveWeight is the instance's weight lowered by recent failures
	// and slow start (at least 1), before the 10% steps pickers use.
	EffectiveWeight int
	Warming         bool // in slow start
}

// Health reads e's health with a few atomic loads and one clock read.
func (e *Endpoint) Health() HealthState {
	s := e.live()
	hs := HealthState{ConsecutiveFailures: int(s.failures.Load())}
	share := int64(fullShare - s.lost.Load()) // thousandths of the weight
	if s.cold != nil {
		b := s.cold.owner
		now := b.h.nanos()
		if u := s.ejectedUntil.Load(); u > now {
			hs.Ejected, hs.EjectedUntil = true, b.h.epoch.Add(time.Duration(u))
		}
		if s.cold.warmUntil > now {
			hs.Warming = true
			share = share * b.h.warmShare(s.cold, now) / fullShare
		}
	}
	hs.EffectiveWeight = int(max(1, (int64(e.Instance.EffectiveWeight())*share+fullShare/2)/fullShare))
	return hs
}

const (
	maxDuration = 24 * time.Hour // bounds durations, against unit mistakes
	fullShare   = 1000           // thousandths
	maxLost     = 900            // failures leave at least 10% of the weight
)

// level is the weight share in tenths, rounded up: the coarse steps pickers
// are rebuilt on, so that small changes cost no rebuild.
func level(lost int32) int64 { return int64(fullShare-lost+99) / 100 }

// report is Done's slow path: a failure, or a success after failures. Kept
// out of Done so that Done stays short.
//
//go:noinline
func (s *liveState) report(e *Endpoint, err error) {
	if err != nil {
		s.failed(err)
	} else {
		s.succeeded(e)
	}
}

// succeeded is Done's success path after recent failures. The lost weight
// comes back without a lock or rebuild here; the picker catches up lazily
// (see viewLocked).
func (s *liveState) succeeded(e *Endpoint) {
	if s.failures.Load() != 0 {
		s.failures.Store(0)
	}
	step := int32(max(1, fullShare/e.Instance.EffectiveWeight()))
	for {
		l := s.lost.Load()
		if l == 0 || s.lost.CompareAndSwap(l, max(0, l-step)) {
			return
		}
	}
}

// failed is Done's failure path. It takes the balancer's mutex only for a
// transition: an ejection, or a drop of the weight to a lower level.
func (s *liveState) failed(err error) {
	n := s.failures.Add(1)
	if s.cold == nil || s.cold.owner.h.Disable {
		return
	}
	b := s.cold.owner
	lower := false
	for step := int32(fullShare / b.h.ConsecutiveFailures); ; {
		l := s.lost.Load()
		nl := min(maxLost, l+step)
		if nl == l || s.lost.CompareAndSwap(l, nl) {
			lower = level(nl) < level(l)
			break
		}
	}
	now := b.h.nanos()
	if s.ejectedUntil.Load() > now {
		return // its in-flight requests failing too: nothing to change now
	}
	eject := int(n) >= b.h.ConsecutiveFailures || errors.Is(err, syscall.ECONNREFUSED)
	if eject && now < b.denied.Load()+int64(minRebuildGap) {
		eject = false // no budget left a moment ago
	}
	if !eject && !(lower && b.policy.weighted) {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if (eject && b.ejectLocked(s, now)) || lower {
		b.refreshLocked(now)
	}
}

// ejectLocked ejects s unless that would eject more than MaxEjectedPercent
// of the members; it reports whether it did.
func (b *balancer) ejectLocked(s *liveState, now int64) bool {
	if s.ejectedUntil.Load() > now {
		return false
	}
	ejected := 1
	for _, e := range b.set.eps {
		if e.live().ejectedUntil.Load() > now {
			ejected++
		}
	}
	if ejected*100 > len(b.set.eps)*b.h.MaxEjectedPercent {
		s.failures.Store(0) // try again after as many failures
		// Only a re-admission frees a slot: spare the lock and this count
		// to the failures of the next gap (a storm of refused connections).
		b.denied.Store(now)
		return false
	}
	c, base := s.cold, int64(b.h.BaseEjection)
	if c.ejections > 0 && now > c.lastUntil && base > 0 {
		c.ejections = int32(max(0, int64(c.ejections)-(now-c.lastUntil)/base))
	}
	// Past the cap the multiplier only needs to stay there.
	if int64(c.ejections)*base < int64(b.h.MaxEjection) {
		c.ejections++
	}
	until := now + min(int64(c.ejections)*base, int64(b.h.MaxEjection))
	c.lastUntil = until
	s.failures.Store(0)
	s.ejectedUntil.Store(until)
	return true
}

// ejectedAt reports whether e is ejected at now. An ejection that has lapsed
// is cleared, so the endpoint's next picks do not read the clock.
func ejectedAt(e *Endpoint, now int64) bool {
	s := e.live()
	u := s.ejectedUntil.Load()
	if u == 0 {
		return false
	}
	if u > now {
		return true
	}
	s.ejectedUntil.CompareAndSwap(u, 0)
	return false
}
