package loadbalance

import (
	"slices"
	"strings"
)

// roundRobin cycles through the endpoints in ID order. It ignores weights,
// so effective weights and slow start do not apply: it only leaves ejected
// endpoints out.
type roundRobin struct {
	eps []*Endpoint
	n   divisor // len(eps)
	// seq belongs to the balancer, not the picker, so the rotation goes on
	// across updates instead of restarting at the first endpoint.
	seq *counter
}

func roundRobinBuilder() func(view) picker {
	seq := new(counter)
	return func(v view) picker { return newRoundRobin(v.eps, seq) }
}

func newRoundRobin(eps []*Endpoint, seq *counter) *roundRobin {
	return &roundRobin{eps: eps, n: newDivisor(len(eps)), seq: seq}
}

func (p *roundRobin) pick(string) *Endpoint {
	return p.eps[p.n.mod(p.seq.next())]
}

// skip walks on in ID order: the next endpoint takes the ejected one's turns
// until the rebuild leaves it out.
func (p *roundRobin) skip(_ string, e *Endpoint, now int64) *Endpoint {
	return skipInOrder(p.eps, e, now)
}

// skipInOrder returns the first endpoint after e's ID in eps (ID order,
// wrapping) that is not ejected at now, within maxProbes tries; else e. e
// need not be in eps (a newer picker may have left it out).
func skipInOrder(eps []*Endpoint, e *Endpoint, now int64) *Endpoint {
	i, found := slices.BinarySearchFunc(eps, e.Instance.ID, func(x *Endpoint, id string) int {
		return strings.Compare(x.Instance.ID, id)
	})
	if found {
		i++
	}
	for k := range min(len(eps), maxProbes) {
		if c := eps[(i+k)%len(eps)]; c != e && !ejectedAt(c, now) {
			return c
		}
	}
	return e
}
