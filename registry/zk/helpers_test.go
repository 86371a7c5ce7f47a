package zk_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"

	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/registry"
	"github.com/gatehouse/gatehouse/registry/zk"
)

const testRoot = "/gatehouse/services"

// dial connects a Client to addr and closes it when the test ends.
func dial(t testing.TB, addr string, session time.Duration) *zk.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := zk.Dial(ctx, zk.Config{Servers: []string{addr}, SessionTimeout: session})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

// rawConn is a plain driver connection, for writing and inspecting znodes
// behind the Client's back.
func rawConn(t testing.TB, addr string) *gozk.Conn {
	t.Helper()
	conn, _, err := gozk.Connect([]string{addr}, 5*time.Second, gozk.WithLogger(nopLogger{}), gozk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	waitUntil(t, 10*time.Second, "raw connection has a session", func() bool {
		return conn.State() == gozk.StateHasSession
	})
	return conn
}

// owner returns the ephemeral owner of path, or 0 if it does not exist.
func owner(t testing.TB, conn *gozk.Conn, path string) int64 {
	t.Helper()
	ok, st, err := conn.Exists(path)
	if err != nil {
		t.Fatalf("exists %s: %v", path, err)
	}
	if !ok {
		return 0
	}
	return st.EphemeralOwner
}

func instance(service, id string, port int) registry.Instance {
	return registry.Instance{
		Service:  service,
		ID:       id,
		Address:  fmt.Sprintf("http://127.0.0.1:%d", port),
		Metadata: map[string]string{registry.MetaZone: "z1"},
	}
}

func key(service, id string) string { return testRoot + "/" + service + "/" + id }

// waitUntil polls cond until it holds or the timeout passes.
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not ordering
	}
}

// view applies a watcher's batches to a map of the current sets.
type view struct {
	w        registry.Watcher
	services map[string][]registry.Instance
	batches  []registry.Batch // every batch applied, in order
}

func newView(w registry.Watcher) *view {
	return &view{w: w, services: make(map[string][]registry.Instance)}
}

// next applies one batch, failing on a watch error.
func (v *view) next(t testing.TB, timeout time.Duration) registry.Batch {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	b, err := v.w.Next(ctx)
	if err != nil {
		t.Fatalf("Next: got error %v, want a batch", err)
	}
	v.apply(b)
	return b
}

func (v *view) apply(b registry.Batch) {
	if b.Full {
		v.services = make(map[string][]registry.Instance)
	}
	for name, ins := range b.Services {
		v.services[name] = ins
	}
	v.batches = append(v.batches, b)
}

// until applies batches until cond holds, failing after timeout.
func (v *view) until(t testing.TB, timeout time.Duration, what string, cond func(map[string][]registry.Instance) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond(v.services) {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("timed out after %v waiting until %s; have %v", timeout, what, v.services)
		}
		ctx, cancel := context.WithTimeout(context.Background(), left)
		b, err := v.w.Next(ctx)
		cancel()
		if err != nil {
			t.Fatalf("waiting until %s: Next: %v", what, err)
		}
		v.apply(b)
	}
}

// has reports whether set holds exactly the instances with the given IDs.
func has(set []registry.Instance, ids ...string) bool {
	if len(set) != len(ids) {
		return false
	}
	for i, in := range set {
		if in.ID != ids[i] {
			return false
		}
	}
	return true
}

// startZooKeeper is testenv.StartZooKeeper, kept in one place.
func startZooKeeper(t testing.TB) *testenv.ZooKeeper {
	t.Helper()
	return testenv.StartZooKeeper(t)
}
