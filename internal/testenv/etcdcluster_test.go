package testenv

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// A three-member cluster survives the loss of its leader, elects another,
// takes the old leader back, and keeps its data across a full stop.
func TestEtcdClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three etcd processes")
	}
	t0 := time.Now()
	c := StartEtcdCluster(t, 3)
	t.Logf("cluster up in %v", time.Since(t0).Round(time.Millisecond))
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	put := func(k string) {
		t.Helper()
		if _, err := cli.Put(ctx, k, "v"); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	put("/a")

	old := c.Leader()
	t0 = time.Now()
	c.Kill(old)
	if got := c.Leader(); got == old {
		t.Fatalf("leader after killing member %d: got %d, want another", old, got)
	}
	t.Logf("new leader %v after killing leader %d", time.Since(t0).Round(time.Millisecond), old)
	put("/b") // two of three are a quorum
	c.Start(old)

	t0 = time.Now()
	c.StopAll()
	t.Logf("stopped in %v", time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	c.StartAll()
	t.Logf("restarted in %v", time.Since(t0).Round(time.Millisecond))
	resp, err := cli.Get(ctx, "/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	if resp.Count != 2 {
		t.Fatalf("got %d keys after a full restart, want 2", resp.Count)
	}
	if got, want := c.URL(), "etcd://"+c.Endpoints()[0]+","+c.Endpoints()[1]+","+c.Endpoints()[2]; got != want {
		t.Fatalf("URL: got %q, want %q", got, want)
	}
}
