package etcd_test

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/testenv"
	etcdreg "github.com/gatehouse/gatehouse/registry/etcd"
)

func TestEmbedded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addr := func() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t))) }
	if _, err := etcdreg.StartEmbedded(ctx, etcdreg.EmbeddedConfig{}); err == nil {
		t.Fatalf("got no error without a data directory")
	}
	e, err := etcdreg.StartEmbedded(ctx, etcdreg.EmbeddedConfig{ClientAddr: addr(), PeerAddr: addr(), Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	defer e.Close()

	c, err := etcdreg.Dial(ctx, etcdreg.Config{Endpoints: []string{e.Endpoint()}, TTL: 2 * time.Second})
	if err != nil {
		t.Fatalf("Dial %s: %v", e.Endpoint(), err)
	}
	defer c.Close() // before e.Close, which otherwise waits for our streams
	if _, err := c.Register(ctx, inst("api", "a")); err != nil {
		t.Fatalf("Register: %v", err)
	}
	w := c.Watcher()
	defer w.Close()
	v := view{}
	nextUntil(t, w, v, 5*time.Second, func(v view) bool { return v.hasIDs("api", "a") })
}

func TestDialFailsWithoutServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
	start := time.Now()
	c, err := etcdreg.Dial(ctx, etcdreg.Config{Endpoints: []string{addr}, DialTimeout: 500 * time.Millisecond})
	if err == nil {
		c.Close()
		t.Fatalf("got a client for %s where nothing listens, want an error", addr)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Dial failed after %v, want about the 500ms dial timeout", d)
	}
}

func TestDialConfig(t *testing.T) {
	cases := []struct {
		name string
		cfg  etcdreg.Config
	}{
		{"no endpoints", etcdreg.Config{}},
		{"relative root", etcdreg.Config{Endpoints: []string{"127.0.0.1:1"}, Root: "services"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := etcdreg.Dial(context.Background(), tc.cfg); err == nil {
				c.Close()
				t.Fatalf("got no error for %+v", tc.cfg)
			}
		})
	}
}
