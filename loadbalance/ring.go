package loadbalance

import (
	"cmp"
	"math/bits"
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// maxRingPoints bounds a ring (12 bytes a point, plus the bucket index).
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
type ring struct {
	eps    []*Endpoint
	points []uint64 // sorted
	owners []uint32 // owners[i] indexes eps for points[i]
	// index[b] is the first point whose top bits are >= b, so a lookup
	// searches one bucket (about one point) instead of the whole ring.
	index []uint32
	shift uint
	rr    roundRobin
}

func ringBuilder(virtualNodes int) func([]*Endpoint) picker {
	seq := new(counter)
	return func(eps []*Endpoint) picker {
		r := &ring{eps: eps, rr: roundRobin{eps: eps, seq: seq}}
		r.build(virtualNodes)
		return r
	}
}

func (r *ring) pick(key string) *Endpoint {
	if key == "" {
		return r.rr.pick(key)
	}
	h := xxhash.Sum64String(key)
	b := h >> r.shift
	lo, hi := r.index[b], r.index[b+1]
	for lo < hi { // first point >= h; every later bucket's points are > h
		m := lo + (hi-lo)/2
		if r.points[m] < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if int(lo) == len(r.points) {
		lo = 0
	}
	return r.eps[r.owners[lo]]
}

type ringPoint struct {
	hash  uint64
	owner uint32
}

func (r *ring) build(virtualNodes int) {
	counts := make([]int, len(r.eps))
	total := 0
	for i, e := range r.eps {
		counts[i] = virtualNodes * e.Instance.EffectiveWeight()
		total += counts[i]
	}
	for total > maxRingPoints && total > len(counts) {
		total = 0
		for i := range counts {
			counts[i] = max(1, counts[i]/2)
			total += counts[i]
		}
	}
	pts := make([]ringPoint, 0, total)
	var buf []byte
	for i, e := range r.eps {
		buf = append(append(buf[:0], e.Instance.ID...), '#')
		n := len(buf)
		for j := range counts[i] {
			buf = strconv.AppendInt(buf[:n], int64(j), 10)
			pts = append(pts, ringPoint{xxhash.Sum64(buf), uint32(i)})
		}
	}
	// Equal hashes go to the lower owner, i.e. the lower ID: stable across
	// updates.
	slices.SortFunc(pts, func(a, b ringPoint) int {
		return cmp.Or(cmp.Compare(a.hash, b.hash), cmp.Compare(a.owner, b.owner))
	})
	r.points = make([]uint64, len(pts))
	r.owners = make([]uint32, len(pts))
	for i, p := range pts {
		r.points[i], r.owners[i] = p.hash, p.owner
	}
	// About one point per bucket.
	nb := max(1, bits.Len(uint(len(pts)-1)))
	r.shift = uint(64 - nb)
	r.index = make([]uint32, 1<<nb+1)
	i := 0
	for b := range r.index {
		for i < len(pts) && pts[i].hash>>r.shift < uint64(b) {
			i++
		}
		r.index[b] = uint32(i)
	}
}
