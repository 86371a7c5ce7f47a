package fault

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/internal/regurl"
	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/registry"
)

// service is the one service every scenario routes to.
const service = "echo"

// ttl is the lease TTL / session timeout of the gateway and the sidecars:
// short, so that expiries fit in a test, and within ZooKeeper's bounds for
// tickTime=200 (400 ms to 4 s).
const ttl = "2s"

func addr(t *testing.T) string { return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) }

// rig is a gateway and its echo backends, each registered by a sidecar.
type rig struct {
	t                 *testing.T
	gw                *testenv.Proc
	gwAddr, adminAddr string
	backends          []*backend
	admin             *http.Client
}

// backend is an echo process and the sidecar that registers it. Restarts
// reuse the name (the instance ID) and the port.
type backend struct {
	r             *rig
	name, addr    string
	regURL        string // the sidecar's registry, maybe through a proxy
	echo, sidecar *testenv.Proc
}

// newRig starts a gateway on regURL, with extra flags, and waits until it
// is ready.
func newRig(t *testing.T, regURL string, extra ...string) *rig {
	t.Helper()
	r := &rig{t: t, gwAddr: addr(t), adminAddr: addr(t),
		admin: &http.Client{Timeout: time.Second}}
	args := []string{"gateway", "--listen", r.gwAddr, "--admin", r.adminAddr,
		"--registry", regURL, "--registry-ttl", ttl, "--shutdown-timeout", "5s"}
	r.gw = start(t, "gateway", append(args, extra...)...)
	testenv.WaitFor(t, 30*time.Second, "gateway ready", func() bool { return r.readyz() == http.StatusOK })
	return r
}

// addBackends starts echo backends named by names, each with a sidecar on
// regURL, and waits until the gateway lists all of them.
func (r *rig) addBackends(regURL string, names ...string) {
	r.t.Helper()
	for _, n := range names {
		b := &backend{r: r, name: n, addr: addr(r.t), regURL: regURL}
		b.startEcho()
		b.startSidecar()
		r.backends = append(r.backends, b)
	}
	r.waitListed(30*time.Second, r.names()...)
}

func (r *rig) names() []string {
	var ns []string
	for _, b := range r.backends {
		ns = append(ns, b.name)
	}
	return ns
}

func (b *backend) startEcho() {
	b.echo = start(b.r.t, "echo-"+b.name, "echo", "--listen", b.addr, "--name", b.name)
}

func (b *backend) startSidecar() {
	b.sidecar = start(b.r.t, "sidecar-"+b.name, "sidecar", "--registry", b.regURL,
		"--service", service, "--id", b.name, "--address", "http://"+b.addr,
		"--health", "http://"+b.addr+"/healthz", "--ttl", ttl,
		"--interval", "100ms", "--fall", "2", "--drain", "1s")
}

// url is where the load goes: the gateway's discovery route of the service.
func (r *rig) url() string { return "http://" + r.gwAddr + "/" + service + "/load" }

// readyz returns the status of the gateway's /readyz, 0 if unreachable.
func (r *rig) readyz() int {
	code, _ := r.ready()
	return code
}

// readyStatus is the registry part of /readyz's answer.
type readyStatus struct {
	State   string `json:"state"` // SYNCED, STALE, …
	Skipped uint64 `json:"skipped_records"`
}

// ready returns /readyz's status code and the registry state it reports.
func (r *rig) ready() (int, readyStatus) {
	var body struct {
		Registry readyStatus `json:"registry"`
	}
	resp, err := r.admin.Get("http://" + r.adminAddr + "/readyz")
	if err != nil {
		return 0, body.Registry
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&body) // an older gateway has no registry part
	return resp.StatusCode, body.Registry
}

// listed returns the instance IDs /admin/services shows for the service,
// sorted.
func (r *rig) listed() ([]string, error) {
	resp, err := r.admin.Get("http://" + r.adminAddr + "/admin/services")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var svcs []struct {
		Name      string `json:"name"`
		Instances []struct {
			ID string `json:"id"`
		} `json:"instances"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&svcs); err != nil {
		return nil, fmt.Errorf("admin/services: %s: %w", resp.Status, err)
	}
	ids := []string{}
	for _, s := range svcs {
		if s.Name != service {
			continue
		}
		for _, in := range s.Instances {
			ids = append(ids, in.ID)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// waitListed waits until the gateway lists exactly ids and returns how
// long that took.
func (r *rig) waitListed(timeout time.Duration, ids ...string) time.Duration {
	r.t.Helper()
	want := slices.Sorted(slices.Values(ids))
	return testenv.WaitFor(r.t, timeout, fmt.Sprintf("admin/services to list %v", want), func() bool {
		got, err := r.listed()
		return err == nil && slices.Equal(got, want)
	})
}

// adminState is what the gateway's admin API said at one moment.
type adminState struct {
	at    time.Time
	ready int    // /readyz status
	state string // registry state in /readyz
	ids   string // the listed IDs, or "error"
}

// monitor records every change of /readyz and of the listed instances, so
// a scenario can say when the gateway noticed a fault and its recovery.
type monitor struct {
	r    *rig
	stop chan struct{} // closed by halt, once
	once sync.Once
	done chan struct{} // closed when run has returned

	mu     sync.Mutex // guards states
	states []adminState
}

func (r *rig) startMonitor() *monitor {
	m := &monitor{r: r, stop: make(chan struct{}), done: make(chan struct{})}
	go m.run()
	r.t.Cleanup(m.halt)
	return m
}

func (m *monitor) run() {
	defer close(m.done)
	for {
		code, st := m.r.ready()
		s := adminState{ready: code, state: st.State}
		ids, err := m.r.listed()
		if err != nil {
			s.ids = "error"
		} else {
			s.ids = strings.Join(ids, ",")
		}
		s.at = time.Now()
		m.mu.Lock()
		if n := len(m.states); n == 0 || m.states[n-1].ready != s.ready ||
			m.states[n-1].state != s.state || m.states[n-1].ids != s.ids {
			m.states = append(m.states, s)
		}
		m.mu.Unlock()
		select {
		case <-m.stop:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (m *monitor) halt() {
	m.once.Do(func() { close(m.stop) })
	<-m.done
}

// report lists the changes relative to t0.
func (m *monitor) report(t0 time.Time) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	for _, s := range m.states {
		fmt.Fprintf(&b, "%9.3fs readyz %d %s, %s [%s]\n", s.at.Sub(t0).Seconds(), s.ready, s.state, service, s.ids)
	}
	return b.String()
}

// after returns how long after t0 the admin API first showed a state that
// satisfies ok (0 if the state at t0 already did), and whether it has.
func (m *monitor) after(t0 time.Time, ok func(adminState) bool) (time.Duration, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, s := range m.states {
		if s.at.Before(t0) && (i+1 < len(m.states) && m.states[i+1].at.Before(t0)) {
			continue // superseded before t0
		}
		if ok(s) {
			return max(0, s.at.Sub(t0)), true
		}
	}
	return 0, false
}

// recovery logs how long after t0 /readyz answered 200 with the registry
// SYNCED and the admin API listed exactly ids.
func (m *monitor) recovery(t *testing.T, what string, t0 time.Time, ids ...string) {
	t.Helper()
	want := strings.Join(slices.Sorted(slices.Values(ids)), ",")
	ready, okR := m.after(t0, func(s adminState) bool { return s.ready == http.StatusOK && s.state == "SYNCED" })
	listed, okL := m.after(t0, func(s adminState) bool { return s.ids == want })
	t.Logf("%s: /readyz 200 SYNCED after %s, /admin/services [%s] after %s",
		what, since(ready, okR), want, since(listed, okL))
}

func since(d time.Duration, ok bool) string {
	if !ok {
		return "never"
	}
	return d.Round(time.Millisecond).String()
}

// probe registers an instance straight into the registry (pointing at a
// live backend, so traffic to it succeeds) and removes it again, returning
// how long the gateway took to list it and to drop it, measured from each
// write's return: proof that its watch follows changes. An error means the
// gateway did not follow within 10 s.
func (r *rig) probe(regURL, id string, to *backend) (up, down time.Duration, err error) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	spec, err := regurl.Parse(regURL)
	if err != nil {
		r.t.Fatal(err)
	}
	reg, err := regurl.Open(ctx, spec, regurl.Options{TTL: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		r.t.Fatalf("probe: open %s: %v", regURL, err)
	}
	defer reg.Close()
	in := registry.Instance{Service: service, ID: id, Address: "http://" + to.addr}
	if _, err := reg.Register(ctx, in); err != nil {
		r.t.Fatalf("probe: register: %v", err)
	}
	has := func() bool {
		ids, err := r.listed()
		return err == nil && slices.Contains(ids, id)
	}
	if up, err = poll(10*time.Second, has); err != nil {
		return up, 0, fmt.Errorf("gateway did not list probe %s: %w", id, err)
	}
	if err := reg.Deregister(ctx, in); err != nil {
		r.t.Fatalf("probe: deregister: %v", err)
	}
	if down, err = poll(10*time.Second, func() bool { return !has() }); err != nil {
		return up, down, fmt.Errorf("gateway did not drop probe %s: %w", id, err)
	}
	return up, down, nil
}

// poll is waitFor that reports a timeout instead of failing the test.
func poll(timeout time.Duration, cond func() bool) (time.Duration, error) {
	t0 := time.Now()
	for !cond() {
		if time.Since(t0) > timeout {
			return time.Since(t0), fmt.Errorf("not within %v", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(t0), nil
}

// probeMark runs probe and puts its result on the load's timeline; a
// gateway that no longer follows the registry fails the test.
func (r *rig) probeMark(l *load, regURL, id string, to *backend) {
	r.t.Helper()
	up, down, err := r.probe(regURL, id, to)
	if err != nil {
		l.Mark("probe " + id + ": " + err.Error())
		r.t.Fatalf("PRODUCT: the gateway stopped following the registry: %v\n%s", err, r.warnings())
	}
	l.Mark(fmt.Sprintf("probe %s listed after %v, dropped after %v", id,
		up.Round(time.Millisecond), down.Round(time.Millisecond)))
}

// warnings returns the gateway's warnings, errors and 5xx access-log
// lines (with the upstream error), for failure reports; every process's
// last lines are logged as well when a test fails.
func (r *rig) warnings() string {
	return fmt.Sprintf("--- gateway (pid %d) warnings, errors, 5xx ---\n%s", r.gw.Pid(),
		lines(r.gw, 40, `"level":"warn"`, `"level":"error"`, "panic", `"status":5`))
}

// registrations says how often each running sidecar registered and lost
// its registration, from its log: how the sidecars lived through a fault.
func (r *rig) registrations() string {
	var parts []string
	for _, b := range r.backends {
		reg, lost := b.registrations()
		parts = append(parts, fmt.Sprintf("%s registered %d, lost %d", b.name, reg, lost))
	}
	return strings.Join(parts, "; ")
}

func (b *backend) registrations() (registered, lost int) {
	out := b.sidecar.Output()
	return strings.Count(out, `"msg":"registered"`), strings.Count(out, "registration lost")
}

// waitReregistered waits until every sidecar that lost its registration
// has registered again, and fails the test if one does not within timeout.
func (r *rig) waitReregistered(l *load, timeout time.Duration) {
	r.t.Helper()
	d, err := poll(timeout, func() bool {
		for _, b := range r.backends {
			if reg, lost := b.registrations(); reg <= lost {
				return false
			}
		}
		return true
	})
	if err != nil {
		l.Mark("sidecars not registered again: " + r.registrations())
		r.t.Fatalf("PRODUCT: a sidecar did not register again %v after losing its registration: %s\n%s",
			timeout, r.registrations(), r.warnings())
	}
	l.Mark(fmt.Sprintf("every sidecar registered %v later (%s)", d.Round(time.Millisecond), r.registrations()))
}
