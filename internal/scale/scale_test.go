package scale

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/discovery"
	"github.com/gatehouse/gatehouse/internal/regurl"
	"github.com/gatehouse/gatehouse/internal/testenv"
	"github.com/gatehouse/gatehouse/loadbalance"
	"github.com/gatehouse/gatehouse/registry"
)

const (
	services    = 1000
	perService  = 10
	changeLoops = 200
)

func BenchmarkScale(b *testing.B) {
	for _, kind := range []string{"etcd", "zk"} {
		b.Run(kind, func(b *testing.B) { benchScale(b, kind) })
	}
}

func benchScale(b *testing.B, kind string) {
	var url string
	switch kind {
	case "etcd":
		url = "etcd://" + testenv.StartEtcd(b).Endpoint
	case "zk":
		url = "zk://" + testenv.StartZooKeeper(b).Addr
	}
	spec, err := regurl.Parse(url)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	reg, err := regurl.Open(ctx, spec, regurl.Options{TTL: 30 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer reg.Close()
	preload(b, reg)

	// Start to fully synced, and RSS, of a gateway process.
	bin := gatehouseBinary(b)
	admin := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(b))
	t0 := time.Now()
	cmd := exec.Command(bin, "gateway", "--registry", url, "--listen", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(b)),
		"--admin", admin, "--access-log=false", "--log-level", "error", "--advertise-admin", "none")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGKILL); cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for !synced(admin) {
		if time.Now().After(deadline) {
			b.Fatal("gateway not synced with 1000 services within 60s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	sync := time.Since(t0)
	rss := rssMB(cmd.Process.Pid)

	// One change → its balancer updated, in-process, with the whole
	// registry watched.
	w, err := regurl.Open(ctx, spec, regurl.Options{TTL: 30 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	subj := discovery.NewSubject(w.Watcher(), discovery.Options{})
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go subj.Run(sctx)
	<-subj.Synced()
	lb, _ := loadbalance.New("round_robin", loadbalance.Options{})
	bal := &notifying{Balancer: lb, updated: make(chan int, 16)}
	defer subj.Subscribe("svc-0500", bal)()
	var lat, watch []time.Duration // Register called / returned → balancer updated
	b.ResetTimer()
	for i := 0; i < changeLoops; i++ {
		in := registry.Instance{Service: "svc-0500", ID: fmt.Sprintf("extra-%d", i), Address: "http://127.0.0.1:1"}
		start := time.Now()
		if _, err := reg.Register(ctx, in); err != nil {
			b.Fatal(err)
		}
		registered := time.Now()
		waitMembers(b, bal, perService+1)
		lat = append(lat, time.Since(start))
		watch = append(watch, time.Since(registered))
		if err := reg.Deregister(ctx, in); err != nil {
			b.Fatal(err)
		}
		waitMembers(b, bal, perService)
	}
	b.StopTimer()
	slices.Sort(lat)
	slices.Sort(watch)
	ms := func(d []time.Duration, q int) float64 { return float64(d[len(d)*q/100].Microseconds()) / 1000 }
	b.ReportMetric(sync.Seconds(), "sync_s")
	b.ReportMetric(rss, "gateway_rss_MB")
	b.ReportMetric(ms(watch, 50), "change_p50_ms")
	b.ReportMetric(ms(watch, 99), "change_p99_ms")
	b.Logf("%s: %d services × %d: gateway synced in %v, RSS %.0f MB; committed change→balancer p50 %.2f ms p99 %.2f ms; "+
		"Register called→balancer p50 %.2f ms p99 %.2f ms",
		kind, services, perService, sync.Round(time.Millisecond), rss, ms(watch, 50), ms(watch, 99), ms(lat, 50), ms(lat, 99))
}

// preload registers services × perService instances, 16 at a time.
func preload(b *testing.B, reg registry.Registrar) {
	b.Helper()
	jobs := make(chan registry.Instance)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for in := range jobs {
				if _, err := reg.Register(context.Background(), in); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for s := 0; s < services; s++ {
		for i := 0; i < perService; i++ {
			jobs <- registry.Instance{Service: fmt.Sprintf("svc-%04d", s), ID: fmt.Sprintf("i%02d", i),
				Address: fmt.Sprintf("http://127.0.0.%d:%d", 1+i, 10000+s), Weight: 1}
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatalf("preload: %v", err)
	default:
	}
}

// notifying is a balancer that says how many members each Update left it
// with, so the benchmark waits without spinning (a spinning poller would
// take a core from the registry server on a 2-core machine).
type notifying struct {
	loadbalance.Balancer
	updated chan int
}

func (n *notifying) Update(s discovery.Snapshot) {
	n.Balancer.Update(s)
	n.updated <- len(n.Balancer.Endpoints())
}

func waitMembers(b *testing.B, bal *notifying, n int) {
	timeout := time.After(10 * time.Second)
	for {
		select {
		case got := <-bal.updated:
			if got == n {
				return
			}
		case <-timeout:
			b.Fatalf("balancer never had %d members", n)
		}
	}
}

// synced reports whether the gateway is ready and knows every service.
func synced(admin string) bool {
	resp, err := http.Get("http://" + admin + "/admin/registry")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var v struct {
		Registry struct {
			State string `json:"state"`
		} `json:"registry"`
		Services map[string]any `json:"services"`
	}
	if err := jsonDecode(resp, &v); err != nil {
		return false
	}
	return v.Registry.State == "SYNCED" && len(v.Services) == services
}

func rssMB(pid int) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return float64(kb) / 1024
		}
	}
	return -1
}

func gatehouseBinary(b *testing.B) string {
	if p := os.Getenv("GATEHOUSE_BIN"); p != "" {
		return p
	}
	p := filepath.Join(b.TempDir(), "gatehouse")
	if out, err := exec.Command("go", "build", "-o", p, "github.com/gatehouse/gatehouse/cmd/gatehouse").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	return p
}
