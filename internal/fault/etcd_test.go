package fault

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// Scenario 3: a three-member etcd cluster loses its leader, then a
// follower (each restarted before the next fault, so a quorum remains),
// then every member for ten seconds. The gateway keeps its last good set
// while etcd is unreachable and the sidecars re-register when their leases
// are lost: no request may fail.
func TestEtcdClusterFaults(t *testing.T) {
	scenario(t)
	c := testenv.StartEtcdCluster(t, 3)
	r := newRig(t, c.URL())
	r.addBackends(c.URL(), "a", "b", "c")
	m := r.startMonitor()
	l := startLoad(t, loadConfig{URL: r.url()})
	hold(time.Second)

	lead := c.Leader()
	l.Mark(fmt.Sprintf("SIGKILL etcd leader m%d", lead))
	t0 := time.Now()
	c.Kill(lead)
	next := c.Leader()
	l.Mark(fmt.Sprintf("m%d leads after %v", next, time.Since(t0).Round(time.Millisecond)))
	hold(time.Second)
	r.probeMark(l, c.URL(), "probe1", r.backends[0])
	c.Start(lead)
	l.Mark(fmt.Sprintf("m%d back", lead))

	follower := (c.Leader() + 1) % 3
	l.Mark(fmt.Sprintf("SIGKILL etcd follower m%d", follower))
	c.Kill(follower)
	hold(time.Second)
	r.probeMark(l, c.URL(), "probe2", r.backends[0])
	c.Start(follower)
	l.Mark(fmt.Sprintf("m%d back", follower))

	l.Mark("SIGTERM all etcd members")
	t0 = time.Now()
	c.StopAll()
	l.Mark(fmt.Sprintf("all members exited after %v; down for 10s", time.Since(t0).Round(time.Millisecond)))
	hold(10 * time.Second) // the outage itself
	t0 = time.Now()
	c.StartAll()
	restored := time.Now()
	l.Mark(fmt.Sprintf("all members healthy after %v", restored.Sub(t0).Round(time.Millisecond)))
	r.waitReregistered(l, 20*time.Second)
	d := r.waitListed(30*time.Second, "a", "b", "c")
	l.Mark(fmt.Sprintf("gateway lists a,b,c %v later", d.Round(time.Millisecond)))
	r.probeMark(l, c.URL(), "probe3", r.backends[0])
	hold(time.Second)

	res := l.Stop()
	m.halt()
	t.Logf("etcd cluster faults:\n%s", res.Report())
	t.Logf("admin API, from the load's start:\n%s", m.report(res.Start))
	m.recovery(t, "from etcd healthy again", restored, "a", "b", "c")
	t.Logf("sidecars: %s", r.registrations())
	checkRate(t, res)
	if g, p := res.FailedOf(http.MethodGet), res.FailedOf(http.MethodPost); g != 0 || p != 0 {
		t.Fatalf("PRODUCT: etcd cluster faults lost %d GET and %d POST, want 0 and 0 (timeline above)\n%s",
			g, p, r.warnings())
	}
}
