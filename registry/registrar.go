package registry

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Registrar holds ephemeral instance records in a registry.
//
// Register and Deregister may be called concurrently for different instances.
type Registrar interface {
	// Register writes inst as an ephemeral record (ZooKeeper ephemeral znode,
	// etcd key bound to a lease) and returns a channel that is closed when the
	// session or lease behind the record is lost, after which the record is
	// gone or about to go. Registering an instance that is already registered
	// by this registrar overwrites its record.
	Register(ctx context.Context, inst Instance) (lost <-chan struct{}, err error)
	// Deregister removes exactly this instance's record. It is idempotent:
	// a missing record is not an error.
	Deregister(ctx context.Context, inst Instance) error
}

// Batch is what a Watcher reports: the complete instance set of each service
// that changed.
type Batch struct {
	// Full is true when Services holds every service under the root, as on the
	// first read and after an error. A service that a full batch leaves out
	// has no instances.
	Full bool
	// Services maps a service to its complete, valid instance set; an empty
	// set means the registry holds no instance of it.
	Services map[string][]Instance
	// Skipped holds one error per malformed record that was left out.
	Skipped []error
}

// Watcher follows every service under a registry root.
//
// Next is not safe for concurrent use.
type Watcher interface {
	// Next returns a full batch on its first call and on the first call after
	// an error; later calls block until something changes and return only the
	// services that changed. An error never stands for "no instances".
	Next(ctx context.Context) (Batch, error)
	// Close releases the watches; Next then returns an error.
	Close() error
}

// Backend is one client of a registry cluster, shared by all registrations
// and watches of a process.
type Backend interface {
	Registrar
	// Watcher returns a new watcher over every service under the root.
	Watcher() Watcher
	Close() error
}

// Backoff is a capped exponential backoff with full jitter.
type Backoff struct {
	Base time.Duration // first delay, default 100ms
	Max  time.Duration // cap, default 5s
}

// Delay returns the jittered delay before retry number attempt (0-based).
func (b Backoff) Delay(attempt int) time.Duration {
	base, maxd := b.Base, b.Max
	if base <= 0 {
		base = 100 * time.Millisecond
	}
	if maxd <= 0 {
		maxd = 5 * time.Second
	}
	d := base
	for i := 0; i < attempt && d < maxd; i++ {
		d *= 2
	}
	d = min(d, maxd)
	// Half fixed, half random: retries spread out but never collapse to zero.
	return d/2 + rand.N(d/2+1)
}

// registerAttemptTimeout bounds one Register call of Keep.
const registerAttemptTimeout = 3 * time.Second

// KeepEvents receives what Keep does; any field may be nil.
type KeepEvents struct {
	Registered func(Instance)
	Lost       func(Instance)
	Failed     func(Instance, error)
}

// Keep holds inst registered until ctx is done: it registers, waits for the
// session or lease to be lost, and registers again, retrying failures with
// backoff. When ctx is done it deregisters (bounded by a few seconds) and
// returns ctx's error.
func Keep(ctx context.Context, r Registrar, inst Instance, b Backoff, ev KeepEvents) error {
	if err := inst.Validate(); err != nil {
		return err
	}
	attempt := 0
	for {
		// A bounded attempt: a request sent while the registry was down can
		// hang on the client's reconnect long after the registry is back.
		actx, cancel := context.WithTimeout(ctx, registerAttemptTimeout)
		lost, err := r.Register(actx, inst)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if ev.Failed != nil {
				ev.Failed(inst, err)
			}
			t := time.NewTimer(b.Delay(attempt))
			attempt++
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
			continue
		}
		attempt = 0
		if ev.Registered != nil {
			ev.Registered(inst)
		}
		select {
		case <-ctx.Done():
		case <-lost:
			if ev.Lost != nil {
				ev.Lost(inst)
			}
			continue
		}
		break
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	if err := r.Deregister(dctx, inst); err != nil {
		return errors.Join(ctx.Err(), err)
	}
	return ctx.Err()
}
