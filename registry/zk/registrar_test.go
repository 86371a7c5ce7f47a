package zk_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/registry"
	"github.com/gatehouse/gatehouse/registry/zk"
)

// victimSession is short so that expiry tests stay quick; the server's
// minimum with tickTime=200 is 400ms.
const victimSession = 1500 * time.Millisecond

func TestSessionEndRemovesInstance(t *testing.T) {
	z := startZooKeeper(t)
	watch := dial(t, z.Addr, 4*time.Second)
	v := newView(watch.Watcher())
	v.next(t, 5*time.Second)

	cases := []struct {
		name      string
		end       func(c *zk.Client, p *testenv.TCPProxy)
		lostAtEnd bool // the client can tell at once
	}{
		{"clean close", func(c *zk.Client, _ *testenv.TCPProxy) { c.Close() }, true},
		{"killed: cut off past the session timeout", func(_ *zk.Client, p *testenv.TCPProxy) { p.Cut() }, false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := testenv.NewTCPProxy(t, z.Addr)
			c := dial(t, p.Addr(), victimSession)
			in := instance("api", string(rune('a'+i)), 9001)
			lost, err := c.Register(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			v.until(t, 2*time.Second, "registered", func(m map[string][]registry.Instance) bool { return has(m["api"], in.ID) })
			tc.end(c, p)
			v.until(t, victimSession+5*time.Second, "gone", func(m map[string][]registry.Instance) bool { return has(m["api"]) })
			if tc.lostAtEnd {
				select {
				case <-lost:
				default:
					t.Fatal("lost still open after Close, want closed")
				}
			}
		})
	}
}

func TestKeepReregistersAfterSessionExpiry(t *testing.T) {
	z := startZooKeeper(t)
	raw := rawConn(t, z.Addr)
	p := testenv.NewTCPProxy(t, z.Addr)
	c := dial(t, p.Addr(), victimSession)
	in := instance("api", "a", 9001)

	var registered, lost atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- registry.Keep(ctx, c, in, registry.Backoff{Base: 50 * time.Millisecond, Max: 500 * time.Millisecond},
			registry.KeepEvents{
				Registered: func(registry.Instance) { registered.Add(1) },
				Lost:       func(registry.Instance) { lost.Add(1) },
			})
	}()
	defer func() {
		cancel()
		<-done
	}()
	waitUntil(t, 5*time.Second, "registered", func() bool { return registered.Load() == 1 })
	first := owner(t, raw, key("api", "a"))
	if first == 0 {
		t.Fatal("got no ephemeral owner after Register, want the client's session")
	}

	p.Cut()
	waitUntil(t, victimSession+5*time.Second, "the server expired the session", func() bool {
		return owner(t, raw, key("api", "a")) == 0
	})
	if n := lost.Load(); n != 0 {
		t.Fatalf("lost while cut off: got %d, want 0 (the client cannot know yet)", n)
	}
	p.Restore()
	waitUntil(t, 10*time.Second, "lost fired and Keep registered again", func() bool {
		return lost.Load() == 1 && registered.Load() == 2
	})
	waitUntil(t, 5*time.Second, "the record is back under a new session", func() bool {
		o := owner(t, raw, key("api", "a"))
		return o != 0 && o != first
	})
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Keep: got %v, want context.Canceled", err)
	}
	done <- nil // for the deferred receive
	if o := owner(t, raw, key("api", "a")); o != 0 {
		t.Fatalf("after Keep returned: got owner %#x, want the record deregistered", o)
	}
}

func TestRegisterReplacesStaleRecord(t *testing.T) {
	z := startZooKeeper(t)
	raw := rawConn(t, z.Addr)
	in := instance("api", "a", 9001)
	ctx := context.Background()

	// The previous process is cut off but its session still lives on the
	// server, as after a SIGKILL and a fast restart.
	p := testenv.NewTCPProxy(t, z.Addr)
	old := dial(t, p.Addr(), victimSession)
	for _, in := range []registry.Instance{in, instance("api", "canary", 9002)} {
		if _, err := old.Register(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	stale := owner(t, raw, key("api", "a"))
	p.Cut()

	c := dial(t, z.Addr, 4*time.Second)
	lostc, err := c.Register(ctx, in)
	if err != nil {
		t.Fatalf("Register over a stale record: got %v, want nil", err)
	}
	mine := owner(t, raw, key("api", "a"))
	if mine == 0 || mine == stale {
		t.Fatalf("owner after Register: got %#x, want a new session (stale %#x)", mine, stale)
	}

	// The stale session's expiry, seen through its other record, must not
	// take our record with it.
	waitUntil(t, victimSession+5*time.Second, "the stale session expired", func() bool {
		return owner(t, raw, key("api", "canary")) == 0
	})
	if o := owner(t, raw, key("api", "a")); o != mine {
		t.Fatalf("after the stale session expired: got owner %#x, want %#x", o, mine)
	}
	select {
	case <-lostc:
		t.Fatal("lost closed, want open: our session is fine")
	default:
	}

	// Deregister by a client that does not own the record leaves it alone.
	other := dial(t, z.Addr, 4*time.Second)
	if err := other.Deregister(ctx, in); err != nil {
		t.Fatalf("Deregister by a non-owner: got %v, want nil", err)
	}
	if o := owner(t, raw, key("api", "a")); o != mine {
		t.Fatalf("after a non-owner's Deregister: got owner %#x, want %#x", o, mine)
	}
}
