package gateway

import (
	"errors"
	"fmt"
	"net/netip"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/loadbalance"
	"github.com/gatehouse/gatehouse/registry"
)

// Defaults applied to zero Config fields.
const (
	DefaultPolicy                = "round_robin"
	DefaultDialTimeout           = 2 * time.Second
	DefaultResponseHeaderTimeout = 30 * time.Second
	DefaultIdleConnTimeout       = 90 * time.Second
	DefaultMaxIdleConnsPerHost   = 512
	DefaultEngine                = EngineLean
)

// Engine names for Config.Engine.
const (
	EngineLean         = "lean"
	EngineReverseProxy = "reverseproxy"
)

// Server names for Config.Server: the front end that Gateway.Serve runs.
const (
	ServerNetHTTP  = "nethttp"
	ServerFastHTTP = "fasthttp" // the command's default; see fast.go for how it differs
)

// policyConsistentHash is the one policy that needs a hash key.
const policyConsistentHash = "consistent_hash"

// Config is the gateway's whole configuration; Reload replaces it at once.
type Config struct {
	Routes []RouteConfig
	// DiscoveryRoutes routes /<service>/<rest> to service as /<rest> for
	// every service the Source announces.
	DiscoveryRoutes bool
	// DefaultPolicy serves discovery routes and routes without a Policy;
	// "" means round_robin.
	DefaultPolicy string
	// TrustedProxies are CIDRs (or bare IPs) of peers whose X-Forwarded-*
	// headers are extended rather than overwritten.
	TrustedProxies []string

	DialTimeout           time.Duration // default 2s
	ResponseHeaderTimeout time.Duration // default 30s
	IdleConnTimeout       time.Duration // default 90s
	// MaxIdleConnsPerHost keeps enough warm connections per backend that
	// bursts do not churn sockets into TIME_WAIT; default 512.
	MaxIdleConnsPerHost int
	AccessLog           bool
	// Engine selects the upstream proxy engine: "lean" (the default; a
	// pooled HTTP/1.1 client that hands unusual requests to the standard
	// one) or "reverseproxy" (httputil.ReverseProxy for every request).
	Engine string
	// Server selects the front end Gateway.Serve runs: "nethttp" (the
	// library default) or "fasthttp" (HTTP/1.1 on valyala/fasthttp, h2c to
	// net/http; needs the lean engine; the gatehouse command's default, for
	// about half the CPU per request). Reload does not switch a running
	// server.
	Server string
	// Retry is the retry policy of discovery routes and of routes that set
	// none; RetryBudget bounds retries gateway-wide.
	Retry       RetryConfig
	RetryBudget RetryBudget
	// HealthChecks turns on active health checks per service. They are set
	// at start; a reload that changes them is applied on the next restart.
	HealthChecks []HealthCheckConfig
	// PassiveHealth tunes outlier detection and slow start in every
	// balancer. Like HealthChecks it is set at start.
	PassiveHealth PassiveHealthConfig
}

// PassiveHealthConfig is loadbalance.HealthOptions in config form: an
// instance that fails ConsecutiveFailures requests in a row, or refuses a
// connection, is ejected for BaseEjection × times ejected (at most
// MaxEjection), never more than MaxEjectedPercent of a service at once;
// newcomers ramp up over SlowStart. Zero values take loadbalance's defaults.
type PassiveHealthConfig struct {
	Disable             bool          `mapstructure:"disable"`
	ConsecutiveFailures int           `mapstructure:"consecutive_failures"`
	BaseEjection        time.Duration `mapstructure:"base_ejection"`
	MaxEjection         time.Duration `mapstructure:"max_ejection"`
	MaxEjectedPercent   int           `mapstructure:"max_ejected_percent"`
	SlowStart           time.Duration `mapstructure:"slow_start"`
}

func (p PassiveHealthConfig) options() loadbalance.Options {
	return loadbalance.Options{Health: loadbalance.HealthOptions{
		Disable: p.Disable, ConsecutiveFailures: p.ConsecutiveFailures, BaseEjection: p.BaseEjection,
		MaxEjection: p.MaxEjection, MaxEjectedPercent: p.MaxEjectedPercent, SlowStart: p.SlowStart,
	}}
}

// RouteConfig is one configured route.
type RouteConfig struct {
	Name string `mapstructure:"name"` // required, unique
	// Host is an exact host or "*.example.com" (any subdomain); the
	// request's port is ignored. Empty matches any host.
	Host string `mapstructure:"host"`
	// PathPrefix starts with "/" and matches on segment boundaries:
	// "/api" matches "/api" and "/api/x" but not "/apix". A trailing slash
	// is ignored: "/api/" is the same prefix.
	PathPrefix string `mapstructure:"path_prefix"`
	// Methods restricts the route, compared case-sensitively after upper-
	// casing the configured names (HEAD is not implied by GET). Empty: any.
	Methods []string `mapstructure:"methods"`
	Service string   `mapstructure:"service"` // required
	// StripPrefix removes PathPrefix before forwarding ("/api/x" → "/x").
	StripPrefix bool   `mapstructure:"strip_prefix"`
	Policy      string `mapstructure:"policy"` // "" = Config.DefaultPolicy
	// HashKey is required by consistent_hash and rejected otherwise:
	// "header:<Name>", "cookie:<name>", "ip" or "path". A request without
	// the header or cookie hashes on its client address instead.
	HashKey string `mapstructure:"hash_key"`
	// Retry overrides Config.Retry for this route.
	Retry *RetryConfig `mapstructure:"retry"`
}

// withDefaults fills zero fields; it does not validate.
func (c Config) withDefaults() Config {
	if c.DefaultPolicy == "" {
		c.DefaultPolicy = DefaultPolicy
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.ResponseHeaderTimeout == 0 {
		c.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	}
	if c.IdleConnTimeout == 0 {
		c.IdleConnTimeout = DefaultIdleConnTimeout
	}
	if c.MaxIdleConnsPerHost == 0 {
		c.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	}
	if c.Engine == "" {
		c.Engine = DefaultEngine
	}
	return c
}

// policy is the route's effective policy under defaults.
func (rc RouteConfig) policy(def string) string {
	if rc.Policy == "" {
		return def
	}
	return rc.Policy
}

// Validate reports every problem of the configuration at once, joined.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	valid := loadbalance.Policies()
	validList := strings.Join(valid, ", ")
	if !slices.Contains(valid, c.DefaultPolicy) {
		bad("default policy: unknown policy %q (valid: %s)", c.DefaultPolicy, validList)
	} else if c.DefaultPolicy == policyConsistentHash {
		bad("default policy: %s needs a hash key, so it can only be set per route", policyConsistentHash)
	}
	for _, p := range c.TrustedProxies {
		if _, err := parseTrusted(p); err != nil {
			bad("trusted proxies: %v", err)
		}
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{
		{"dial timeout", c.DialTimeout},
		{"response header timeout", c.ResponseHeaderTimeout},
		{"idle conn timeout", c.IdleConnTimeout},
	} {
		if d.d < 0 {
			bad("%s: %v is negative", d.name, d.d)
		}
	}
	if c.MaxIdleConnsPerHost < 0 {
		bad("max idle conns per host: %d is negative", c.MaxIdleConnsPerHost)
	}
	if err := validateServer(c.Server, c.Engine); err != nil {
		bad("%v", err)
	}
	if c.Engine != EngineLean && c.Engine != EngineReverseProxy {
		bad("engine: unknown engine %q (valid: %s, %s)", c.Engine, EngineLean, EngineReverseProxy)
	}

	if err := c.Retry.validate(); err != nil {
		bad("%v", err)
	}
	if _, err := loadbalance.New(DefaultPolicy, c.PassiveHealth.options()); err != nil {
		bad("passive health: %v", err)
	}
	checked := map[string]bool{}
	for _, hc := range c.HealthChecks {
		if err := hc.validate(); err != nil {
			bad("%v", err)
		} else if checked[hc.Service] {
			bad("health check %q: configured twice", hc.Service)
		}
		checked[hc.Service] = true
	}
	if c.RetryBudget.MinPerSecond < 0 {
		bad("retry budget: min per second %d is negative", c.RetryBudget.MinPerSecond)
	}
	names := make(map[string]bool)
	for i, rc := range c.Routes {
		label := fmt.Sprintf("route #%d", i+1)
		if rc.Name != "" {
			label = fmt.Sprintf("route %q", rc.Name)
		}
		for _, e := range rc.validate(c.DefaultPolicy, valid) {
			bad("%s: %v", label, e)
		}
		if rc.Retry != nil {
			if err := rc.Retry.validate(); err != nil {
				bad("%s: %v", label, err)
			}
		}
		if rc.Name != "" {
			if names[rc.Name] {
				bad("%s: duplicate name", label)
			}
			names[rc.Name] = true
		}
	}
	errs = append(errs, shadowed(c.Routes)...)
	return errors.Join(errs...)
}

// validate returns the route's own problems, without the route label.
func (rc RouteConfig) validate(defPolicy string, valid []string) []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if rc.Name == "" {
		bad("name is required")
	}
	if rc.Service == "" {
		bad("service is required")
	} else if err := registry.ValidateName(rc.Service); err != nil {
		bad("service: %v", err)
	}
	switch {
	case rc.PathPrefix == "":
		bad("path_prefix is required")
	case !strings.HasPrefix(rc.PathPrefix, "/"):
		bad("path_prefix %q must start with \"/\"", rc.PathPrefix)
	case strings.ContainsAny(rc.PathPrefix, "?# \t"):
		bad("path_prefix %q must be a plain path", rc.PathPrefix)
	}
	if err := validateHost(rc.Host); err != nil {
		bad("host %q: %v", rc.Host, err)
	}
	for _, m := range rc.Methods {
		if !isToken(m) {
			bad("method %q is not an HTTP method token", m)
		}
	}
	policy := rc.policy(defPolicy)
	if !slices.Contains(valid, policy) {
		bad("unknown policy %q (valid: %s)", policy, strings.Join(valid, ", "))
	}
	switch {
	case policy == policyConsistentHash && rc.HashKey == "":
		bad("policy %s requires hash_key (header:<Name>, cookie:<name>, ip or path)", policy)
	case policy != policyConsistentHash && rc.HashKey != "":
		bad("hash_key %q is only used by policy %s, not %s", rc.HashKey, policyConsistentHash, policy)
	case rc.HashKey != "":
		if _, err := parseHashKey(rc.HashKey); err != nil {
			bad("%v", err)
		}
	}
	return errs
}

// shadowed reports routes that can never match because an earlier route has
// the same host and prefix and accepts every method they accept.
func shadowed(routes []RouteConfig) []error {
	var errs []error
	for j, b := range routes {
		for _, a := range routes[:j] {
			if !strings.EqualFold(a.Host, b.Host) || normPrefix(a.PathPrefix) != normPrefix(b.PathPrefix) {
				continue
			}
			covered := len(a.Methods) == 0
			if !covered && len(b.Methods) > 0 {
				covered = true
				for _, m := range b.Methods {
					if !slices.ContainsFunc(a.Methods, func(x string) bool { return strings.EqualFold(x, m) }) {
						covered = false
					}
				}
			}
			if covered {
				errs = append(errs, fmt.Errorf("route %q: never matches, route %q has the same host and path_prefix and covers its methods", b.Name, a.Name))
				break
			}
		}
	}
	return errs
}

// normPrefix drops a trailing slash so that "/api/" and "/api" are one prefix.
func normPrefix(p string) string {
	if len(p) > 1 {
		return strings.TrimRight(p, "/")
	}
	return p
}

func validateHost(h string) error {
	if h == "" {
		return nil
	}
	name := h
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		name = rest
	}
	if strings.Contains(name, ":") {
		return errors.New("must not contain a port (request ports are ignored)")
	}
	if name == "" || strings.ContainsAny(name, "*/ \t?#@[]") {
		return errors.New(`must be a host name or "*.<domain>"`)
	}
	return nil
}

// isToken reports whether m is an RFC 9110 token (methods, header names).
func isToken(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return true
}

// parseTrusted accepts a CIDR or a bare IP (a single-address prefix).
func parseTrusted(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		// Peers are compared unmapped, so an IPv4-mapped prefix must be too.
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is neither a CIDR nor an IP", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// hashKind says where a consistent_hash route takes its key from.
type hashKind uint8

const (
	hashNone hashKind = iota
	hashHeader
	hashCookie
	hashIP
	hashPath
)

// hashKey is a parsed RouteConfig.HashKey.
type hashKey struct {
	kind hashKind
	name string // canonical header name or cookie name
}

func parseHashKey(s string) (hashKey, error) {
	switch {
	case s == "":
		return hashKey{}, nil
	case s == "ip":
		return hashKey{kind: hashIP}, nil
	case s == "path":
		return hashKey{kind: hashPath}, nil
	}
	if name, ok := strings.CutPrefix(s, "header:"); ok && name != "" && isToken(name) {
		return hashKey{kind: hashHeader, name: textproto.CanonicalMIMEHeaderKey(name)}, nil
	}
	if name, ok := strings.CutPrefix(s, "cookie:"); ok && name != "" && isToken(name) {
		return hashKey{kind: hashCookie, name: name}, nil
	}
	return hashKey{}, fmt.Errorf("hash_key %q: want header:<Name>, cookie:<name>, ip or path", s)
}

// methodsUpper normalizes configured methods; nil means any.
func methodsUpper(ms []string) []string {
	if len(ms) == 0 {
		return nil
	}
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = strings.ToUpper(m)
	}
	return out
}
