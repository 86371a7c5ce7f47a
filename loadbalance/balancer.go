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
// for an instance ID across updates while its address is unchanged, so
// counters survive membership changes.
type Endpoint struct {
	Instance registry.Instance
	// URL is Instance.Address parsed once.
	URL *url.URL

	inflight atomic.Int64
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
func (e *Endpoint) Done(err error) { e.inflight.Add(-1) }

// InFlight is the number of picked and not yet done requests.
func (e *Endpoint) InFlight() int64 { return e.inflight.Load() }

// acquire marks the endpoint picked; every Pick implementation calls it.
func (e *Endpoint) acquire() *Endpoint { e.inflight.Add(1); return e }
