package loadbalance

// roundRobin cycles through the endpoints in ID order.
type roundRobin struct {
	eps []*Endpoint
	// seq belongs to the balancer, not the picker, so the rotation goes on
	// across updates instead of restarting at the first endpoint.
	seq *counter
}

func roundRobinBuilder() func([]*Endpoint) picker {
	seq := new(counter)
	return func(eps []*Endpoint) picker { return &roundRobin{eps: eps, seq: seq} }
}

func (p *roundRobin) pick(string) *Endpoint {
	return p.eps[p.seq.next()%uint64(len(p.eps))]
}
