package loadbalance

import "math"

// random picks an endpoint with probability proportional to its weight, in
// O(1) with Vose's alias method: column i is kept with probability
// prob/total, otherwise its alias is taken. One 64-bit draw gives both the
// column (high half) and the coin (low half). Weights are the view's
// (effective weights, slow start).
type random struct {
	eps   []*Endpoint
	rand  func() uint64
	cols  []aliasColumn // nil when all weights are equal
	total uint64
}

type aliasColumn struct {
	prob, alias uint32
}

func randomBuilder(rand func() uint64) func(view) picker {
	return func(v view) picker {
		p := &random{eps: v.eps, rand: rand}
		p.cols, p.total = aliasTable(v.w)
		return p
	}
}

func (p *random) pick(string) *Endpoint { return p.eps[p.index(p.rand())] }

// skip draws again, which spreads the ejected endpoint's share over the
// others by weight.
func (p *random) skip(_ string, e *Endpoint, now int64) *Endpoint {
	for range maxProbes - 1 {
		if c := p.eps[p.index(p.rand())]; !ejectedAt(c, now) {
			return c
		}
	}
	return e
}

// index maps a random draw to an endpoint index.
func (p *random) index(r uint64) int {
	i := fastrange(uint32(r>>32), len(p.eps))
	if p.cols == nil {
		return i
	}
	c := p.cols[i]
	if uint64(uint32(r))*p.total>>32 >= uint64(c.prob) {
		i = int(c.alias)
	}
	return i
}

// aliasTable builds Vose's table in integers: entry i brings w[i]×n units,
// every column holds total units. It returns nil when weights are equal, or
// when the total does not fit the 32-bit coin.
func aliasTable(w []int64) ([]aliasColumn, uint64) {
	n := uint64(len(w))
	units := make([]uint64, n)
	total := uint64(0)
	equal := true
	for i, x := range w {
		units[i] = uint64(x)
		total += units[i]
		equal = equal && units[i] == units[0]
	}
	if equal || total > math.MaxUint32 {
		return nil, 0
	}
	var small, large []uint32
	for i := range units {
		units[i] *= n
		if units[i] < total {
			small = append(small, uint32(i))
		} else {
			large = append(large, uint32(i))
		}
	}
	cols := make([]aliasColumn, n)
	for len(small) > 0 && len(large) > 0 {
		s := small[len(small)-1]
		small = small[:len(small)-1]
		l := large[len(large)-1]
		cols[s] = aliasColumn{prob: uint32(units[s]), alias: l}
		units[l] -= total - units[s]
		if units[l] < total {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	// Integer arithmetic leaves every remaining column exactly full.
	for _, i := range append(small, large...) {
		cols[i] = aliasColumn{prob: uint32(total), alias: i}
	}
	return cols, total
}
