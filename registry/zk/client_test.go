package zk_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/registry"
	"github.com/gatehouse/gatehouse/registry/zk"
)

func TestDialRejectsBadConfig(t *testing.T) {
	nobody := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cases := []struct {
		name string
		cfg  zk.Config
		ctx  error // want errors.Is(err, ctx), or nil for any error
	}{
		{"no servers", zk.Config{}, nil},
		{"relative chroot", zk.Config{Servers: []string{nobody}, Chroot: "prod"}, nil},
		{"chroot with trailing slash", zk.Config{Servers: []string{nobody}, Chroot: "/prod/"}, nil},
		{"relative root", zk.Config{Servers: []string{nobody}, Root: "services"}, nil},
		{"nobody listening", zk.Config{Servers: []string{nobody}}, context.DeadlineExceeded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			c, err := zk.Dial(ctx, tc.cfg)
			if err == nil {
				c.Close()
				t.Fatal("got nil error, want one")
			}
			if tc.ctx != nil && !errors.Is(err, tc.ctx) {
				t.Fatalf("got %v, want it to wrap %v", err, tc.ctx)
			}
		})
	}
}

func TestChroot(t *testing.T) {
	z := startZooKeeper(t)
	raw := rawConn(t, z.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := zk.Dial(ctx, zk.Config{Servers: []string{z.Addr}, Chroot: "/prod/eu", SessionTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, _, err := raw.Exists("/prod/eu"); err != nil || !ok {
		t.Fatalf("chroot after Dial: got exists=%v, %v, want it created", ok, err)
	}
	plain := dial(t, z.Addr, 2*time.Second)
	inside, outside := newView(c.Watcher()), newView(plain.Watcher())
	inside.next(t, 5*time.Second)
	outside.next(t, 5*time.Second)

	if _, err := c.Register(ctx, instance("api", "a", 9001)); err != nil {
		t.Fatal(err)
	}
	if o := owner(t, raw, "/prod/eu"+key("api", "a")); o == 0 {
		t.Fatalf("record under the chroot: got none, want it at /prod/eu%s", key("api", "a"))
	}
	inside.until(t, 2*time.Second, "seen inside the chroot", func(m map[string][]registry.Instance) bool {
		return has(m["api"], "a")
	})
	if _, err := plain.Register(ctx, instance("web", "w", 9002)); err != nil {
		t.Fatal(err)
	}
	outside.until(t, 2*time.Second, "web seen outside", func(m map[string][]registry.Instance) bool {
		return has(m["web"], "w")
	})
	if _, ok := outside.services["api"]; ok {
		t.Fatalf("outside the chroot: got %v, want no api", outside.services)
	}
}

func TestBriefDisconnectIsNotLoss(t *testing.T) {
	z := startZooKeeper(t)
	p := testenv.NewTCPProxy(t, z.Addr)
	c := dial(t, p.Addr(), 4*time.Second)
	other := dial(t, z.Addr, 4*time.Second)
	ctx := context.Background()

	lost, err := c.Register(ctx, instance("api", "a", 9001))
	if err != nil {
		t.Fatal(err)
	}
	v := newView(c.Watcher())
	v.until(t, 2*time.Second, "a seen", func(m map[string][]registry.Instance) bool { return has(m["api"], "a") })

	// A change made while the client is cut off arrives after it is back,
	// through the watches the driver restores on the same session.
	v.batches = nil
	p.Cut()
	if _, err := other.Register(ctx, instance("api", "b", 9002)); err != nil {
		t.Fatal(err)
	}
	p.Restore()
	v.until(t, 3*time.Second, "b seen after reconnecting", func(m map[string][]registry.Instance) bool {
		return has(m["api"], "a", "b")
	})
	for _, b := range v.batches {
		if b.Full {
			t.Fatalf("after a brief disconnect: got a full batch, want only the change")
		}
	}
	select {
	case <-lost:
		t.Fatal("lost closed after a brief disconnect, want open")
	default:
	}
}
