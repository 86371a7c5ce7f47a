package etcd_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/registry"
)

func TestRegisterWatchDeregister(t *testing.T) {
	env := testenv.StartEtcd(t)
	c := dial(t, env.Endpoint, 2*time.Second)
	w := c.Watcher()
	defer w.Close()
	v := view{}
	nextUntil(t, w, v, 5*time.Second, func(v view) bool { return len(v) == 0 })

	ctx := context.Background()
	a, b := inst("api", "a"), inst("api", "b")
	start := time.Now()
	for _, in := range []registry.Instance{a, b} {
		if _, err := c.Register(ctx, in); err != nil {
			t.Fatalf("Register %s: %v", in.ID, err)
		}
	}
	nextUntil(t, w, v, time.Second, func(v view) bool { return v.hasIDs("api", "a", "b") })
	if d := time.Since(start); d > time.Second {
		t.Fatalf("registration seen after %v, want under 1s", d)
	}
	if got := v["api"][0]; !got.Equal(a) {
		t.Fatalf("got %v, want %v", got, a)
	}

	// Registering again replaces the record and revokes the old lease.
	a2 := a
	a2.Weight = 7
	if _, err := c.Register(ctx, a2); err != nil {
		t.Fatalf("Register again: %v", err)
	}
	nextUntil(t, w, v, time.Second, func(v view) bool { return v["api"][0].Weight == 7 })
	leases, err := raw(t, env.Endpoint).Leases(ctx)
	if err != nil {
		t.Fatalf("Leases: %v", err)
	}
	if got := len(leases.Leases); got != 2 {
		t.Fatalf("got %d leases after re-registering, want 2 (one per instance)", got)
	}

	if err := c.Deregister(ctx, a2); err != nil {
		t.Fatalf("Deregister: %v", err)
	}
	batches := nextUntil(t, w, v, time.Second, func(v view) bool { return v.hasIDs("api", "b") })
	if got := batches[len(batches)-1].Services["api"]; len(got) != 1 || !got[0].Equal(b) {
		t.Fatalf("got %v after deregistering a, want only b", got)
	}
	if err := c.Deregister(ctx, b); err != nil {
		t.Fatalf("Deregister b: %v", err)
	}
	batches = nextUntil(t, w, v, time.Second, func(v view) bool { return len(v) == 0 })
	last := batches[len(batches)-1]
	if got, ok := last.Services["api"]; !ok || len(got) != 0 {
		t.Fatalf("got %v (present %v) for the emptied service, want an empty set", got, ok)
	}
	for _, in := range []registry.Instance{a, b, inst("never", "x")} {
		if err := c.Deregister(ctx, in); err != nil {
			t.Fatalf("Deregister %s again: got %v, want nil", in.ID, err)
		}
	}
}

func TestRegisterRejectsInvalid(t *testing.T) {
	env := testenv.StartEtcd(t)
	c := dial(t, env.Endpoint, 2*time.Second)
	bad := registry.Instance{Service: "api", ID: "a/b", Address: "http://x"}
	if _, err := c.Register(context.Background(), bad); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("got %v, want ErrInvalid", err)
	}
}

// A registrar that stops renewing without revoking (a crash, a cut network)
// loses its record after the TTL, and its lost channel closes.
func TestLeaseExpiresWithoutRenewal(t *testing.T) {
	cases := []struct {
		name string
		// crash stops renewals of the registrar c; endpoint is c's.
		crash func(t *testing.T, c interface{ Close() error }, proxy *testenv.TCPProxy)
	}{
		{"client closed", func(t *testing.T, c interface{ Close() error }, _ *testenv.TCPProxy) {
			// Close does not revoke leases: the record outlives the client.
			if err := c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
		}},
		{"network cut", func(t *testing.T, _ interface{ Close() error }, proxy *testenv.TCPProxy) {
			proxy.Cut()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := testenv.StartEtcd(t)
			proxy := testenv.NewTCPProxy(t, env.Endpoint)
			reg := dial(t, proxy.Addr(), 2*time.Second)
			obs := dial(t, env.Endpoint, 10*time.Second)
			w := obs.Watcher()
			defer w.Close()

			lost, err := reg.Register(context.Background(), inst("api", "a"))
			if err != nil {
				t.Fatalf("Register: %v", err)
			}
			v := view{}
			nextUntil(t, w, v, 5*time.Second, func(v view) bool { return v.hasIDs("api", "a") })

			cut := time.Now()
			tc.crash(t, reg, proxy)
			resp, err := raw(t, env.Endpoint).Get(context.Background(), layout.Key("api", "a"))
			if err != nil || len(resp.Kvs) != 1 {
				t.Fatalf("got %v, %v right after the crash, want the record still there", resp, err)
			}
			nextUntil(t, w, v, 10*time.Second, func(v view) bool { return len(v["api"]) == 0 })
			if d := time.Since(cut); d < time.Second {
				t.Fatalf("record gone after %v, want it to last about the 2s TTL", d)
			}
			select {
			case <-lost:
			case <-time.After(5 * time.Second):
				t.Fatalf("lost channel still open 5s after the record expired")
			}
		})
	}
}

// Keep puts the record back under a new lease when its lease is revoked
// behind its back, and removes it when its context ends.
func TestKeepReregistersAfterRevoke(t *testing.T) {
	env := testenv.StartEtcd(t)
	c := dial(t, env.Endpoint, 2*time.Second)
	cli := raw(t, env.Endpoint)
	in := inst("api", "a")
	key := layout.Key(in.Service, in.ID)

	var registered, lostN atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- registry.Keep(ctx, c, in, registry.Backoff{Base: 20 * time.Millisecond, Max: 200 * time.Millisecond},
			registry.KeepEvents{
				Registered: func(registry.Instance) { registered.Add(1) },
				Lost:       func(registry.Instance) { lostN.Add(1) },
			})
	}()
	defer func() {
		cancel()
		<-done
	}()

	leaseOf := func() clientv3.LeaseID {
		resp, err := cli.Get(context.Background(), key)
		if err != nil || len(resp.Kvs) == 0 {
			return 0
		}
		return clientv3.LeaseID(resp.Kvs[0].Lease)
	}
	first := poll(t, 5*time.Second, "record registered", func() (clientv3.LeaseID, bool) {
		id := leaseOf()
		return id, id != 0
	})
	if _, err := cli.Revoke(context.Background(), first); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	second := poll(t, 5*time.Second, "record back under a new lease", func() (clientv3.LeaseID, bool) {
		id := leaseOf()
		return id, id != 0 && id != first
	})
	if got := lostN.Load(); got < 1 {
		t.Fatalf("got %d Lost events, want at least 1", got)
	}
	// Keep reports Registered after Register returns, which may be after
	// the record is visible.
	poll(t, 5*time.Second, "second Registered event", func() (int32, bool) {
		n := registered.Load()
		return n, n >= 2
	})

	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Keep returned %v, want context.Canceled", err)
	}
	done <- nil // for the deferred receive
	if id := leaseOf(); id != 0 {
		t.Fatalf("record still held by lease %x (second was %x) after Keep ended", id, second)
	}
}

// poll calls f every 20ms until it reports true or the timeout passes.
func poll[T any](t testing.TB, timeout time.Duration, what string, f func() (T, bool)) T {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if v, ok := f(); ok {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		<-tick.C
	}
}
