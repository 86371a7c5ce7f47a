package loadbalance

import (
	"errors"
	"net/url"
	"sync/atomic"

	"github.com/gatehouse/gatehouse/discovery"
	"github.com/gatehouse/gatehouse/registry"
)

// ErrNoInstances is returned by Pick when the service has no instance.
var ErrNoInstances = errors.New("no instances available")

// Balancer picks instances of one service.
//
// Update calls are serialized by the caller and do no I/O. Pick is called
// concurrently from many goroutines, concurrently with Update, and never
// blocks. Every Endpoint returned by Pick must be released with exactly one
// call to its Done method.
type Balancer interface {
	Update(discovery.Snapshot)
	// Pick chooses an endpoint; key is the request's hash key and is ignored
	// by policies that do not hash. Pick skips ejected endpoints unless every
	// member is ejected.
	Pick(key string) (*Endpoint, error)
	// Endpoints returns the current members, for the admin API.
	Endpoints() []*Endpoint
}

// Endpoint is one instance's live state. A Balancer keeps the same *Endpoint
// for an instance ID across updates while its record is unchanged, so
// counters and health survive membership changes of other instances.
// Instance and URL are never written after the Endpoint is published: when an
// instance's weight or metadata change at the same address, the Balancer
// publishes a new Endpoint that shares the old one's live state.
type Endpoint struct {
	Instance registry.Instance
	// URL is Instance.Address parsed once.
	URL *url.URL

	// shared, if set, points at the live state of the Endpoint this one
	// replaced; otherwise own is the live state. Both sit next to each
	// other and to URL: a pick touches one or two cache lines. (A separate
	// cache line for the state, against false sharing with proxy reads of
	// URL, measured slower: one more cache miss per pick over 10k
	// endpoints, and no gain in a parallel pick-and-read-URL benchmark.)
	shared *liveState
	own    liveState
}

// liveState is what outlives one record of an instance: the fields Pick and
// Done use on every request, kept small (the Endpoint's size class matters
// over thousands of endpoints), and a pointer to the rest.
type liveState struct {
	inflight atomic.Int64
	// ejectedUntil is the end of the current ejection on the owner's clock;
	// 0 when not ejected. Pick loads it on every pick and reads the clock
	// only when it is not 0; the first check after it lapses clears it.
	ejectedUntil atomic.Int64
	failures     atomic.Int32 // consecutive failures
	// lost is the share of the weight lost to failures, in thousandths
	// (nginx's weight - effective_weight, scaled): 0 is full weight.
	lost atomic.Int32
	// cold is nil outside a balancer: no ejection, no clock.
	cold *coldState
}

// coldState is the live state that failures, slow start and the admin API
// use.
type coldState struct {
	owner *balancer
	// warmUntil is the end of slow start (owner's clock), 0 for none. Set
	// before the Endpoint is published, then only read.
	warmUntil int64
	// ejections and lastUntil are guarded by owner.mu.
	ejections int32 // the ejection multiplier, before decay
	lastUntil int64 // when the last ejection ended (owner's clock)
}

func (e *Endpoint) live() *liveState {
	if s := e.shared; s != nil {
		return s
	}
	return &e.own
}

// successor returns a new Endpoint for in that shares e's live state.
func (e *Endpoint) successor(in registry.Instance) (*Endpoint, error) {
	n, err := NewEndpoint(in)
	if err != nil {
		return nil, err
	}
	n.shared = e.live()
	return n, nil
}

// NewEndpoint parses the instance's address.
func NewEndpoint(in registry.Instance) (*Endpoint, error) {
	u, err := url.Parse(in.Address)
	if err != nil {
		return nil, err
	}
	return &Endpoint{Instance: in, URL: u}, nil
}

// Done ends a request picked onto this endpoint and feeds passive health.
// err is the request's outcome as far as the backend is concerned: nil is a
// success, and so is a request the client abandoned (not the backend's
// fault: pass nil); any other error is a failure. Consecutive failures eject
// the endpoint (see HealthOptions), and an error for which
// errors.Is(err, syscall.ECONNREFUSED) ejects it at once. Done on success
// takes no lock; on a failure that changes the endpoint's health it may take
// the balancer's mutex.
func (e *Endpoint) Done(err error) {
	s := e.live()
	s.inflight.Add(-1)
	if err == nil && s.failures.Load() == 0 && s.lost.Load() == 0 {
		return // the healthy path: loads only
	}
	s.report(e, err)
}

// InFlight is the number of picked and not yet done requests.
func (e *Endpoint) InFlight() int64 { return e.live().inflight.Load() }

// acquire marks the endpoint picked (Pick does it inline).
func (e *Endpoint) acquire() *Endpoint { e.live().inflight.Add(1); return e }
