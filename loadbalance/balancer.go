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
	// by policies that do not hash.
	Pick(key string) (*Endpoint, error)
	// Endpoints returns the current members, for the admin API.
	Endpoints() []*Endpoint
}

// Endpoint is one instance's live state. A Balancer keeps the same *Endpoint
// for an instance ID across updates while its record is unchanged, so
// counters survive membership changes of other instances. Instance and URL
// are never written after the Endpoint is published: when an instance's
// weight or metadata change at the same address, the Balancer publishes a new
// Endpoint that shares the old one's live counters.
type Endpoint struct {
	Instance registry.Instance
	// URL is Instance.Address parsed once.
	URL *url.URL

	own liveState
	// shared, if set, points at the live state of the Endpoint this one
	// replaced; a zero Endpoint (as in fakes) uses own.
	shared *liveState
}

// liveState is what outlives one record of an instance.
type liveState struct {
	inflight atomic.Int64
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

// Done ends a request picked onto this endpoint; err is the request's outcome
// as far as the backend is concerned (nil for success or a client cancel).
func (e *Endpoint) Done(err error) { e.live().inflight.Add(-1) }

// InFlight is the number of picked and not yet done requests.
func (e *Endpoint) InFlight() int64 { return e.live().inflight.Load() }

// acquire marks the endpoint picked; every Pick implementation calls it.
func (e *Endpoint) acquire() *Endpoint { e.live().inflight.Add(1); return e }
