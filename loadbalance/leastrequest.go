package loadbalance

// leastRequest is the power of two random choices: of two distinct random
// endpoints, take the one with less load per unit of weight, where load is
// in-flight requests + 1. The +1 makes weight count when both are idle, and
// ranks an idle weight-1 backend below a weight-1000 one with one request.
// Ties go to the first draw, which is itself random.
type leastRequest struct {
	eps  []*Endpoint
	rand func() uint64
}

func leastRequestBuilder(rand func() uint64) func([]*Endpoint) picker {
	return func(eps []*Endpoint) picker { return &leastRequest{eps: eps, rand: rand} }
}

func (p *leastRequest) pick(string) *Endpoint {
	n := len(p.eps)
	if n == 1 {
		return p.eps[0]
	}
	r := p.rand()
	i := fastrange(uint32(r>>32), n)
	j := fastrange(uint32(r), n-1)
	if j >= i {
		j++
	}
	a, b := p.eps[i], p.eps[j]
	// (b.inflight+1)/b.weight < (a.inflight+1)/a.weight, without division.
	if (b.InFlight()+1)*int64(a.Instance.EffectiveWeight()) < (a.InFlight()+1)*int64(b.Instance.EffectiveWeight()) {
		return b
	}
	return a
}
