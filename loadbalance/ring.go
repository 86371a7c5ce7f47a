package loadbalance

import (
	"math/bits"
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// maxRingPoints bounds a ring (16 bytes a point, plus the bucket index).
const maxRingPoints = 1 << 18

// ring is consistent hashing over virtual nodes. An instance of weight w
// owns VirtualNodes×w points, at xxhash64("<id>#<j>") for j = 0, 1, ...:
// they depend on the instance alone, so adding, removing or reweighting one
// instance moves only keys to or from it. A key goes to the first point at
// or after xxhash64(key), wrapping around.
//
// Past maxRingPoints every instance's count is halved (as often as needed,
// at least one point each). Counts are prefixes, so crossing that bound
// moves about half the keys once; it takes a total weight over 1638 at the
// default VirtualNodes.
//
// An empty key has nothing to hash: it goes round robin over the set.
//
// An ejected endpoint is left out of the next ring, which moves only its
// keys, and re-admission moves them back (points depend on the instance
// alone; the incremental build below carries everyone else's). Until that
// rebuild a key that lands on it walks on to the next point of another
// owner: the same place. Weights are the instances' alone: effective weights
// and slow start would move keys.
//
// Update keeps the previous ring's points for instances whose ID and point
// count are unchanged; only the others are hashed and sorted, then merged
// in. For 10,000 instances that is the difference between re-sorting 250k
// points and a linear merge.
type ring struct {
	eps    []*Endpoint
	counts []int       // counts[i] is eps[i]'s number of points
	points []ringPoint // sorted by hash, then owner
	// index[b] is the first point whose top bits are >= b, so a lookup
	// searches one bucket (about one point) instead of the whole ring.
	index []uint32
	shift uint
	rr    *roundRobin
}

func ringBuilder(virtualNodes int) func(view) picker {
	seq := new(counter)
	var prev *ring // build runs serialized, under the balancer's mu
	return func(v view) picker {
		r := &ring{eps: v.eps, rr: newRoundRobin(v.eps, seq)}
		r.build(virtualNodes, maxRingPoints, prev)
		prev = r
		return r
	}
}

func (r *ring) pick(key string) *Endpoint {
	if key == "" {
		return r.rr.pick(key)
	}
	// lookup, inline: a call here costs a tenth of a pick.
	h := xxhash.Sum64String(key)
	b := h >> r.shift
	lo, hi := r.index[b], r.index[b+1]
	for lo < hi { // first point >= h; every later bucket's points are > h
		m := lo + (hi-lo)/2
		if r.points[m].hash < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if int(lo) == len(r.points) {
		lo = 0
	}
	return r.eps[r.points[lo].owner]
}

// skip goes on to the next point of an owner that is not ejected, which is
// where the key would go if the ejected ones were removed (as the next
// rebuild does).
func (r *ring) skip(key string, e *Endpoint, now int64) *Endpoint {
	if key == "" {
		return r.rr.skip(key, e, now)
	}
	i := r.lookup(key)
	for range min(len(r.eps), maxProbes) - 1 {
		i = r.points[i].next // past the run of this owner's points
		if c := r.eps[r.points[i].owner]; !ejectedAt(c, now) {
			return c
		}
	}
	return e
}

// lookup returns the index of the first point at or after key's hash: pick's
// search, for skip.
func (r *ring) lookup(key string) uint32 {
	h := xxhash.Sum64String(key)
	b := h >> r.shift
	lo, hi := r.index[b], r.index[b+1]
	for lo < hi { // first point >= h; every later bucket's points are > h
		m := lo + (hi-lo)/2
		if r.points[m].hash < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if int(lo) == len(r.points) {
		lo = 0
	}
	return lo
}

// ringPoint keeps the owner next to the hash: one cache miss, not two. The
// owner is an index, not a pointer, so the GC does not scan the ring.
type ringPoint struct {
	hash  uint64
	owner uint32 // index into eps
	// next is the index of the next point, wrapping around, with another
	// owner (or this point if there is no other): a walk past an ejected
	// endpoint skips its runs of points in one step. It fills what would
	// be padding.
	next uint32
}

// Equal hashes go to the lower owner, i.e. the lower ID: stable across
// updates.
func comparePoints(a, b ringPoint) int {
	switch {
	case a.hash < b.hash:
		return -1
	case a.hash > b.hash:
		return 1
	}
	return int(a.owner) - int(b.owner)
}

// build fills the ring; prev, if not nil, is the ring it replaces.
func (r *ring) build(virtualNodes, maxPoints int, prev *ring) {
	r.counts = pointCounts(r.eps, virtualNodes, maxPoints)
	total := 0
	for _, c := range r.counts {
		total += c
	}
	carried := make([]bool, len(r.eps))
	var kept []ringPoint
	if prev != nil {
		// Owner indexes change with membership: map old to new by ID.
		remap := make([]int32, len(prev.eps))
		j := 0
		for i, e := range prev.eps {
			for j < len(r.eps) && r.eps[j].Instance.ID < e.Instance.ID {
				j++
			}
			remap[i] = -1
			if j < len(r.eps) && r.eps[j].Instance.ID == e.Instance.ID && r.counts[j] == prev.counts[i] {
				remap[i], carried[j] = int32(j), true
			}
		}
		kept = make([]ringPoint, 0, total)
		for _, p := range prev.points {
			if o := remap[p.owner]; o >= 0 {
				kept = append(kept, ringPoint{hash: p.hash, owner: uint32(o)})
			}
		}
	}
	var added []ringPoint
	var buf []byte
	for i, e := range r.eps {
		if carried[i] {
			continue
		}
		buf = append(append(buf[:0], e.Instance.ID...), '#')
		n := len(buf)
		for j := range r.counts[i] {
			buf = strconv.AppendInt(buf[:n], int64(j), 10)
			added = append(added, ringPoint{hash: xxhash.Sum64(buf), owner: uint32(i)})
		}
	}
	slices.SortFunc(added, comparePoints)
	r.points = mergePoints(kept, added)
	linkOwners(r.points)
	r.buildIndex()
}

// linkOwners sets every point's next. Going backwards from a point k whose
// successor has another owner, each point's successor is already linked.
func linkOwners(pts []ringPoint) {
	n := len(pts)
	k := -1
	for i := range pts {
		if pts[i].owner != pts[(i+1)%n].owner {
			k = i
			break
		}
	}
	if k < 0 { // one owner
		for i := range pts {
			pts[i].next = uint32(i)
		}
		return
	}
	for step := range n {
		i := (k - step + n) % n
		j := (i + 1) % n
		if pts[j].owner != pts[i].owner {
			pts[i].next = uint32(j)
		} else {
			pts[i].next = pts[j].next
		}
	}
}

// pointCounts gives each instance virtualNodes points per unit of weight,
// halved for all (at least 1 each) until the ring fits maxPoints.
func pointCounts(eps []*Endpoint, virtualNodes, maxPoints int) []int {
	counts := make([]int, len(eps))
	total := 0
	for i, e := range eps {
		counts[i] = virtualNodes * e.Instance.EffectiveWeight()
		total += counts[i]
	}
	for total > maxPoints && total > len(counts) {
		total = 0
		for i := range counts {
			counts[i] = max(1, counts[i]/2)
			total += counts[i]
		}
	}
	return counts
}

func mergePoints(a, b []ringPoint) []ringPoint {
	if len(a) == 0 {
		return b
	}
	if len(b) == 0 {
		return a
	}
	out := make([]ringPoint, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if comparePoints(a[0], b[0]) <= 0 {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return append(append(out, a...), b...)
}

// buildIndex makes about one bucket per point.
func (r *ring) buildIndex() {
	nb := max(1, bits.Len(uint(len(r.points)-1)))
	r.shift = uint(64 - nb)
	r.index = make([]uint32, 1<<nb+1)
	i := 0
	for b := range r.index {
		for i < len(r.points) && r.points[i].hash>>r.shift < uint64(b) {
			i++
		}
		r.index[b] = uint32(i)
	}
}
