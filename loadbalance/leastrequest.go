package loadbalance

// leastRequest is the power of two random choices: of two distinct random
// endpoints, take the one with less load per unit of weight, where load is
// in-flight requests + 1. The +1 makes weight count when both are idle, and
// ranks an idle weight-1 backend below a weight-1000 one with one request.
// Ties go to the first draw, which is itself random.
type leastRequest struct {
	eps  []*Endpoint
	w    []int64 // effective weights, so pick does not copy Instance
	rand func() uint64
}

func leastRequestBuilder(rand func() uint64) func([]*Endpoint) picker {
	return func(eps []*Endpoint) picker {
		w := make([]int64, len(eps))
		for i, e := range eps {
			w[i] = int64(e.Instance.EffectiveWeight())
		}
		return &leastRequest{eps: eps, w: w, rand: rand}
	}
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
	// (load_j)/w_j < (load_i)/w_i, without division.
	if (p.eps[j].InFlight()+1)*p.w[i] < (p.eps[i].InFlight()+1)*p.w[j] {
		return p.eps[j]
	}
	return p.eps[i]
}
