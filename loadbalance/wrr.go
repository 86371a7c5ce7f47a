package loadbalance

import "slices"

// maxCycle bounds a smooth WRR cycle (one uint32 per step): 256 KiB.
const maxCycle = 1 << 16

// weightedRoundRobin is nginx's smooth weighted round robin, precomputed: on
// every pick nginx adds each peer's weight to its current value, picks the
// largest (first on ties) and subtracts the total from it. The sequence
// repeats every sum-of-weights picks, so one cycle indexed by an atomic
// counter gives the same order without a lock.
//
// The counter lives in the balancer and survives updates. A fresh balancer
// starts at step 0 like nginx, so gateways started together all send their
// first picks to the heaviest instance; we keep that for determinism.
//
// Weights are the view's: the instance weight lowered by failures and slow
// start, so a change of effective weight means a new cycle. The balancer
// rebuilds only on coarse (10%) changes and at most every 100 ms.
type weightedRoundRobin struct {
	eps   []*Endpoint
	cycle []uint32 // indexes into eps; nil when all weights are equal
	n     divisor  // len(cycle), or len(eps) without a cycle
	seq   *counter
}

func weightedRoundRobinBuilder() func(view) picker {
	seq := new(counter)
	return func(v view) picker {
		cycle := smoothCycle(cycleWeights(v.w))
		steps := len(v.eps)
		if cycle != nil {
			steps = len(cycle)
		}
		return &weightedRoundRobin{eps: v.eps, cycle: cycle, n: newDivisor(steps), seq: seq}
	}
}

func (p *weightedRoundRobin) pick(string) *Endpoint {
	i := p.n.mod(p.seq.next())
	if p.cycle == nil {
		return p.eps[i]
	}
	return p.eps[p.cycle[i]]
}

// skip walks on in ID order (see roundRobin.skip).
func (p *weightedRoundRobin) skip(_ string, e *Endpoint, now int64) *Endpoint {
	return skipInOrder(p.eps, e, now)
}

// cycleWeights returns a copy of w (reduced by its GCD, which leaves nginx's
// sequence unchanged). If the sum exceeds maxCycle they are scaled to sum to
// about maxCycle, rounding down but keeping at least 1: the order is then
// nginx's for the scaled weights, whose shares are off by that rounding,
// under one scaled unit each.
func cycleWeights(w []int64) []int64 {
	w = slices.Clone(w)
	sum := divideByGCD(w)
	if sum > maxCycle {
		for i := range w {
			w[i] = max(1, w[i]*maxCycle/sum)
		}
		divideByGCD(w)
	}
	return w
}

// smoothCycle returns one cycle of nginx's sequence for w, or nil if all
// weights are equal (the cycle is then 0, 1, ..., n-1).
//
// Simulating nginx directly costs O(sum×n). Instances of equal weight are
// instead grouped: within a group they are picked in index order, so a
// group's candidate is members[picked % len(members)], and each step costs
// O(distinct weights), which the sum bound keeps under ~360.
func smoothCycle(w []int64) []uint32 {
	type group struct {
		weight, picked int64
		members        []uint32
	}
	var groups []*group
	byWeight := make(map[int64]*group)
	total := int64(0)
	for i, x := range w {
		total += x
		g := byWeight[x]
		if g == nil {
			g = &group{weight: x}
			byWeight[x] = g
			groups = append(groups, g)
		}
		g.members = append(g.members, uint32(i))
	}
	if len(groups) <= 1 {
		return nil
	}
	cycle := make([]uint32, 0, total)
	for t := int64(1); t <= total; t++ {
		// After t additions, current = t*weight - total*(times picked).
		var best *group
		var bestCur int64
		var bestIdx uint32
		for _, g := range groups {
			m := int64(len(g.members))
			cur := t*g.weight - total*(g.picked/m)
			idx := g.members[g.picked%m]
			if best == nil || cur > bestCur || cur == bestCur && idx < bestIdx {
				best, bestCur, bestIdx = g, cur, idx
			}
		}
		best.picked++
		cycle = append(cycle, bestIdx)
	}
	return slices.Clip(cycle)
}
