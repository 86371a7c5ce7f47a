package fault

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/registry"
)

// Scenario 5: the gateway restarted while the registry is down serves from
// its snapshot file, and reconciles when the registry returns.
func TestRestartWithRegistryDown(t *testing.T) {
	scenario(t)
	for _, kind := range []string{"etcd", "zk"} {
		t.Run(kind, func(t *testing.T) { testRestartWithRegistryDown(t, kind) })
	}
}

func testRestartWithRegistryDown(t *testing.T, kind string) {
	var regURL string
	var stopReg, startReg func()
	switch kind {
	case "etcd":
		e := testenv.StartEtcdProcess(t, testenv.BuildEtcdBinary(t))
		regURL, stopReg, startReg = "etcd://"+e.Endpoint, e.Stop, e.Start
	case "zk":
		z := testenv.StartZooKeeper(t)
		regURL, stopReg, startReg = "zk://"+z.Addr, z.Stop, z.Start
	}
	snap := filepath.Join(t.TempDir(), "routes.json")
	r := newRig(t, regURL, "--snapshot-file", snap)
	r.addBackends(regURL, "a", "b", "c")
	testenv.WaitFor(t, 10*time.Second, "the snapshot file to hold a, b, c", func() bool {
		data, err := os.ReadFile(snap)
		return err == nil && strings.Contains(string(data), `"id":"c"`) && strings.Contains(string(data), `"id":"a"`)
	})

	stopReg()
	r.gw.Stop(20 * time.Second)
	t0 := time.Now()
	r2 := newRig(t, regURL, "--snapshot-file", snap)
	readyIn := time.Since(t0)
	if _, st := r2.ready(); st.State != "STALE" {
		t.Fatalf("PRODUCT: restarted gateway with the registry down reports %q, want STALE (restored)", st.State)
	}
	r2.waitListed(5*time.Second, "a", "b", "c")
	l := startLoad(t, loadConfig{URL: r2.url()})
	hold(3 * time.Second)
	l.Mark("registry back")
	startReg()
	testenv.WaitFor(t, 30*time.Second, "SYNCED after the registry returned", func() bool {
		_, st := r2.ready()
		return st.State == "SYNCED"
	})
	r2.waitListed(15*time.Second, "a", "b", "c")
	hold(time.Second)
	res := l.Stop()
	t.Logf("restart with %s down: ready from the snapshot file %v after start\n%s",
		kind, readyIn.Round(time.Millisecond), res.Report())
	checkRate(t, res)
	for _, n := range []string{"a", "b", "c"} {
		if res.Served[n] == 0 {
			t.Fatalf("PRODUCT: %s served nothing after the restart (served %v)", n, res.Served)
		}
	}
	if g, p := res.FailedOf(http.MethodGet), res.FailedOf(http.MethodPost); g != 0 || p != 0 {
		t.Fatalf("PRODUCT: restart with the registry down: %d GET and %d POST failed, want 0\n%s", g, p, r2.warnings())
	}
}

// Scenario 7: one update removes 80% of a service's instances (a bad bulk
// delete; the backends are alive). The panic floor holds it, traffic keeps
// going to all five, and the removal applies after the confirm delay.
func TestPanicFloor(t *testing.T) {
	scenario(t)
	e := testenv.StartEtcdProcess(t, testenv.BuildEtcdBinary(t))
	regURL := "etcd://" + e.Endpoint
	r := newRig(t, regURL, "--panic-confirm-delay", "4s")
	r.addBackends(regURL, "a", "b", "c", "d", "e")
	l := startLoad(t, loadConfig{URL: r.url()})
	hold(time.Second)

	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	layout := registry.Layout{Root: registry.DefaultRoot}
	var ops []clientv3.Op
	for _, id := range []string{"a", "b", "c", "d"} {
		ops = append(ops, clientv3.OpDelete(layout.Key(service, id)))
	}
	l.Mark("delete a, b, c, d in one transaction")
	t0 := time.Now()
	if _, err := cli.Txn(context.Background()).Then(ops...).Commit(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "the removal held", func() bool { return heldRemoval(r) == 4 })
	if got, _ := r.listed(); len(got) != 5 {
		t.Fatalf("PRODUCT: while the removal is held the gateway lists %v, want all five", got)
	}
	since := time.Now()
	hold(time.Second)
	for _, n := range []string{"a", "e"} {
		if !l.Seen(n, since) {
			t.Fatalf("PRODUCT: %s got no traffic while the removal was held", n)
		}
	}
	r.waitListed(10*time.Second, "e")
	applied := time.Since(t0)
	l.Mark("removal applied")
	hold(time.Second)
	res := l.Stop()
	t.Logf("panic floor: 4 of 5 removed in one update, applied after %v (confirm delay 4s)\n%s",
		applied.Round(time.Millisecond), res.Report())
	checkRate(t, res)
	if applied < 3*time.Second {
		t.Fatalf("PRODUCT: the removal applied after %v, want it held about 4s", applied)
	}
	if g, p := res.FailedOf(http.MethodGet), res.FailedOf(http.MethodPost); g != 0 || p != 0 {
		t.Fatalf("PRODUCT: panic floor: %d GET and %d POST failed, want 0\n%s", g, p, r.warnings())
	}
}

// heldRemoval reads the panic floor's hold of the service from
// /admin/registry.
func heldRemoval(r *rig) int {
	resp, err := r.admin.Get("http://" + r.adminAddr + "/admin/registry")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var v struct {
		Services map[string]struct {
			HeldRemoval int `json:"held_removal"`
		} `json:"services"`
	}
	if json.NewDecoder(resp.Body).Decode(&v) != nil {
		return -1
	}
	return v.Services[service].HeldRemoval
}
