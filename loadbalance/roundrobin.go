package loadbalance

// roundRobin cycles through the endpoints in ID order.
type roundRobin struct {
	eps []*Endpoint
	n   divisor // len(eps)
	// seq belongs to the balancer, not the picker, so the rotation goes on
	// across updates instead of restarting at the first endpoint.
	seq *counter
}

func roundRobinBuilder() func([]*Endpoint) picker {
	seq := new(counter)
	return func(eps []*Endpoint) picker { return newRoundRobin(eps, seq) }
}

func newRoundRobin(eps []*Endpoint, seq *counter) *roundRobin {
	return &roundRobin{eps: eps, n: newDivisor(len(eps)), seq: seq}
}

func (p *roundRobin) pick(string) *Endpoint {
	return p.eps[p.n.mod(p.seq.next())]
}
