package discovery

import (
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/registry"
)

// heldUpdate is a set the panic floor keeps back: it would remove too many
// instances at once to be trusted before it is confirmed.
type heldUpdate struct {
	ins     []registry.Instance
	removed int
	since   time.Time
	timer   *time.Timer
}

func (st *serviceState) cancelHeldLocked() {
	if st.held != nil {
		st.held.timer.Stop()
		st.held = nil
	}
}

// floorLocked returns the set to publish for the registry's set ins. Removals
// are counted against every instance published during a ConfirmDelay
// window, so that a burst of single removals (leases expiring one by one
// after a registry outage) counts like one update. A set that removes more
// than one instance and more than PanicFloor of that set has its removals
// held: the published set keeps the removed instances (additions and
// changes apply at once) until ConfirmDelay passes or a full re-list still
// removes them. A newer set that does not cross the floor replaces the hold.
func (s *Subject) floorLocked(name string, st *serviceState, ins []registry.Instance, full bool) []registry.Instance {
	cur := st.snap.Instances
	if s.opts.PanicFloor < 0 || st.snap.Version == 0 || s.status.State == Expired {
		st.cancelHeldLocked()
		return ins
	}
	if now := time.Now(); st.base == nil || now.Sub(st.baseAt) > s.opts.ConfirmDelay {
		st.base, st.baseAt = cur, now
	} else {
		// Instances added during the window count as well.
		st.base = keepRemoved(cur, st.base)
	}
	removed := countRemoved(st.base, ins)
	if removed < 2 || float64(removed) <= s.opts.PanicFloor*float64(len(st.base)) {
		if st.held != nil {
			s.log.Info("panic floor: held removal superseded by a smaller change", zap.String("service", name))
		}
		st.cancelHeldLocked()
		return ins
	}
	if st.held != nil && full {
		s.log.Warn("panic floor: large removal confirmed by a full re-list", zap.String("service", name),
			zap.Int("removed", removed), zap.Int("of", len(st.base)))
		st.cancelHeldLocked()
		return ins
	}
	if st.held == nil {
		h := &heldUpdate{since: time.Now()}
		h.timer = time.AfterFunc(s.opts.ConfirmDelay, func() { s.confirmHeld(name, h) })
		st.held = h
		s.log.Warn("panic floor: holding an update that removes too many instances at once",
			zap.String("service", name), zap.Int("removed", removed), zap.Int("of", len(st.base)),
			zap.Duration("confirm_after", s.opts.ConfirmDelay))
	}
	st.held.ins, st.held.removed = ins, removed
	return keepRemoved(cur, ins)
}

// confirmHeld applies a held set whose delay has passed.
func (s *Subject) confirmHeld(name string, h *heldUpdate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.services[name]
	if st == nil || st.held != h {
		return
	}
	st.held, st.base = nil, nil
	s.log.Warn("panic floor: large removal confirmed after the delay", zap.String("service", name),
		zap.Int("removed", h.removed))
	s.publishLocked(name, st, h.ins)
}

// countRemoved counts the IDs of cur (sorted by ID) missing from next
// (sorted by ID).
func countRemoved(cur, next []registry.Instance) int {
	removed, j := 0, 0
	for _, in := range cur {
		for j < len(next) && next[j].ID < in.ID {
			j++
		}
		if j == len(next) || next[j].ID != in.ID {
			removed++
		}
	}
	return removed
}

// keepRemoved is next plus the instances of cur (both sorted by ID) that
// next lacks, sorted by ID.
func keepRemoved(cur, next []registry.Instance) []registry.Instance {
	out := make([]registry.Instance, 0, len(cur)+len(next))
	i, j := 0, 0
	for i < len(cur) || j < len(next) {
		switch {
		case j == len(next) || i < len(cur) && cur[i].ID < next[j].ID:
			out = append(out, cur[i])
			i++
		case i == len(cur) || next[j].ID < cur[i].ID:
			out = append(out, next[j])
			j++
		default: // same ID: the registry's record wins
			out = append(out, next[j])
			i++
			j++
		}
	}
	return out
}
