package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// etcdReadyTimeout bounds a start; a busy two-core machine is slow.
const etcdReadyTimeout = 30 * time.Second

// Etcd is a single etcd member run in the test's process. Clients reach it
// through a TCPProxy at Endpoint: Stop cuts every connection before shutting
// the member down (etcd otherwise waits about seven seconds for open watch
// streams), and Start brings the member back on the same ports and data,
// so clients reconnect to the same Endpoint and find their data.
type Etcd struct {
	// Endpoint is the client address, "127.0.0.1:<port>".
	Endpoint string

	t          testing.TB
	dir        string
	clientAddr string // the member's own listener, behind the proxy
	peerAddr   string
	proxy      *TCPProxy

	mu sync.Mutex // guards e
	e  *embed.Etcd
}

// StartEtcd starts an embedded member on free loopback ports with its data in
// a temporary directory, with short raft timings and no fsync. It is stopped
// when the test ends.
func StartEtcd(t testing.TB) *Etcd {
	t.Helper()
	clientAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
	e := &Etcd{
		t:          t,
		dir:        t.TempDir(),
		clientAddr: clientAddr,
		peerAddr:   net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t))),
		proxy:      NewTCPProxy(t, clientAddr),
	}
	e.Endpoint = e.proxy.Addr()
	t.Cleanup(e.Stop) // registered after the proxy's, so it runs first
	e.Start()
	return e
}

// Start (re)starts the member and waits until it serves clients. It does
// nothing if the member is running.
func (e *Etcd) Start() {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.e != nil {
		return
	}
	curl := url.URL{Scheme: "http", Host: e.clientAddr}
	purl := url.URL{Scheme: "http", Host: e.peerAddr}
	cfg := embed.NewConfig()
	cfg.Name = "test"
	cfg.Dir = e.dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{curl}, []url.URL{curl}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{purl}, []url.URL{purl}
	cfg.InitialCluster = cfg.Name + "=" + purl.String()
	// A single member elects itself within a few ticks.
	cfg.TickMs, cfg.ElectionMs = 10, 100
	cfg.UnsafeNoFsync = true
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	m, err := embed.StartEtcd(cfg)
	if err != nil {
		e.t.Fatalf("testenv: start etcd: %v", err)
	}
	select {
	case <-m.Server.ReadyNotify():
	case err := <-m.Err():
		m.Close()
		e.t.Fatalf("testenv: etcd on %s failed: %v", e.clientAddr, err)
	case <-time.After(etcdReadyTimeout):
		m.Close()
		e.t.Fatalf("testenv: etcd on %s not ready after %v", e.clientAddr, etcdReadyTimeout)
	}
	e.e = m
	e.proxy.Restore()
}

// Stop cuts every client connection and shuts the member down, keeping its
// data for Start. Clients see a server that went away.
func (e *Etcd) Stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.e == nil {
		return
	}
	e.proxy.Cut()
	e.e.Close()
	<-e.e.Server.StopNotify()
	e.e = nil
}

// etcdBuild builds the etcd binary once per test process; it is package
// state because every test of the process shares the one binary.
var etcdBuild struct {
	once sync.Once
	path string
	err  error
}

// BuildEtcdBinary returns the path of an etcd binary: $GATEHOUSE_ETCD_BIN if
// set, else ./internal/cmd/etcd built once per test process into a fixed
// directory under the system temp dir (replaced atomically, so concurrent
// test processes never run a half-written file). No Go toolchain goes
// through Require; a failing build fails the test.
func BuildEtcdBinary(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("GATEHOUSE_ETCD_BIN"); bin != "" {
		return bin
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, serr := os.Stat(goBin); serr != nil {
			Require(t, "go toolchain", err)
		}
	}
	etcdBuild.once.Do(func() {
		dir := filepath.Join(os.TempDir(), "gatehouse-testenv-"+strconv.Itoa(os.Getuid()))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			etcdBuild.err = err
			return
		}
		tmp, err := os.CreateTemp(dir, "etcd-*.tmp")
		if err != nil {
			etcdBuild.err = err
			return
		}
		tmp.Close()
		cmd := exec.Command(goBin, "build", "-o", tmp.Name(), "github.com/gatehouse/gatehouse/internal/cmd/etcd")
		if out, err := cmd.CombinedOutput(); err != nil {
			os.Remove(tmp.Name())
			etcdBuild.err = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		path := filepath.Join(dir, "etcd")
		if err := os.Rename(tmp.Name(), path); err != nil {
			etcdBuild.err = err
			return
		}
		etcdBuild.path = path
	})
	if etcdBuild.err != nil {
		t.Fatalf("testenv: build etcd: %v", etcdBuild.err)
	}
	return etcdBuild.path
}

// EtcdProcess is a single etcd member run as a child process, so a test can
// SIGKILL it. Its ports and data directory survive Stop/Start and Kill/Start.
type EtcdProcess struct {
	// Endpoint is the client address, "127.0.0.1:<port>".
	Endpoint string

	t    testing.TB
	bin  string
	args []string
	child
}

// StartEtcdProcess runs bin as a single-member cluster on free ports, waits
// until /health reports healthy, and kills it when the test ends.
func StartEtcdProcess(t testing.TB, bin string) *EtcdProcess {
	t.Helper()
	dir := t.TempDir()
	client := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
	peer := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
	p := newEtcdProcess(t, bin, dir, "test", client, peer,
		"--initial-cluster", "test="+peer,
		"--heartbeat-interval", "10", "--election-timeout", "100")
	t.Cleanup(p.Kill)
	p.Start()
	return p
}

// newEtcdProcess returns member name, not started, with its data and log
// under dir, serving on the client and peer URLs; flags say the rest.
func newEtcdProcess(t testing.TB, bin, dir, name, client, peer string, flags ...string) *EtcdProcess {
	args := []string{
		"--name", name,
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
	}
	args = append(args, flags...)
	return &EtcdProcess{
		Endpoint: strings.TrimPrefix(client, "http://"),
		t:        t,
		bin:      bin,
		args:     append(args, "--unsafe-no-fsync", "--log-level", "warn"),
		child:    child{logPath: filepath.Join(dir, "etcd.log")},
	}
}

// Start (re)starts the process and waits until it is healthy. It does
// nothing if the process is running.
func (p *EtcdProcess) Start() {
	p.t.Helper()
	p.start(p.t, "etcd on "+p.Endpoint, p.command, func(exited <-chan struct{}) error {
		return waitEtcdHealthy(p.Endpoint, exited, etcdReadyTimeout)
	})
}

func (p *EtcdProcess) command() *exec.Cmd { return exec.Command(p.bin, p.args...) }

// PID is the process id, or 0 when the process is not running.
func (p *EtcdProcess) PID() int { return p.pid() }

// Stop sends SIGTERM and waits for the process to exit, falling back to
// SIGKILL after ten seconds (etcd waits up to about seven for open streams).
func (p *EtcdProcess) Stop() { p.stop(10 * time.Second) }

// Kill sends SIGKILL to the process's pid and waits for it to exit.
func (p *EtcdProcess) Kill() { p.kill() }

// waitEtcdHealthy polls /health until it reports healthy, the process exits,
// or the timeout passes.
func waitEtcdHealthy(endpoint string, exited <-chan struct{}, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := errors.New("no answer yet")
	for {
		err := etcdHealthy(ctx, endpoint)
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-exited:
			return errors.New("server process exited")
		case <-ctx.Done():
			return fmt.Errorf("after %v: %w", timeout, last)
		case <-tick.C:
		}
	}
}

func etcdHealthy(ctx context.Context, endpoint string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+endpoint+"/health", nil)
	if err != nil {
		return err
	}
	req.Close = true // no idle connection left behind to a server we may kill
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"health":"true"`) {
		return fmt.Errorf("/health: %s %s", resp.Status, body)
	}
	return nil
}
