package zk_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"

	"github.com/gatehouse/gatehouse/registry"
)

func svcName(i int) string { return fmt.Sprintf("svc-%04d", i) }
func idName(i int) string  { return fmt.Sprintf("i-%02d", i) }

// preload writes services × per persistent records under testRoot in a few
// multi-ops, far faster than one Register each.
func preload(t testing.TB, raw *gozk.Conn, services, per int) {
	t.Helper()
	acl := gozk.WorldACL(gozk.PermAll)
	for _, p := range []string{"/gatehouse", testRoot} {
		if _, err := raw.Create(p, nil, 0, acl); err != nil && err != gozk.ErrNodeExists {
			t.Fatal(err)
		}
	}
	var ops []any
	flush := func() {
		if _, err := raw.Multi(ops...); err != nil {
			t.Fatalf("preload: %v", err)
		}
		ops = ops[:0]
	}
	for s := range services {
		ops = append(ops, &gozk.CreateRequest{Path: testRoot + "/" + svcName(s), Acl: acl})
		for i := range per {
			data, err := registry.Encode(instance(svcName(s), idName(i), 10000+i))
			if err != nil {
				t.Fatal(err)
			}
			ops = append(ops, &gozk.CreateRequest{Path: key(svcName(s), idName(i)), Data: data, Acl: acl})
		}
		if len(ops) >= 500 {
			flush()
		}
	}
	if len(ops) > 0 {
		flush()
	}
}

func TestWideRegistry(t *testing.T) {
	const services, per = 200, 5
	z := startZooKeeper(t)
	raw := rawConn(t, z.Addr)
	preload(t, raw, services, per)
	c := dial(t, z.Addr, 4*time.Second)
	ctx := context.Background()

	v := newView(c.Watcher())
	b := v.next(t, 10*time.Second)
	if !b.Full || len(b.Services) != services || len(b.Skipped) != 0 {
		t.Fatalf("first batch: got full=%v services=%d skipped=%v, want full, %d, none",
			b.Full, len(b.Services), b.Skipped, services)
	}
	for s := range services {
		got := b.Services[svcName(s)]
		if len(got) != per || got[0].ID != idName(0) || got[per-1].ID != idName(per-1) {
			t.Fatalf("%s: got %v, want %d instances %s..%s", svcName(s), got, per, idName(0), idName(per-1))
		}
	}

	heavier := instance(svcName(7), idName(3), 10003)
	heavier.Weight = 5
	cases := []struct {
		name    string
		service string
		do      func() error
		want    func([]registry.Instance) bool
	}{
		{"register into an existing service", svcName(42), func() error {
			_, err := c.Register(ctx, instance(svcName(42), "new", 9000))
			return err
		}, func(set []registry.Instance) bool { return len(set) == per+1 }},
		{"update one record", svcName(7), func() error {
			data, _ := registry.Encode(heavier)
			_, err := raw.Set(key(svcName(7), idName(3)), data, -1)
			return err
		}, func(set []registry.Instance) bool { return len(set) == per && set[3].Weight == 5 }},
		{"delete one record", svcName(100), func() error {
			return raw.Delete(key(svcName(100), idName(0)), -1)
		}, func(set []registry.Instance) bool { return len(set) == per-1 && set[0].ID == idName(1) }},
		{"new service", "fresh", func() error {
			_, err := c.Register(ctx, instance("fresh", "a", 9000))
			return err
		}, func(set []registry.Instance) bool { return has(set, "a") }},
		{"new empty service", "empty", func() error {
			_, err := raw.Create(testRoot+"/empty", nil, 0, gozk.WorldACL(gozk.PermAll))
			return err
		}, func(set []registry.Instance) bool { return set != nil && len(set) == 0 }},
		{"service removed", svcName(150), func() error {
			for i := range per {
				if err := raw.Delete(key(svcName(150), idName(i)), -1); err != nil {
					return err
				}
			}
			return raw.Delete(testRoot+"/"+svcName(150), -1)
		}, func(set []registry.Instance) bool { return set != nil && len(set) == 0 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v.batches = nil
			if err := tc.do(); err != nil {
				t.Fatal(err)
			}
			v.until(t, 2*time.Second, tc.service+" changed", func(m map[string][]registry.Instance) bool {
				return tc.want(m[tc.service])
			})
			for _, b := range v.batches {
				if b.Full || len(b.Services) != 1 || b.Services[tc.service] == nil {
					names := make([]string, 0, len(b.Services))
					for n := range b.Services {
						names = append(names, n)
					}
					sort.Strings(names)
					t.Fatalf("batch: got full=%v services %v, want only %s", b.Full, names, tc.service)
				}
			}
		})
	}
}

// BenchmarkChangeLatency measures the time from Register of one instance to
// the watcher returning it, with 1000 services × 10 instances loaded.
func BenchmarkChangeLatency(b *testing.B) {
	const services, per = 1000, 10
	z := startZooKeeper(b)
	raw := rawConn(b, z.Addr)
	preload(b, raw, services, per)
	c := dial(b, z.Addr, 10*time.Second)
	w := c.Watcher()
	ctx := context.Background()

	start := time.Now()
	first, err := w.Next(ctx)
	if err != nil || len(first.Services) != services {
		b.Fatalf("full list: got %d services, %v; want %d", len(first.Services), err, services)
	}
	full := time.Since(start)

	var lat []time.Duration
	i := 0
	for b.Loop() {
		in := instance(svcName(i%services), fmt.Sprintf("bench-%d", i), 9000)
		i++
		start := time.Now()
		if _, err := c.Register(ctx, in); err != nil {
			b.Fatal(err)
		}
		for seen := false; !seen; {
			batch, err := w.Next(ctx)
			if err != nil {
				b.Fatal(err)
			}
			for _, got := range batch.Services[in.Service] {
				seen = seen || got.ID == in.ID
			}
		}
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
	b.ReportMetric(ms(full), "full-list-ms")
}
