package loadbalance

import "time"

// health is a balancer's passive-health configuration and clock; read-only
// after New.
type health struct {
	HealthOptions
	now func() time.Time
	// epoch is the zero of the balancer's clock: nanos measures from it, so
	// a time.Now clock is monotonic and ejection times fit an int64.
	epoch time.Time
}

// nanos is the balancer's clock: nanoseconds since its epoch.
func (h *health) nanos() int64 { return int64(h.now().Sub(h.epoch)) }

// warmUntil is when slow start ends for an endpoint that joins at now; 0 if
// it does not warm. Only newcomers to a non-empty set warm: ramping up every
// member at once would change no one's share.
func (h *health) warmUntil(now int64, setWasEmpty bool) int64 {
	if h.SlowStart <= 0 || setWasEmpty {
		return 0
	}
	return now + int64(h.SlowStart)
}

// warmShare is s's slow-start share of its weight in thousandths: linear
// from 10% at joining to 100% at warmUntil.
func (h *health) warmShare(s *coldState, now int64) int64 {
	if s.warmUntil <= now {
		return fullShare
	}
	win := int64(h.SlowStart)
	elapsed := max(0, now-(s.warmUntil-win))
	return 100 + (fullShare-100)*elapsed/win
}

// warmLevel is warmShare in tenths, rounded down (1..9 while warming, else
// 10), and when the next level begins (0 if none).
func (h *health) warmLevel(s *coldState, now int64) (lvl, next int64) {
	if s.warmUntil <= now {
		return 10, 0
	}
	win := int64(h.SlowStart)
	start := s.warmUntil - win
	lvl = 1 + 9*max(0, now-start)/win
	// The first instant at which 1 + 9*elapsed/win reaches lvl+1.
	return lvl, start + (lvl*win+8)/9
}
