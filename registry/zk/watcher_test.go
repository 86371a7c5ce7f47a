package zk_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"

	"github.com/gatehouse/gatehouse/registry"
	"github.com/gatehouse/gatehouse/registry/zk"
)

func TestRegisterWatchDeregister(t *testing.T) {
	z := startZooKeeper(t)
	c := dial(t, z.Addr, 2*time.Second)
	ctx := context.Background()

	// The root does not exist yet: the first batch is full and empty, and
	// the root's creation by Register must still be seen.
	v := newView(c.Watcher())
	if b := v.next(t, 5*time.Second); !b.Full || len(b.Services) != 0 {
		t.Fatalf("first batch: got full=%v services=%v, want an empty full batch", b.Full, b.Services)
	}

	a, b := instance("api", "a", 9001), instance("api", "b", 9002)
	steps := []struct {
		name string
		do   func() error
		want []string // IDs of "api"
	}{
		{"register a", func() error { _, err := c.Register(ctx, a); return err }, []string{"a"}},
		{"register b", func() error { _, err := c.Register(ctx, b); return err }, []string{"a", "b"}},
		{"deregister a", func() error { return c.Deregister(ctx, a) }, []string{"b"}},
		{"deregister b", func() error { return c.Deregister(ctx, b) }, []string{}},
		{"deregister b again", func() error { return c.Deregister(ctx, b) }, []string{}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: got %v, want nil", s.name, err)
		}
		v.until(t, time.Second, s.name, func(m map[string][]registry.Instance) bool {
			got, ok := m["api"]
			return ok && has(got, s.want...)
		})
	}

	// An update by the same session changes the record in place.
	a.Weight = 7
	if _, err := c.Register(ctx, a); err != nil {
		t.Fatal(err)
	}
	a.Weight = 9
	if _, err := c.Register(ctx, a); err != nil {
		t.Fatal(err)
	}
	v.until(t, time.Second, "a has weight 9", func(m map[string][]registry.Instance) bool {
		return len(m["api"]) == 1 && m["api"][0].Equal(a)
	})
}

func TestMalformedRecordsAreSkipped(t *testing.T) {
	z := startZooKeeper(t)
	c := dial(t, z.Addr, 2*time.Second)
	raw := rawConn(t, z.Addr)
	good, err := registry.Encode(instance("api", "bad", 9000))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		data []byte
	}{
		{"not json", []byte("{nope")},
		{"newer schema", []byte(`{"v":99,"service":"api","id":"bad","address":"http://x:1"}`)},
		{"invalid address", []byte(`{"v":1,"service":"api","id":"bad","address":"ftp://x"}`)},
		{"record of another key", []byte(strings.Replace(string(good), `"id":"bad"`, `"id":"other"`, 1))},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			svc := "svc" + string(rune('a'+i))
			for _, id := range []string{"g1", "g2"} {
				if _, err := c.Register(context.Background(), instance(svc, id, 9000)); err != nil {
					t.Fatal(err)
				}
			}
			data := []byte(strings.ReplaceAll(string(tc.data), `"api"`, `"`+svc+`"`))
			if _, err := raw.Create(key(svc, "bad"), data, gozk.FlagPersistent, gozk.WorldACL(gozk.PermAll)); err != nil {
				t.Fatal(err)
			}
			w := c.Watcher()
			defer w.Close()
			b := newView(w).next(t, 5*time.Second)
			if !has(b.Services[svc], "g1", "g2") {
				t.Errorf("got %v, want the two good instances", b.Services[svc])
			}
			var mine []error
			for _, e := range b.Skipped {
				if strings.Contains(e.Error(), "/"+svc+"/") {
					mine = append(mine, e)
				}
			}
			if len(mine) != 1 || !errors.Is(mine[0], registry.ErrInvalid) {
				t.Errorf("skipped: got %v, want one error wrapping ErrInvalid", mine)
			}
		})
	}
}

func TestWatcherErrorsWhileServerIsDown(t *testing.T) {
	z := startZooKeeper(t)
	reg := dial(t, z.Addr, 4*time.Second)
	c := dial(t, z.Addr, 2*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kept := make(chan error, 1)
	go func() {
		kept <- registry.Keep(ctx, reg, instance("api", "a", 9001), registry.Backoff{}, registry.KeepEvents{})
	}()
	defer func() { cancel(); <-kept }()

	v := newView(c.Watcher())
	v.until(t, 5*time.Second, "a is registered", func(m map[string][]registry.Instance) bool { return has(m["api"], "a") })

	z.Stop()
	nctx, ncancel := context.WithTimeout(context.Background(), 10*time.Second)
	b, err := v.w.Next(nctx)
	ncancel()
	if err == nil {
		t.Fatalf("Next with the server down: got batch %+v, want an error", b)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next with the server down: blocked until the deadline, want an error sooner")
	}

	z.Start()
	deadline := time.Now().Add(15 * time.Second)
	for {
		nctx, ncancel := context.WithTimeout(context.Background(), time.Until(deadline))
		b, err = v.w.Next(nctx)
		ncancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Next after restart: still failing: %v", err)
		}
	}
	if !b.Full {
		t.Fatalf("first batch after the error: got full=%v, want full", b.Full)
	}
	v.apply(b)
	v.until(t, 10*time.Second, "a is back", func(m map[string][]registry.Instance) bool { return has(m["api"], "a") })
}

func TestWatcherClose(t *testing.T) {
	z := startZooKeeper(t)
	cases := []struct {
		name  string
		close func(c *zk.Client, w registry.Watcher)
	}{
		{"watcher closed", func(_ *zk.Client, w registry.Watcher) { w.Close() }},
		{"client closed", func(c *zk.Client, _ registry.Watcher) { c.Close() }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, z.Addr, 2*time.Second)
			w := c.Watcher()
			if _, err := w.Next(context.Background()); err != nil {
				t.Fatal(err)
			}
			errc := make(chan error, 1)
			go func() { _, err := w.Next(context.Background()); errc <- err }()
			tc.close(c, w)
			select {
			case err := <-errc:
				if !errors.Is(err, zk.ErrClosed) {
					t.Fatalf("blocked Next: got %v, want ErrClosed", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("blocked Next did not return after close")
			}
			if _, err := w.Next(context.Background()); !errors.Is(err, zk.ErrClosed) {
				t.Fatalf("Next after close: got %v, want ErrClosed", err)
			}
		})
	}
}
