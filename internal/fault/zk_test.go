package fault

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// Scenario 4a: a three-server ZooKeeper ensemble loses its leader (and gets
// it back), then every server for ten seconds. No request may fail.
func TestZooKeeperEnsembleFaults(t *testing.T) {
	scenario(t)
	e := testenv.StartZooKeeperEnsemble(t, 3)
	r := newRig(t, e.URL())
	r.addBackends(e.URL(), "a", "b", "c")
	m := r.startMonitor()
	l := startLoad(t, loadConfig{URL: r.url()})
	hold(time.Second)

	lead := e.Leader()
	l.Mark(fmt.Sprintf("SIGKILL ZooKeeper leader %d", lead))
	t0 := time.Now()
	e.Kill(lead)
	next := e.Leader()
	l.Mark(fmt.Sprintf("server %d leads after %v", next, time.Since(t0).Round(time.Millisecond)))
	hold(time.Second)
	r.probeMark(l, e.URL(), "probe1", r.backends[0])
	e.Start(lead)
	l.Mark(fmt.Sprintf("server %d back", lead))

	l.Mark("SIGTERM all ZooKeeper servers")
	t0 = time.Now()
	e.StopAll()
	l.Mark(fmt.Sprintf("all servers exited after %v; down for 10s", time.Since(t0).Round(time.Millisecond)))
	hold(10 * time.Second) // the outage itself
	t0 = time.Now()
	e.StartAll()
	restored := time.Now()
	l.Mark(fmt.Sprintf("quorum of all servers after %v", restored.Sub(t0).Round(time.Millisecond)))
	r.waitReregistered(l, 20*time.Second)
	d := r.waitListed(30*time.Second, "a", "b", "c")
	l.Mark(fmt.Sprintf("gateway lists a,b,c %v later", d.Round(time.Millisecond)))
	r.probeMark(l, e.URL(), "probe2", r.backends[0])
	hold(time.Second)

	res := l.Stop()
	m.halt()
	t.Logf("ZooKeeper ensemble faults:\n%s", res.Report())
	t.Logf("admin API, from the load's start:\n%s", m.report(res.Start))
	m.recovery(t, "from a ZooKeeper quorum again", restored, "a", "b", "c")
	t.Logf("sidecars: %s", r.registrations())
	t.Logf("sessions the ensemble expired: %d", e.LogCount("Expiring session"))
	checkRate(t, res)
	if g, p := res.FailedOf(http.MethodGet), res.FailedOf(http.MethodPost); g != 0 || p != 0 {
		t.Fatalf("PRODUCT: ZooKeeper ensemble faults lost %d GET and %d POST, want 0 and 0 (timeline above)\n%s",
			g, p, r.warnings())
	}
}

// cutLonger is how long a partition lasts to expire a session: twice the
// 2 s session timeout, so the ensemble expires it whatever its tick phase.
const cutLonger = 4 * time.Second

// Scenario 4b: the gateway's ZooKeeper session, then a sidecar's, expires
// behind a cut proxy. The gateway serves its last good set while cut off
// and re-lists on a new session; the sidecar's record goes with its
// session and comes back when it re-registers. No request may fail.
func TestZooKeeperSessionExpiry(t *testing.T) {
	scenario(t)
	e := testenv.StartZooKeeperEnsemble(t, 3)
	proxied := func() (url string, ps []*testenv.TCPProxy) {
		var addrs []string
		for _, a := range e.Addrs() {
			p := testenv.NewTCPProxy(t, a)
			ps = append(ps, p)
			addrs = append(addrs, p.Addr())
		}
		return "zk://" + strings.Join(addrs, ","), ps
	}
	cut := func(ps []*testenv.TCPProxy) {
		for _, p := range ps {
			p.Cut()
		}
	}
	restore := func(ps []*testenv.TCPProxy) {
		for _, p := range ps {
			p.Restore()
		}
	}
	gwURL, gwProxies := proxied()
	r := newRig(t, gwURL)
	scURL, scProxies := proxied()
	r.addBackends(scURL, "a")
	r.addBackends(e.URL(), "b", "c")
	m := r.startMonitor()
	l := startLoad(t, loadConfig{URL: r.url()})
	hold(time.Second)

	expired := e.LogCount("Expiring session")
	l.Mark(fmt.Sprintf("cut the gateway off ZooKeeper for %v", cutLonger))
	cut(gwProxies)
	hold(cutLonger)
	restore(gwProxies)
	restored := time.Now()
	l.Mark("gateway's connections restored")
	d := testenv.WaitFor(t, 20*time.Second, "the gateway SYNCED again", func() bool {
		code, st := r.ready()
		return code == http.StatusOK && st.State == "SYNCED"
	})
	l.Mark(fmt.Sprintf("gateway SYNCED after %v", d.Round(time.Millisecond)))
	r.probeMark(l, e.URL(), "probe1", r.backends[1])
	if n := e.LogCount("Expiring session"); n <= expired {
		t.Fatalf("test: the gateway's session did not expire during a %v cut (ensemble logs)", cutLonger)
	}
	m.recovery(t, "from the gateway's connections restored", restored, "a", "b", "c")

	expired = e.LogCount("Expiring session")
	l.Mark(fmt.Sprintf("cut sidecar-a off ZooKeeper for %v", cutLonger))
	t0 := time.Now()
	cut(scProxies)
	dropped := testenv.WaitFor(t, 10*time.Second, "the gateway to drop a", func() bool {
		ids, err := r.listed()
		return err == nil && !slices.Contains(ids, "a")
	})
	l.Mark(fmt.Sprintf("gateway dropped a after %v", dropped.Round(time.Millisecond)))
	hold(cutLonger - time.Since(t0))
	restore(scProxies)
	t0 = time.Now()
	l.Mark("sidecar-a's connections restored")
	// The sidecar learns of the expiry only when it reconnects.
	again := func() bool {
		reg, lost := r.backends[0].registrations()
		return lost > 0 && reg > lost
	}
	if _, err := poll(20*time.Second, again); err != nil {
		t.Fatalf("PRODUCT: sidecar-a did not register again after its session expired: %s\n%s",
			r.registrations(), lines(r.backends[0].sidecar, 10))
	}
	r.waitListed(20*time.Second, "a", "b", "c")
	l.Mark(fmt.Sprintf("gateway lists a again %v after the restore", time.Since(t0).Round(time.Millisecond)))
	if n := e.LogCount("Expiring session"); n <= expired {
		t.Fatalf("test: sidecar-a's session did not expire during a %v cut (ensemble logs)", cutLonger)
	}
	hold(time.Second)

	res := l.Stop()
	m.halt()
	t.Logf("ZooKeeper session expiry:\n%s", res.Report())
	t.Logf("admin API, from the load's start:\n%s", m.report(res.Start))
	t.Logf("gateway: %s", lines(r.gw, 5, "session"))
	t.Logf("sidecars: %s", r.registrations())
	checkRate(t, res)
	if g, p := res.FailedOf(http.MethodGet), res.FailedOf(http.MethodPost); g != 0 || p != 0 {
		t.Fatalf("PRODUCT: ZooKeeper session expiry lost %d GET and %d POST, want 0 and 0 (timeline above)\n%s",
			g, p, r.warnings())
	}
}
