package gateway

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/discovery"
	"github.com/gatehouse/gatehouse/registry"
)

// HealthCheckConfig turns on active health checks of one service: the
// gateway probes every instance and routes only to those that pass. New
// instances start healthy (their sidecar checked them before registering);
// when every instance fails, all are routed to rather than none.
type HealthCheckConfig struct {
	Service            string        `mapstructure:"service"`
	Type               string        `mapstructure:"type"`                // "http" (default) or "tcp"
	Path               string        `mapstructure:"path"`                // http: default /healthz
	Interval           time.Duration `mapstructure:"interval"`            // default 5s
	Timeout            time.Duration `mapstructure:"timeout"`             // default 1s
	HealthyThreshold   int           `mapstructure:"healthy_threshold"`   // passes to come back, default 2
	UnhealthyThreshold int           `mapstructure:"unhealthy_threshold"` // failures to go, default 3
}

func (h HealthCheckConfig) withDefaults() HealthCheckConfig {
	if h.Type == "" {
		h.Type = "http"
	}
	if h.Path == "" {
		h.Path = "/healthz"
	}
	if h.Interval == 0 {
		h.Interval = 5 * time.Second
	}
	if h.Timeout == 0 {
		h.Timeout = time.Second
	}
	if h.HealthyThreshold == 0 {
		h.HealthyThreshold = 2
	}
	if h.UnhealthyThreshold == 0 {
		h.UnhealthyThreshold = 3
	}
	return h
}

func (h HealthCheckConfig) validate() error {
	h = h.withDefaults()
	switch {
	case registry.ValidateName(h.Service) != nil:
		return fmt.Errorf("health check: service %q is not a valid name", h.Service)
	case h.Type != "http" && h.Type != "tcp":
		return fmt.Errorf("health check %q: type %q (want http or tcp)", h.Service, h.Type)
	case !strings.HasPrefix(h.Path, "/"):
		return fmt.Errorf("health check %q: path %q must start with /", h.Service, h.Path)
	case h.Interval < 10*time.Millisecond || h.Timeout <= 0 || h.Timeout > h.Interval:
		return fmt.Errorf("health check %q: want 10ms <= interval and 0 < timeout <= interval", h.Service)
	case h.HealthyThreshold < 1 || h.UnhealthyThreshold < 1:
		return fmt.Errorf("health check %q: thresholds must be at least 1", h.Service)
	}
	return nil
}

// checkedSource is a Source whose health-checked services pass through a
// checker; the others come straight from the registry.
type checkedSource struct {
	Source
	checkers map[string]*checker
}

func newCheckedSource(src Source, cfgs []HealthCheckConfig, log *zap.Logger) *checkedSource {
	cs := &checkedSource{Source: src, checkers: make(map[string]*checker, len(cfgs))}
	for _, hc := range cfgs {
		cs.checkers[hc.Service] = newChecker(src, hc.withDefaults(), log)
	}
	return cs
}

func (cs *checkedSource) Subscribe(service string, s discovery.Subscriber) func() {
	if c, ok := cs.checkers[service]; ok {
		return c.subscribe(s)
	}
	return cs.Source.Subscribe(service, s)
}

func (cs *checkedSource) Snapshot(service string) (discovery.Snapshot, bool) {
	if c, ok := cs.checkers[service]; ok {
		return c.current()
	}
	if s, ok := cs.Source.(snapshotter); ok {
		return s.Snapshot(service)
	}
	return discovery.Snapshot{}, false
}

func (cs *checkedSource) close() {
	for _, c := range cs.checkers {
		c.close()
	}
}

// checker probes one service's instances and publishes the healthy ones.
type checker struct {
	cfg    HealthCheckConfig
	log    *zap.Logger
	client *http.Client
	ctx    context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup // probe goroutines
	unsub  func()

	// pubMu serializes deliveries, so each subscriber sees snapshots in
	// order; it is taken before mu and never by the probes' bookkeeping.
	pubMu sync.Mutex
	// mu guards the fields below.
	mu      sync.Mutex
	reg     discovery.Snapshot // the registry's latest
	probes  map[string]*probe  // by instance ID
	subs    []*subEntry
	version uint64
	have    bool
}

// subEntry gives each subscription an identity: subscribers themselves
// need not be comparable.
type subEntry struct{ discovery.Subscriber }

type probe struct {
	in      registry.Instance
	healthy bool
	streak  int // consecutive results disagreeing with healthy
	cancel  context.CancelFunc
}

func newChecker(src Source, cfg HealthCheckConfig, log *zap.Logger) *checker {
	ctx, stop := context.WithCancel(context.Background())
	c := &checker{cfg: cfg, log: log.With(zap.String("service", cfg.Service)), ctx: ctx, stop: stop,
		probes: make(map[string]*probe),
		client: &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{MaxIdleConnsPerHost: 1, Proxy: nil},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	c.unsub = src.Subscribe(cfg.Service, discovery.SubscriberFunc(c.registryUpdate))
	return c
}

// registryUpdate starts probes for new instances and stops those of gone ones.
func (c *checker) registryUpdate(s discovery.Snapshot) {
	c.mu.Lock()
	c.reg, c.have = s, true
	seen := make(map[string]bool, len(s.Instances))
	for _, in := range s.Instances {
		seen[in.ID] = true
		if p, ok := c.probes[in.ID]; ok && p.in.Address == in.Address {
			p.in = in
			continue
		} else if ok {
			p.cancel()
		}
		ctx, cancel := context.WithCancel(c.ctx)
		p := &probe{in: in, healthy: true, cancel: cancel}
		c.probes[in.ID] = p
		c.wg.Add(1)
		go c.run(ctx, p, in)
	}
	for id, p := range c.probes {
		if !seen[id] {
			p.cancel()
			delete(c.probes, id)
		}
	}
	c.mu.Unlock()
	c.publish()
}

func (c *checker) run(ctx context.Context, p *probe, in registry.Instance) {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		err := c.check(ctx, in)
		if ctx.Err() != nil {
			return
		}
		c.result(p, err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *checker) check(ctx context.Context, in registry.Instance) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	u, err := url.Parse(in.Address)
	if err != nil {
		return err
	}
	if c.cfg.Type == "tcp" {
		host := u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), map[bool]string{true: "443", false: "80"}[u.Scheme == "https"])
		}
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", host)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.JoinPath(c.cfg.Path).String(), nil)
	if err != nil {
		return err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 399 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// result records one probe outcome and publishes on a transition.
func (c *checker) result(p *probe, err error) {
	c.mu.Lock()
	if c.probes[p.in.ID] != p {
		c.mu.Unlock()
		return
	}
	if (err == nil) == p.healthy {
		p.streak = 0
		c.mu.Unlock()
		return
	}
	p.streak++
	changed := p.healthy && p.streak >= c.cfg.UnhealthyThreshold || !p.healthy && p.streak >= c.cfg.HealthyThreshold
	if changed {
		p.healthy, p.streak = !p.healthy, 0
	}
	healthy, id := p.healthy, p.in.ID
	c.mu.Unlock()
	if changed {
		if healthy {
			c.log.Info("active health check: instance healthy again", zap.String("id", id))
		} else {
			c.log.Warn("active health check: instance unhealthy, not routed", zap.String("id", id), zap.Error(err))
		}
		c.publish()
	}
}

// currentLocked is the registry's set without unhealthy instances, or the
// whole set when none is healthy.
func (c *checker) currentLocked() discovery.Snapshot {
	healthy := make([]registry.Instance, 0, len(c.reg.Instances))
	for _, in := range c.reg.Instances {
		if p, ok := c.probes[in.ID]; !ok || p.healthy {
			healthy = append(healthy, in)
		}
	}
	if len(healthy) == 0 {
		healthy = c.reg.Instances
	}
	return discovery.Snapshot{Service: c.cfg.Service, Instances: healthy, Version: c.version}
}

func (c *checker) current() (discovery.Snapshot, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.currentLocked(), c.have
}

func (c *checker) publish() {
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	c.mu.Lock()
	c.version++
	snap := c.currentLocked()
	subs := slices.Clone(c.subs)
	c.mu.Unlock()
	for _, s := range subs {
		s.Update(snap)
	}
}

func (c *checker) subscribe(sub discovery.Subscriber) func() {
	s := &subEntry{sub}
	c.pubMu.Lock()
	c.mu.Lock()
	c.subs = append(c.subs, s)
	snap, have := c.currentLocked(), c.have
	c.mu.Unlock()
	if have {
		s.Update(snap)
	}
	c.pubMu.Unlock()
	return func() {
		c.pubMu.Lock()
		defer c.pubMu.Unlock()
		c.mu.Lock()
		defer c.mu.Unlock()
		if i := slices.Index(c.subs, s); i >= 0 {
			c.subs = slices.Delete(c.subs, i, i+1)
		}
	}
}

func (c *checker) close() {
	c.unsub()
	c.stop()
	c.wg.Wait()
}
