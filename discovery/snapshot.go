package discovery

import "github.com/gatehouse/gatehouse/registry"

// Snapshot is the complete active instance set of one service at one moment.
// It is immutable: neither its producer nor its receivers modify it.
type Snapshot struct {
	Service string
	// Instances is sorted by ID.
	Instances []registry.Instance
	// Version grows by one with every change published for the service.
	Version uint64
}

// Subscriber receives a service's snapshots.
//
// Update calls for one subscription are serialized and come in version
// order, but a slow subscriber may skip versions: it always gets the latest.
// Update must not block for long; it runs on the subscription's own goroutine.
type Subscriber interface {
	Update(Snapshot)
}

// SubscriberFunc adapts a function to Subscriber.
type SubscriberFunc func(Snapshot)

// Update calls f(s).
func (f SubscriberFunc) Update(s Snapshot) { f(s) }

// sameInstances reports whether two sets sorted by ID are equal.
func sameInstances(a, b []registry.Instance) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}
