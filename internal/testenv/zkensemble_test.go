package testenv

import (
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// quiet drops the client's reconnect chatter, expected while servers die.
type quiet struct{}

func (quiet) Printf(string, ...any) {}

func TestQuorumErr(t *testing.T) {
	cases := []struct {
		name  string
		modes []string
		ok    bool
	}{
		{"serving", []string{"follower", "leader", "follower"}, true},
		{"one down", []string{"down", "leader", "follower"}, true},
		{"no leader", []string{"follower", "follower", "down"}, false},
		{"one not serving", []string{"", "leader", "follower"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := quorumErr(tc.modes); (err == nil) != tc.ok {
				t.Errorf("got %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// A three-server ensemble survives the loss of its leader, elects another,
// takes the old leader back, and keeps its data across a full stop.
func TestZooKeeperEnsembleFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three ZooKeeper servers")
	}
	t0 := time.Now()
	e := StartZooKeeperEnsemble(t, 3)
	t.Logf("ensemble up in %v", time.Since(t0).Round(time.Millisecond))
	conn, _, err := zk.Connect(e.Addrs(), 4*time.Second, zk.WithLogger(quiet{}))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close()
	// The client retries across servers; a write needs a quorum.
	create := func(path string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, err := conn.Create(path, nil, 0, zk.WorldACL(zk.PermAll))
			if err == nil || err == zk.ErrNodeExists {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("create %s: %v", path, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	create("/a")

	old := e.Leader()
	t0 = time.Now()
	e.Kill(old)
	if got := e.Leader(); got == old {
		t.Fatalf("leader after killing server %d: got %d, want another", old, got)
	}
	t.Logf("new leader %v after killing leader %d", time.Since(t0).Round(time.Millisecond), old)
	create("/b")
	e.Start(old)

	t0 = time.Now()
	e.StopAll()
	t.Logf("stopped in %v", time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	e.StartAll()
	t.Logf("restarted in %v", time.Since(t0).Round(time.Millisecond))
	deadline := time.Now().Add(20 * time.Second)
	for {
		kids, _, err := conn.Children("/")
		if err == nil && len(kids) == 3 { // a, b, zookeeper
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("children of / after a full restart: got %v (%v), want a, b, zookeeper", kids, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
