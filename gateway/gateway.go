package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/discovery"
	"github.com/gatehouse/gatehouse/loadbalance"
	"github.com/gatehouse/gatehouse/registry"
)

// Source announces services and delivers their snapshots; *discovery.Subject
// satisfies it.
//
// Subscribe and WatchServices may call back before they return and from any
// goroutine; calls for one subscription are serialized. The cancel funcs
// wait for a callback in progress.
type Source interface {
	Subscribe(service string, s discovery.Subscriber) (cancel func())
	WatchServices(f func(names []string)) (cancel func())
}

// snapshotter is the optional part of a Source that lets a new balancer
// start with the current instances instead of briefly answering 503 until
// its subscription delivers.
type snapshotter interface {
	Snapshot(service string) (discovery.Snapshot, bool)
}

// balancerFactory is loadbalance.New; tests substitute fakes.
type balancerFactory func(policy string, opts loadbalance.Options) (loadbalance.Balancer, error)

// Gateway is an http.Handler that routes requests to service instances.
type Gateway struct {
	src         Source
	log         *zap.Logger
	newBalancer balancerFactory
	// observe, when set by tests, sees every Done outcome.
	observe func(ep *loadbalance.Endpoint, err error)

	table     atomic.Pointer[table]
	exchanges sync.Pool // *exchange
	front     front     // Serve and ServeFast state (fast_serve.go)

	// mu serializes control-plane changes (Reload, service announcements,
	// Close) and guards the fields below. The request path never takes it.
	// Lock order: mu before the Source's own locks (bind subscribes under
	// mu). It is never held while cancelling the service watch, whose
	// callback takes it.
	mu       sync.Mutex
	cfg      Config         // with defaults applied
	checked  *checkedSource // nil without health checks
	known    map[string]bool
	bindings map[bindingKey]*binding
	unwatch  func()
	closed   bool
}

// New validates cfg and returns a Gateway that follows src. A nil log
// discards logs.
func New(cfg Config, src Source, log *zap.Logger) (*Gateway, error) {
	return newGateway(cfg, src, log, loadbalance.New)
}

func newGateway(cfg Config, src Source, log *zap.Logger, nb balancerFactory) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gateway config: %w", err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	g := &Gateway{
		src:         src,
		log:         log,
		newBalancer: nb,
		known:       make(map[string]bool),
		bindings:    make(map[bindingKey]*binding),
	}
	g.exchanges.New = func() any { return new(exchange) }
	cfg = cfg.withDefaults()
	if len(cfg.HealthChecks) > 0 {
		g.checked = newCheckedSource(src, cfg.HealthChecks, log)
		g.src = g.checked
	}
	g.mu.Lock()
	g.cfg = cfg // bind reads the balancer options from it
	t, _, err := g.buildLocked(cfg, nil)
	if err == nil {
		g.table.Store(t)
	}
	g.mu.Unlock()
	if err != nil {
		return nil, err
	}
	// Outside mu: the callback may run before WatchServices returns.
	unwatch := src.WatchServices(g.servicesChanged)
	g.mu.Lock()
	g.unwatch = unwatch
	g.mu.Unlock()
	return g, nil
}

// Reload applies cfg atomically. An invalid cfg is refused and the current
// table keeps serving. Routes whose (service, policy, hash key) is unchanged
// keep their balancer; connections stay warm unless transport settings
// changed.
func (g *Gateway) Reload(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("gateway config: %w", err)
	}
	cfg = cfg.withDefaults()
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return errors.New("gateway closed")
	}
	old := g.table.Load()
	if !slices.Equal(cfg.HealthChecks, g.cfg.HealthChecks) || cfg.PassiveHealth != g.cfg.PassiveHealth {
		g.log.Warn("health check and passive health changes apply on the next restart; the running ones stay")
		cfg.HealthChecks, cfg.PassiveHealth = g.cfg.HealthChecks, g.cfg.PassiveHealth
	}
	t, stale, err := g.buildLocked(cfg, old)
	if err == nil {
		g.cfg = cfg
		g.table.Store(t)
	}
	g.mu.Unlock()
	if err != nil {
		return err
	}
	for _, b := range stale {
		b.cancel()
	}
	if t.eng != old.eng {
		// Requests on the old table finish on its transport; only idle
		// connections go now.
		old.eng.closeIdle()
	}
	return nil
}

// servicesChanged is the WatchServices callback: a new name gets a
// discovery route (copy-on-write of the table).
func (g *Gateway) servicesChanged(names []string) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	added := false
	for _, n := range names {
		if !g.known[n] && registry.ValidateName(n) == nil {
			g.known[n] = true
			added = true
		}
	}
	if !added || !g.cfg.DiscoveryRoutes {
		g.mu.Unlock()
		return
	}
	t, stale, err := g.buildLocked(g.cfg, g.table.Load())
	if err == nil {
		g.table.Store(t)
	}
	g.mu.Unlock()
	if err != nil {
		g.log.Error("cannot add discovery routes", zap.Error(err))
		return
	}
	for _, b := range stale {
		b.cancel()
	}
}

// Close cancels every subscription and closes idle upstream connections.
// Requests in flight finish; the gateway should not serve after Close.
func (g *Gateway) Close() {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	unwatch, bindings := g.unwatch, g.bindings
	g.bindings = nil
	g.mu.Unlock()
	if unwatch != nil {
		unwatch()
	}
	for _, b := range bindings {
		b.cancel()
	}
	if g.checked != nil {
		g.checked.close()
	}
	g.table.Load().eng.closeIdle()
}

// buildLocked compiles cfg into a table, reusing the bindings still keyed
// and creating the missing ones; it returns the bindings no longer used,
// for the caller to cancel after the swap. The engine of prev is reused when
// the transport settings are unchanged. On error nothing changes.
func (g *Gateway) buildLocked(cfg Config, prev *table) (*table, []*binding, error) {
	next := make(map[bindingKey]*binding)
	var created []*binding
	get := func(k bindingKey) (*binding, error) {
		if b, ok := next[k]; ok {
			return b, nil
		}
		b, ok := g.bindings[k]
		if !ok {
			var err error
			if b, err = g.bind(k); err != nil {
				return nil, err
			}
			created = append(created, b)
		}
		next[k] = b
		return b, nil
	}
	fail := func(err error) (*table, []*binding, error) {
		for _, b := range created {
			b.cancel()
		}
		return nil, nil, err
	}

	t := &table{accessLog: cfg.AccessLog, tc: transportConfigOf(cfg), defaultRetry: compileRetry(cfg.Retry)}
	for _, s := range cfg.TrustedProxies {
		p, _ := parseTrusted(s) // validated already
		t.trusted = append(t.trusted, p)
	}
	for _, rc := range cfg.Routes {
		b, err := get(bindingKey{rc.Service, rc.policy(cfg.DefaultPolicy), rc.HashKey})
		if err != nil {
			return fail(fmt.Errorf("route %q: %w", rc.Name, err))
		}
		rt := compileRoute(rc, b)
		rt.retry = t.defaultRetry
		if rc.Retry != nil {
			rt.retry = compileRetry(*rc.Retry)
		}
		t.routes = append(t.routes, rt)
	}
	sortRoutes(t.routes)
	if cfg.DiscoveryRoutes {
		t.discovery = make(map[string]*binding, len(g.known))
		for name := range g.known {
			b, err := get(bindingKey{name, cfg.DefaultPolicy, ""})
			if err != nil {
				return fail(fmt.Errorf("discovery route %q: %w", name, err))
			}
			t.discovery[name] = b
		}
	}
	if prev != nil && prev.tc == t.tc {
		t.eng = prev.eng
	} else {
		t.eng = newEngine(t.tc, g.log)
	}
	t.budgetCfg = cfg.RetryBudget
	if prev != nil && prev.budgetCfg == t.budgetCfg {
		t.budget = prev.budget
	} else {
		t.budget = newBudget(t.budgetCfg)
	}

	var stale []*binding
	for k, b := range g.bindings {
		if _, ok := next[k]; !ok {
			stale = append(stale, b)
		}
	}
	g.bindings = next
	return t, stale, nil
}

// bind creates a balancer for k, primes it with the current snapshot when
// the Source can tell, and subscribes it.
func (g *Gateway) bind(k bindingKey) (*binding, error) {
	bal, err := g.newBalancer(k.policy, g.cfg.PassiveHealth.options())
	if err != nil {
		return nil, fmt.Errorf("balancer for service %q: %w", k.service, err)
	}
	mw := &memberWatch{g: g, bal: bal}
	if s, ok := g.src.(snapshotter); ok {
		if snap, ok := s.Snapshot(k.service); ok {
			// Serialized with the subscription's updates: it has not started.
			mw.Update(snap)
		}
	}
	return &binding{key: k, bal: bal, cancel: g.src.Subscribe(k.service, mw)}, nil
}

// ServeHTTP routes, picks and proxies one request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := g.table.Load()
	x := g.exchanges.Get().(*exchange)
	x.reset(w)
	if t.accessLog {
		x.start = time.Now()
	}
	defer g.finish(t, r, x) // also when a cut-off response panics through
	g.serve(t, x, r)
}

func (g *Gateway) finish(t *table, r *http.Request, x *exchange) {
	if t.accessLog {
		g.logAccess(r, x)
	}
	x.reset(nil)
	g.exchanges.Put(x)
}

func (g *Gateway) serve(t *table, x *exchange, r *http.Request) {
	m, ok := t.match(r)
	if !ok {
		x.writeError(http.StatusNotFound)
		return
	}
	x.route, x.service = m.name, m.bind.key.service
	if hasBody(r) {
		x.body.rc = r.Body
		r.Body = &x.body
	}
	key := m.hash.of(r)
	t.budget.deposit()
	for {
		ep, err := m.bind.bal.Pick(key)
		if err != nil {
			x.err = err
			x.writeError(http.StatusServiceUnavailable)
			return
		}
		x.attempts++
		x.upstream = ep.Instance.Address
		x.target = target{url: ep.URL, path: m.path, rawPath: m.rawPath, trusted: t.trustedPeer(r.RemoteAddr)}
		err = g.attempt(t, x, r, ep)
		if err == nil {
			return
		}
		x.err = err
		status, counted := upstreamStatus(r, err)
		if !counted {
			x.status = status // nobody to send it to
			return
		}
		if x.attempts >= m.retry.attempts || !m.retry.retryable(r, &x.body, err) || !t.budget.withdraw(time.Now()) {
			x.writeError(status)
			return
		}
	}
}

// attempt forwards once to ep and releases ep with the outcome. It returns
// the upstream error, with nothing written to the client.
func (g *Gateway) attempt(t *table, x *exchange, r *http.Request, ep *loadbalance.Endpoint) (err error) {
	// Until forward returns, assume it panics: a response cut off mid-body.
	outcome := errCutOff
	defer func() {
		if outcome == errCutOff {
			x.err = errCutOff
			if clientGone(r) {
				outcome, x.status = nil, StatusClientClosedRequest
			}
		}
		g.release(ep, outcome)
	}()
	err = t.eng.forward(&x.rec, r, &x.target)
	outcome = nil
	if err != nil {
		if _, counted := upstreamStatus(r, err); counted {
			outcome = err
		}
	}
	return err
}

func (g *Gateway) release(ep *loadbalance.Endpoint, err error) {
	ep.Done(err)
	if g.observe != nil {
		g.observe(ep, err)
	}
}
