package loadbalance

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
)

// ErrUnknownPolicy is wrapped by New's error for a policy it does not know.
var ErrUnknownPolicy = errors.New("unknown balancing policy")

// DefaultVirtualNodes is the consistent-hash ring points per unit of weight:
// ketama's 160. A weight-1 instance's share of keys then strays from its
// fair share by about 8% (1/sqrt(160), one standard deviation), and ten
// weight-1 instances make a ring of only 1,600 points.
const DefaultVirtualNodes = 160

// maxVirtualNodes bounds Options.VirtualNodes; the ring is capped at
// maxRingPoints anyway.
const maxVirtualNodes = 10000

// Options tune a Balancer; zero values mean defaults.
type Options struct {
	// VirtualNodes is the number of consistent_hash ring points per unit of
	// instance weight (default DefaultVirtualNodes).
	VirtualNodes int
	// Rand returns uniformly distributed 64-bit values. Pick calls it
	// concurrently, so it must be safe for concurrent use and must not
	// allocate. Default: math/rand/v2's Uint64.
	Rand func() uint64
}

func (o Options) withDefaults() (Options, error) {
	switch {
	case o.VirtualNodes == 0:
		o.VirtualNodes = DefaultVirtualNodes
	case o.VirtualNodes < 0 || o.VirtualNodes > maxVirtualNodes:
		return o, fmt.Errorf("virtual nodes %d out of range 1..%d", o.VirtualNodes, maxVirtualNodes)
	}
	if o.Rand == nil {
		o.Rand = rand.Uint64
	}
	return o, nil
}

// Policies returns the names New accepts.
func Policies() []string {
	return []string{"round_robin", "weighted_round_robin", "random", "least_request", "consistent_hash"}
}

// New returns an empty Balancer for the named policy; Pick fails with
// ErrNoInstances until the first non-empty Update.
func New(policy string, opts Options) (Balancer, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("loadbalance: %w", err)
	}
	var build func([]*Endpoint) picker
	switch policy {
	case "round_robin":
		build = roundRobinBuilder()
	case "weighted_round_robin":
		build = weightedRoundRobinBuilder()
	case "random":
		build = randomBuilder(opts.Rand)
	case "least_request":
		build = leastRequestBuilder(opts.Rand)
	case "consistent_hash":
		build = ringBuilder(opts.VirtualNodes)
	default:
		return nil, fmt.Errorf("%w %q: want one of %s", ErrUnknownPolicy, policy, strings.Join(Policies(), ", "))
	}
	return &balancer{build: build}, nil
}
