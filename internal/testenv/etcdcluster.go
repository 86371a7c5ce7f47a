package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// EtcdCluster is n etcd members, each a child process on its own loopback
// ports, so a test can kill the leader, a follower, or all of them. Every
// member keeps its ports and data directory across Kill/Stop and Start.
// Methods are meant for the test goroutine (they call t.Fatalf).
type EtcdCluster struct {
	t       testing.TB
	members []*EtcdProcess
}

// StartEtcdCluster starts n members (binary from BuildEtcdBinary) with a
// 50 ms heartbeat and a 500 ms election timeout, so a lost leader is
// replaced within about a second, and waits until every member is healthy.
// All members are killed when the test ends.
func StartEtcdCluster(t testing.TB, n int) *EtcdCluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("testenv: etcd cluster of %d members", n)
	}
	bin := BuildEtcdBinary(t)
	c := &EtcdCluster{t: t}
	type ports struct{ client, peer string }
	ps := make([]ports, n)
	var initial []string
	for i := range ps {
		ps[i] = ports{
			client: "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t))),
			peer:   "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t))),
		}
		initial = append(initial, fmt.Sprintf("m%d=%s", i, ps[i].peer))
	}
	// A token unique to this cluster keeps members of concurrent tests apart.
	token := fmt.Sprintf("gatehouse-%d-%d", os.Getpid(), time.Now().UnixNano())
	for i, p := range ps {
		c.members = append(c.members, newEtcdProcess(t, bin, t.TempDir(), fmt.Sprintf("m%d", i), p.client, p.peer,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new", "--initial-cluster-token", token,
			"--heartbeat-interval", "50", "--election-timeout", "500"))
	}
	t.Cleanup(c.killAll)
	c.StartAll()
	return c
}

// Endpoints are the members' client addresses, "127.0.0.1:<port>", by index.
func (c *EtcdCluster) Endpoints() []string {
	eps := make([]string, len(c.members))
	for i, m := range c.members {
		eps[i] = m.Endpoint
	}
	return eps
}

// URL is the registry URL of the whole cluster, "etcd://a,b,c".
func (c *EtcdCluster) URL() string { return "etcd://" + strings.Join(c.Endpoints(), ",") }

// Member returns member i, e.g. for its PID.
func (c *EtcdCluster) Member(i int) *EtcdProcess { return c.members[i] }

// Kill sends SIGKILL to member i's pid and waits until it has exited.
func (c *EtcdCluster) Kill(i int) { c.members[i].Kill() }

// Stop stops member i with SIGTERM (SIGKILL after ten seconds).
func (c *EtcdCluster) Stop(i int) { c.members[i].Stop() }

// Start restarts member i on its ports and data and waits until it is
// healthy, which needs a quorum of running members. A running member is
// left alone.
func (c *EtcdCluster) Start(i int) {
	c.t.Helper()
	c.spawn(i)
	c.waitHealthy(i)
}

// StopAll sends SIGTERM to every member at once and SIGKILL to those still
// running two seconds later: a member that loses its peers while it stops
// can wait up to ten seconds for them and for open client streams, and a
// whole-cluster outage should start when the test says so.
func (c *EtcdCluster) StopAll() {
	atOnce(c.members, func(m *EtcdProcess) { m.stop(2 * time.Second) })
}

// StartAll starts every member that is not running, then waits until all
// are healthy. Members start together because none is healthy without a
// quorum.
func (c *EtcdCluster) StartAll() {
	c.t.Helper()
	for i := range c.members {
		c.spawn(i)
	}
	for i := range c.members {
		c.waitHealthy(i)
	}
}

func (c *EtcdCluster) killAll() { atOnce(c.members, (*EtcdProcess).Kill) }

// Leader returns the index of the member that is leader, as the members
// themselves report it through the maintenance Status API. It waits up to
// etcdReadyTimeout for an election to finish.
func (c *EtcdCluster) Leader() int {
	c.t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.t.Fatalf("testenv: etcd client: %v", err)
	}
	defer cli.Close()
	deadline := time.Now().Add(etcdReadyTimeout)
	for {
		var last error
		for i, m := range c.members {
			if m.PID() == 0 {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			st, err := cli.Status(ctx, m.Endpoint)
			cancel()
			if err != nil {
				last = err
				continue
			}
			if st.Leader != 0 && st.Leader == st.Header.MemberId {
				return i
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("testenv: etcd cluster has no leader after %v (last error: %v)", etcdReadyTimeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// spawn starts member i's process without waiting for it.
func (c *EtcdCluster) spawn(i int) {
	c.t.Helper()
	c.members[i].start(c.t, fmt.Sprintf("etcd member %d", i), c.members[i].command, nil)
}

// waitHealthy waits until member i reports healthy (it has a leader).
func (c *EtcdCluster) waitHealthy(i int) {
	c.t.Helper()
	p := c.members[i]
	done := p.exitedCh()
	if done == nil {
		c.t.Fatalf("testenv: etcd member %d is not running", i)
	}
	if err := waitEtcdHealthy(p.Endpoint, done, etcdReadyTimeout); err != nil {
		c.t.Fatalf("testenv: etcd member %d on %s not healthy: %v\n%s", i, p.Endpoint, err, p.logTail())
	}
}
