package loadbalance

// leastRequest is the power of two random choices: of two distinct random
// endpoints, take the one with less load per unit of weight, where load is
// in-flight requests + 1. The +1 makes weight count when both are idle, and
// ranks an idle weight-1 backend below a weight-1000 one with one request.
// Ties go to the first draw, which is itself random. Weights are the view's
// (effective weights, slow start).
type leastRequest struct {
	eps  []*Endpoint
	w    []int64 // the view's weights, so pick does not copy Instance
	rand func() uint64
}

func leastRequestBuilder(rand func() uint64) func(view) picker {
	return func(v view) picker {
		return &leastRequest{eps: v.eps, w: v.w, rand: rand}
	}
}

func (p *leastRequest) pick(string) *Endpoint {
	if len(p.eps) == 1 {
		return p.eps[0]
	}
	i, j := p.pair(p.rand())
	// (load_j)/w_j < (load_i)/w_i, without division.
	if (p.eps[j].InFlight()+1)*p.w[i] < (p.eps[i].InFlight()+1)*p.w[j] {
		return p.eps[j]
	}
	return p.eps[i]
}

// pair draws two distinct indexes from r.
func (p *leastRequest) pair(r uint64) (int, int) {
	n := len(p.eps)
	i := fastrange(uint32(r>>32), n)
	j := fastrange(uint32(r), n-1)
	if j >= i {
		j++
	}
	return i, j
}

// skip draws uniformly until it finds an endpoint that is not ejected: it
// only serves until the rebuild leaves the ejected one out. (Running pick
// again would not do: an ejected endpoint is idle, so it keeps winning.)
func (p *leastRequest) skip(_ string, e *Endpoint, now int64) *Endpoint {
	for range maxProbes - 1 {
		if c := p.eps[fastrange(uint32(p.rand()>>32), len(p.eps))]; !ejectedAt(c, now) {
			return c
		}
	}
	return e
}
