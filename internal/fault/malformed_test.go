package fault

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/registry"
)

// malformed are records no gateway may route by, keyed by instance ID.
// Each points at a dead port, so one routed by mistake fails requests.
var malformed = map[string]string{
	"bad-json":    `{"v":1,"service":"echo","id":"bad-json","address":`,
	"bad-version": `{"v":99,"service":"echo","id":"bad-version","address":"http://127.0.0.1:1"}`,
	"bad-address": `{"v":1,"service":"echo","id":"bad-address","address":"ftp://127.0.0.1:1"}`,
	"bad-weight":  `{"v":1,"service":"echo","id":"bad-weight","address":"http://127.0.0.1:1","weight":-5}`,
	"bad-key":     `{"v":1,"service":"echo","id":"elsewhere","address":"http://127.0.0.1:1"}`,
	"empty":       ``,
}

// rawRegistry writes records straight into a registry, bypassing the
// codec's validation, as a buggy or foreign writer would.
type rawRegistry interface {
	put(id, value string) error
	del(id string) error
}

type etcdRaw struct{ cli *clientv3.Client }

func (e etcdRaw) key(id string) string {
	return registry.Layout{Root: registry.DefaultRoot}.Key(service, id)
}

func (e etcdRaw) put(id, value string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := e.cli.Put(ctx, e.key(id), value)
	return err
}

func (e etcdRaw) del(id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := e.cli.Delete(ctx, e.key(id))
	return err
}

type zkRaw struct{ conn *zk.Conn }

func (z zkRaw) path(id string) string {
	return registry.Layout{Root: registry.DefaultRoot}.Key(service, id)
}

func (z zkRaw) put(id, value string) error {
	_, err := z.conn.Create(z.path(id), []byte(value), 0, zk.WorldACL(zk.PermAll))
	return err
}

func (z zkRaw) del(id string) error { return z.conn.Delete(z.path(id), -1) }

// quiet drops the ZooKeeper driver's log lines.
type quiet struct{}

func (quiet) Printf(string, ...any) {}

// openRaw connects a raw writer to a single-server registry URL.
func openRaw(t *testing.T, regURL string) rawRegistry {
	t.Helper()
	kind, addr, _ := strings.Cut(regURL, "://")
	switch kind {
	case "etcd":
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{addr}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		return etcdRaw{cli}
	case "zk":
		conn, _, err := zk.Connect([]string{addr}, 4*time.Second, zk.WithLogger(quiet{}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(conn.Close)
		return zkRaw{conn}
	}
	t.Fatalf("no raw writer for %s", regURL)
	return nil
}

// Scenario 6: malformed records written into the registry beside good ones.
// The running gateway skips them and keeps following changes, a gateway
// started while they are there lists only the good instances, and no
// request fails.
func TestMalformedRecord(t *testing.T) {
	scenario(t)
	for _, kind := range []string{"etcd", "zk"} {
		t.Run(kind, func(t *testing.T) { testMalformedRecord(t, kind) })
	}
}

func testMalformedRecord(t *testing.T, kind string) {
	regURL := startRegistry(t, kind)
	r := newRig(t, regURL)
	r.addBackends(regURL, "a", "b", "c")
	raw := openRaw(t, regURL)
	m := r.startMonitor()
	l := startLoad(t, loadConfig{URL: r.url()})
	hold(time.Second)

	l.Mark(fmt.Sprintf("write %d malformed records", len(malformed)))
	for id, v := range malformed {
		if err := raw.put(id, v); err != nil {
			t.Fatalf("write %s: %v", id, err)
		}
	}
	hold(time.Second)
	r.probeMark(l, regURL, "probe1", r.backends[0])
	if got, err := r.listed(); err != nil || strings.Join(got, ",") != "a,b,c" {
		t.Fatalf("PRODUCT: with malformed records beside a,b,c the gateway lists %v (%v), want [a b c]", got, err)
	}

	// A gateway that starts now meets them in its first full listing.
	l.Mark("start a second gateway")
	r2 := newRig(t, regURL)
	d := r2.waitListed(10*time.Second, "a", "b", "c")
	res2 := startLoad(t, loadConfig{URL: r2.url(), Duration: 2 * time.Second}).Wait()
	l.Mark(fmt.Sprintf("second gateway listed a,b,c %v after ready, served %v", d.Round(time.Millisecond), res2.Served))
	_, st := r.ready()
	_, st2 := r2.ready()

	for id := range malformed {
		if err := raw.del(id); err != nil {
			t.Fatalf("delete %s: %v", id, err)
		}
	}
	l.Mark("malformed records deleted")
	hold(time.Second)
	res := l.Stop()
	m.halt()
	t.Logf("malformed records on %s:\n%s", kind, res.Report())
	t.Logf("second gateway:\n%s", res2.Report())
	t.Logf("admin API, from the load's start:\n%s", m.report(res.Start))
	t.Logf("skipped_records in /readyz: first gateway %d, second %d", st.Skipped, st2.Skipped)
	checkRate(t, res)
	g, p := res.FailedOf(http.MethodGet)+res2.FailedOf(http.MethodGet), res.FailedOf(http.MethodPost)+res2.FailedOf(http.MethodPost)
	if g != 0 || p != 0 {
		t.Fatalf("PRODUCT: malformed records on %s: %d GET and %d POST failed, want 0 and 0 (timelines above)\n%s",
			kind, g, p, r.warnings())
	}
}
