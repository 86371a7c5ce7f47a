package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/registry"
)

func TestMalformedRecordsSkipped(t *testing.T) {
	good, _ := registry.Encode(inst("api", "bad"))
	cases := []struct {
		name, key, value string
	}{
		{"not json", layout.Key("api", "bad"), "{not json"},
		{"newer schema", layout.Key("api", "bad"), `{"v":99,"service":"api","id":"bad","address":"http://x"}`},
		{"invalid instance", layout.Key("api", "bad"), `{"v":1,"service":"api","id":"bad","address":"ftp://x"}`},
		{"names another id", layout.Key("api", "other"), string(good)},
		{"key without id", testRoot + "/api", string(good)},
		{"key too deep", layout.Key("api", "bad") + "/x", string(good)},
	}
	env := testenv.StartEtcd(t)
	cli := raw(t, env.Endpoint)
	ctx := context.Background()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := fmt.Sprintf("%s/%d", testRoot, i) // a root per case
			lay := registry.Layout{Root: root}
			key := root + tc.key[len(testRoot):]
			// Good records beside the bad one, then the bad one.
			for _, id := range []string{"a", "b"} {
				data, _ := registry.Encode(inst("api", id))
				if _, err := cli.Put(ctx, lay.Key("api", id), string(data)); err != nil {
					t.Fatalf("put: %v", err)
				}
			}
			if _, err := cli.Put(ctx, key, tc.value); err != nil {
				t.Fatalf("put: %v", err)
			}
			w := dialRoot(t, env.Endpoint, root).Watcher()
			defer w.Close()
			b, err := w.Next(ctx)
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if len(b.Skipped) != 1 || !errors.Is(b.Skipped[0], registry.ErrInvalid) {
				t.Fatalf("got skipped %v, want one ErrInvalid", b.Skipped)
			}
			v := view{}
			v.apply(b)
			if !b.Full || !v.hasIDs("api", "a", "b") {
				t.Fatalf("got %+v, want a full batch with api a, b", b)
			}

			// The same record written while watching is skipped too.
			if _, err := cli.Put(ctx, key, tc.value+" "); err != nil {
				t.Fatalf("put: %v", err)
			}
			nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			b, err = w.Next(nctx)
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if len(b.Skipped) != 1 || b.Full {
				t.Fatalf("got %+v, want a partial batch with one skipped record", b)
			}
		})
	}
}

func TestWatcherErrorsWhileEtcdDown(t *testing.T) {
	env := testenv.StartEtcd(t)
	c := dial(t, env.Endpoint, 2*time.Second)
	in := inst("api", "a")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- registry.Keep(ctx, c, in, registry.Backoff{Base: 20 * time.Millisecond, Max: 200 * time.Millisecond}, registry.KeepEvents{})
	}()
	defer func() {
		cancel()
		<-done
	}()
	w := c.Watcher()
	defer w.Close()
	v := view{}
	nextUntil(t, w, v, 5*time.Second, func(v view) bool { return v.hasIDs("api", "a") })

	env.Stop()
	stopped := time.Now()
	nctx, ncancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer ncancel()
	b, err := w.Next(nctx)
	if err == nil || nctx.Err() != nil {
		t.Fatalf("got %+v, %v with etcd down, want a watch error", b, err)
	}
	t.Logf("error after %v: %v", time.Since(stopped), err)

	env.Start()
	// Errors may go on while the client reconnects; the first batch after
	// them must be a full re-list, and the instance must come back.
	for {
		b, err = w.Next(nctx)
		if err == nil {
			break
		}
		if nctx.Err() != nil {
			t.Fatalf("no batch 15s after the restart: %v", err)
		}
	}
	if !b.Full {
		t.Fatalf("got a partial batch %+v after an error, want a full one", b)
	}
	v.apply(b)
	if !v.hasIDs("api", "a") { // Keep may not have re-registered yet
		nextUntil(t, w, v, 10*time.Second, func(v view) bool { return v.hasIDs("api", "a") })
	}
}

// A watch that falls behind a compaction fails; the next Next re-lists.
func TestWatcherRelistsAfterCompaction(t *testing.T) {
	env := testenv.StartEtcd(t)
	proxy := testenv.NewTCPProxy(t, env.Endpoint)
	cli := raw(t, env.Endpoint)
	// A long TTL, so that silence never beats the compaction error.
	c := dial(t, proxy.Addr(), 30*time.Second)
	putAll(t, cli, []registry.Instance{inst("api", "a"), inst("web", "a")})
	w := c.Watcher()
	defer w.Close()
	v := view{}
	nextUntil(t, w, v, 5*time.Second, func(v view) bool { return v.hasIDs("api", "a") && v.hasIDs("web", "a") })

	proxy.Cut()
	ctx := context.Background()
	putAll(t, cli, []registry.Instance{inst("api", "b"), inst("db", "a")})
	resp, err := cli.Delete(ctx, layout.Key("web", "a"))
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compact: %v", err)
	}
	proxy.Restore()

	nctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	b, err := w.Next(nctx)
	if !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("got %+v, %v, want ErrCompacted", b, err)
	}
	b, err = w.Next(nctx)
	if err != nil {
		t.Fatalf("Next after compaction: %v", err)
	}
	if !b.Full {
		t.Fatalf("got a partial batch after compaction, want a full one")
	}
	got := view{}
	got.apply(b)
	if len(got) != 2 || !got.hasIDs("api", "a", "b") || !got.hasIDs("db", "a") {
		t.Fatalf("got %v, want api [a b], db [a]", got)
	}
}

func TestWatcherWide(t *testing.T) {
	env := testenv.StartEtcd(t)
	cli := raw(t, env.Endpoint)
	c := dial(t, env.Endpoint, 2*time.Second)
	all := grid(200, 5)
	putAll(t, cli, all)
	w := c.Watcher()
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := w.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	if !b.Full || len(b.Services) != 200 || len(b.Skipped) != 0 {
		t.Fatalf("got full=%v, %d services, %d skipped, want full, 200, 0", b.Full, len(b.Services), len(b.Skipped))
	}
	for i, in := range all {
		if got := b.Services[in.Service][i%5]; !got.Equal(in) {
			t.Fatalf("got %v, want %v", got, in)
		}
	}

	put := func(ops ...clientv3.Op) {
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatalf("txn: %v", err)
		}
	}
	record := func(in registry.Instance) clientv3.Op {
		data, _ := registry.Encode(in)
		return clientv3.OpPut(layout.Key(in.Service, in.ID), string(data))
	}
	cases := []struct {
		name string
		ops  []clientv3.Op
		want map[string][]string // service -> ids in the batch
	}{
		{"add one", []clientv3.Op{record(inst("svc-007", "i9"))},
			map[string][]string{"svc-007": {"i0", "i1", "i2", "i3", "i4", "i9"}}},
		{"remove one", []clientv3.Op{clientv3.OpDelete(layout.Key("svc-100", "i2"))},
			map[string][]string{"svc-100": {"i0", "i1", "i3", "i4"}}},
		{"empty a service", []clientv3.Op{clientv3.OpDelete(layout.ServicePath("svc-199")+"/", clientv3.WithPrefix())},
			map[string][]string{"svc-199": {}}},
		{"three services at once", []clientv3.Op{
			record(inst("svc-001", "i5")), record(inst("svc-002", "i5")), clientv3.OpDelete(layout.Key("svc-003", "i0")),
		}, map[string][]string{
			"svc-001": {"i0", "i1", "i2", "i3", "i4", "i5"},
			"svc-002": {"i0", "i1", "i2", "i3", "i4", "i5"},
			"svc-003": {"i1", "i2", "i3", "i4"},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			put(tc.ops...)
			b, err := w.Next(ctx)
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if b.Full || len(b.Services) != len(tc.want) {
				t.Fatalf("got full=%v with %d services, want a partial batch of %d", b.Full, len(b.Services), len(tc.want))
			}
			for name, ids := range tc.want {
				got := b.Services[name]
				if len(got) != len(ids) {
					t.Fatalf("%s: got %v, want ids %v", name, got, ids)
				}
				for i, id := range ids {
					if got[i].ID != id {
						t.Fatalf("%s: got %v, want ids %v", name, got, ids)
					}
				}
			}
		})
	}
}

func TestWatcherClose(t *testing.T) {
	env := testenv.StartEtcd(t)
	c := dial(t, env.Endpoint, 2*time.Second)
	w := c.Watcher()
	if _, err := w.Next(context.Background()); err != nil {
		t.Fatalf("Next: %v", err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := w.Next(context.Background())
		errc <- err
	}()
	w.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatalf("got nil from Next on a closed watcher, want an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Next still blocked 5s after Close")
	}
}
