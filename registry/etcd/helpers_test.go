package etcd_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/registry"
	etcdreg "github.com/gatehouse/gatehouse/registry/etcd"
)

const testRoot = "/test/services"

// layout is the key layout of testRoot.
var layout = registry.Layout{Root: testRoot}

func dial(t testing.TB, endpoint string, ttl time.Duration) *etcdreg.Client {
	t.Helper()
	return dialConfig(t, etcdreg.Config{Endpoints: []string{endpoint}, Root: testRoot, TTL: ttl})
}

// dialRoot dials a client under another root.
func dialRoot(t testing.TB, endpoint, root string) *etcdreg.Client {
	t.Helper()
	return dialConfig(t, etcdreg.Config{Endpoints: []string{endpoint}, Root: root, TTL: 2 * time.Second})
}

func dialConfig(t testing.TB, cfg etcdreg.Config) *etcdreg.Client {
	t.Helper()
	cfg.DialTimeout = 2 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := etcdreg.Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("dial %v: %v", cfg.Endpoints, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// raw is a plain etcd client for writing behind the registry's back.
func raw(t testing.TB, endpoint string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("raw client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func inst(service, id string) registry.Instance {
	return registry.Instance{Service: service, ID: id, Address: "http://127.0.0.1:9000/" + id}
}

// putAll writes records directly, a hundred per transaction.
func putAll(t testing.TB, cli *clientv3.Client, ins []registry.Instance) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for len(ins) > 0 {
		n := min(len(ins), 100)
		ops := make([]clientv3.Op, 0, n)
		for _, in := range ins[:n] {
			data, err := registry.Encode(in)
			if err != nil {
				t.Fatalf("encode %v: %v", in, err)
			}
			ops = append(ops, clientv3.OpPut(layout.Key(in.Service, in.ID), string(data)))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatalf("put records: %v", err)
		}
		ins = ins[n:]
	}
}

// grid returns services svc-000… each with ids i0….
func grid(services, perService int) []registry.Instance {
	var ins []registry.Instance
	for s := range services {
		for i := range perService {
			ins = append(ins, inst(fmt.Sprintf("svc-%03d", s), fmt.Sprintf("i%d", i)))
		}
	}
	return ins
}

// view is the state a consumer holds after folding in every batch.
type view map[string][]registry.Instance

func (v view) apply(b registry.Batch) {
	if b.Full {
		clear(v)
	}
	for name, ins := range b.Services {
		if len(ins) == 0 {
			delete(v, name)
			continue
		}
		v[name] = ins
	}
}

// hasIDs reports whether service holds exactly these instance IDs.
func (v view) hasIDs(service string, ids ...string) bool {
	ins := v[service]
	if len(ins) != len(ids) {
		return false
	}
	for i, in := range ins {
		if in.ID != ids[i] {
			return false
		}
	}
	return true
}

// nextUntil calls Next, folding batches into v, until cond holds; any error
// or the deadline fails the test. It returns the batches it saw.
func nextUntil(t testing.TB, w registry.Watcher, v view, timeout time.Duration, cond func(view) bool) []registry.Batch {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var seen []registry.Batch
	for {
		b, err := w.Next(ctx)
		if err != nil {
			t.Fatalf("Next: got error %v while waiting (view %v)", err, v)
		}
		seen = append(seen, b)
		v.apply(b)
		if cond(v) {
			return seen
		}
	}
}
