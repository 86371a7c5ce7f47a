package discovery

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
)

// State says how far the gateway can trust what it routes by.
type State int

const (
	// Starting: no registry read has succeeded and nothing was restored.
	Starting State = iota
	// Synced: the last registry read succeeded.
	Synced
	// Stale: the registry cannot be reached since StaleSince; the last good
	// instance sets keep serving.
	Stale
	// Expired: stale for longer than MaxStaleness; services are published
	// empty until the registry returns.
	Expired
)

func (s State) String() string {
	switch s {
	case Starting:
		return "STARTING"
	case Synced:
		return "SYNCED"
	case Stale:
		return "STALE"
	case Expired:
		return "EXPIRED"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// MarshalText makes states read as their names in JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses a state name.
func (s *State) UnmarshalText(b []byte) error {
	for c := Starting; c <= Expired; c++ {
		if strings.EqualFold(string(b), c.String()) {
			*s = c
			return nil
		}
	}
	return errors.New("unknown state " + string(b))
}

// Status is the registry connection as the Subject sees it.
type Status struct {
	State State `json:"state"`
	// StaleSince is when the registry became unreachable (Stale, Expired).
	StaleSince time.Time `json:"stale_since,omitzero"`
	// LastSync is the time of the last successful registry read.
	LastSync time.Time `json:"last_sync,omitzero"`
	// LastError is the last watch error, kept until the next success.
	LastError string `json:"last_error,omitempty"`
	// Restored is true when the routing state was loaded from the snapshot
	// file and the registry has not been read since.
	Restored bool `json:"restored,omitempty"`
	// Skipped counts malformed records skipped since start.
	Skipped uint64 `json:"skipped_records"`
}

// ServiceStatus is one service's routing state for the admin API.
type ServiceStatus struct {
	Version uint64 `json:"version"`
	// HeldRemoval is set while the panic floor holds back an update that
	// would remove HeldRemoval of the service's instances at once.
	HeldRemoval int       `json:"held_removal,omitempty"`
	HeldSince   time.Time `json:"held_since,omitzero"`
}

// Status returns the registry connection state.
func (s *Subject) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// ServiceStatus returns a service's routing state.
func (s *Subject) ServiceStatus(service string) (ServiceStatus, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.services[service]
	if !ok {
		return ServiceStatus{}, false
	}
	ss := ServiceStatus{Version: st.snap.Version}
	if st.held != nil {
		ss.HeldRemoval, ss.HeldSince = st.held.removed, st.held.since
	}
	return ss, true
}

// Ready reports whether the gateway has something trustworthy to route by:
// a successful registry read, or a routing state restored from the
// snapshot file while the registry is unreachable.
func (s *Subject) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status.State == Synced || s.status.State == Stale || s.status.Restored
}

// markErrorLocked records a failed registry read.
func (s *Subject) markErrorLocked(err error, now time.Time) {
	s.status.LastError = err.Error()
	if s.status.State == Synced {
		s.status.State, s.status.StaleSince = Stale, now
		s.log.Warn("registry unreachable: routing goes on with the last known instances (STALE)")
		s.armExpiryLocked()
	}
}

// armExpiryLocked starts the timer that turns Stale into Expired.
func (s *Subject) armExpiryLocked() {
	if s.opts.MaxStaleness <= 0 {
		return
	}
	since := s.status.StaleSince
	s.expiry = time.AfterFunc(s.opts.MaxStaleness, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.status.State != Stale || !s.status.StaleSince.Equal(since) {
			return
		}
		s.status.State = Expired
		s.log.Error("registry unreachable for longer than max staleness: services EXPIRED, no instances are routed")
		for name, st := range s.services {
			if len(st.snap.Instances) > 0 {
				st.lastGood = st.snap.Instances
				s.publishLocked(name, st, nil)
			}
		}
	})
}

// markSyncedLocked records a successful registry read.
func (s *Subject) markSyncedLocked(now time.Time) {
	if s.status.State == Stale || s.status.State == Expired {
		s.log.Info("registry reachable again (SYNCED)", zap.Duration("stale_for", now.Sub(s.status.StaleSince)))
	}
	if s.expiry != nil {
		s.expiry.Stop()
		s.expiry = nil
	}
	s.status.State, s.status.StaleSince, s.status.LastSync, s.status.LastError = Synced, time.Time{}, now, ""
}
