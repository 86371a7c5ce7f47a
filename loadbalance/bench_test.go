package loadbalance

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/gatehouse/gatehouse/discovery"
)

// BenchmarkPick measures Pick+Done. Weights vary (1..4) so the weighted
// policies take their weighted paths; keys are precomputed so hashing, not
// formatting, is measured.
func BenchmarkPick(b *testing.B) {
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("user-%d", i)
	}
	for _, policy := range Policies() {
		for _, n := range []int{10, 100, 10000} {
			ins := instances(n)
			for i := range ins {
				ins[i].Weight = 1 + i%4
			}
			bal := mustNew(b, policy, Options{})
			bal.Update(snap(ins...))
			b.Run(fmt.Sprintf("%s/n=%d/serial", policy, n), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					e, err := bal.Pick(keys[i&1023])
					if err != nil {
						b.Fatal(err)
					}
					e.Done(nil)
					i++
				}
			})
			b.Run(fmt.Sprintf("%s/n=%d/parallel", policy, n), func(b *testing.B) {
				b.ReportAllocs()
				var g atomic.Uint64
				b.RunParallel(func(pb *testing.PB) {
					i := int(g.Add(1) * 257)
					for pb.Next() {
						e, err := bal.Pick(keys[i&1023])
						if err != nil {
							b.Error(err)
							return
						}
						e.Done(nil)
						i++
					}
				})
			})
		}
	}
}

// BenchmarkPickOnly is Pick without Done (in-flight counts just grow), to
// compare with the per-pick targets.
func BenchmarkPickOnly(b *testing.B) {
	ins := instances(100)
	for i := range ins {
		ins[i].Weight = 1 + i%4
	}
	for _, policy := range Policies() {
		bal := mustNew(b, policy, Options{})
		bal.Update(snap(ins...))
		b.Run(policy, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bal.Pick("user-1"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFloor prices the parts picks are made of on this machine: an
// uncontended atomic add (Pick and Done do one each, round robin one more)
// and a math/rand/v2 draw (random, least_request).
func BenchmarkFloor(b *testing.B) {
	b.Run("atomic_add", func(b *testing.B) {
		var n atomic.Int64
		for b.Loop() {
			n.Add(1)
		}
	})
	b.Run("rand_uint64", func(b *testing.B) {
		var sink uint64
		for b.Loop() {
			sink += rand.Uint64()
		}
		_ = sink
	})
}

// BenchmarkUpdate is the control-plane cost of a membership change: one
// instance's weight flips between updates, so every Update builds a picker.
func BenchmarkUpdate(b *testing.B) {
	for _, policy := range Policies() {
		for _, n := range []int{10, 10000} {
			b.Run(fmt.Sprintf("%s/n=%d", policy, n), func(b *testing.B) {
				ins := instances(n)
				for i := range ins {
					ins[i].Weight = 1 + i%4
				}
				other := slices.Clone(ins)
				other[0].Weight = 9
				snaps := [2]discovery.Snapshot{snap(ins...), snap(other...)}
				bal := mustNew(b, policy, Options{})
				bal.Update(snaps[1]) // the first build is not what we measure
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					bal.Update(snaps[i&1])
					i++
				}
			})
		}
	}
}

// BenchmarkPickDegraded is Pick+Done with one of 100 endpoints ejected:
// "probe" right after the ejection (still in the picker, skipped at pick
// time), "left out" after the rebuild, when every Pick reads the clock to
// catch the re-admission.
func BenchmarkPickDegraded(b *testing.B) {
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("user-%d", i)
	}
	ins := instances(100)
	for i := range ins {
		ins[i].Weight = 1 + i%4
	}
	for _, policy := range Policies() {
		for _, phase := range []string{"probe", "left_out"} {
			bal := mustNew(b, policy, Options{}).(*balancer)
			bal.Update(snap(ins...))
			e := bal.Endpoints()[3]
			e.acquire().Done(errRefused)
			if phase == "left_out" {
				bal.mu.Lock()
				bal.buildLocked(bal.h.nanos())
				bal.mu.Unlock()
			}
			b.Run(policy+"/"+phase, func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					e, err := bal.Pick(keys[i&1023])
					if err != nil {
						b.Fatal(err)
					}
					e.Done(nil)
					i++
				}
			})
		}
	}
}

// BenchmarkPickReadURL is what the proxy does with a pick on many cores: read
// the URL and instance while other cores count in-flight requests on the
// same endpoints; it shows false sharing between the two, if any.
func BenchmarkPickReadURL(b *testing.B) {
	ins := instances(4)
	bal := mustNew(b, "round_robin", Options{})
	bal.Update(snap(ins...))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		n := 0
		for pb.Next() {
			e, err := bal.Pick("")
			if err != nil {
				b.Error(err)
				return
			}
			n += len(e.URL.Host) + len(e.Instance.ID)
			e.Done(nil)
		}
		_ = n
	})
}
