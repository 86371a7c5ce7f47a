package loadbalance

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
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
	// Health tunes passive health checking; see HealthOptions.
	Health HealthOptions
	// Now is the clock for ejections and slow start (default time.Now).
	// Healthy picks do not call it; while an ejection, a recovering weight
	// or a slow start is pending, each Pick calls it once.
	Now func() time.Time
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
	if o.Now == nil {
		o.Now = time.Now
	}
	var err error
	if o.Health, err = o.Health.withDefaults(); err != nil {
		return o, fmt.Errorf("health: %w", err)
	}
	return o, nil
}

// Policies returns the names New accepts.
func Policies() []string {
	return []string{"round_robin", "weighted_round_robin", "random", "least_request", "consistent_hash"}
}

// New returns an empty Balancer for the named policy; Pick fails with
// ErrNoInstances until the first non-empty Update.
func New(name string, opts Options) (Balancer, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("loadbalance: %w", err)
	}
	var p policy
	switch name {
	case "round_robin":
		p = policy{build: roundRobinBuilder(), excludes: true}
	case "weighted_round_robin":
		p = policy{build: weightedRoundRobinBuilder(), weighted: true, excludes: true}
	case "random":
		p = policy{build: randomBuilder(opts.Rand), weighted: true, excludes: true}
	case "least_request":
		p = policy{build: leastRequestBuilder(opts.Rand), weighted: true, excludes: true}
	case "consistent_hash":
		p = policy{build: ringBuilder(opts.VirtualNodes), excludes: true}
	default:
		return nil, fmt.Errorf("%w %q: want one of %s", ErrUnknownPolicy, name, strings.Join(Policies(), ", "))
	}
	b := &balancer{policy: p, h: health{HealthOptions: opts.Health, now: opts.Now}}
	b.h.epoch = opts.Now()
	b.built = -int64(minRebuildGap) // the first failure may rebuild at once
	b.denied.Store(-int64(minRebuildGap))
	return b, nil
}
