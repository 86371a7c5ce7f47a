package gateway

import (
	"cmp"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/loadbalance"
)

// discoveryRoute names discovery routes in logs and the admin API; the
// parentheses keep it apart from configured route names in practice.
const discoveryRoute = "(discovery)"

// bindingKey identifies a balancer: routes with the same key share one, and
// a reload that keeps the key keeps the balancer and its state.
type bindingKey struct {
	service, policy, hashKey string
}

// binding is one balancer subscribed to one service.
type binding struct {
	key    bindingKey
	bal    loadbalance.Balancer
	cancel func() // ends the subscription
}

// route is a configured route, compiled for matching.
type route struct {
	name     string
	host     string // exact host, or ".example.com" for "*.example.com"
	wildcard bool
	prefix   string // no trailing slash, except "/" itself
	methods  []string
	strip    bool
	hash     hashKey
	bind     *binding
	retry    *retryPolicy
}

// table is one immutable generation of routing state; requests load it once
// through an atomic pointer and never see a half-applied reload.
type table struct {
	routes    []*route            // in match order
	discovery map[string]*binding // by service name; nil when off
	trusted   []netip.Prefix
	accessLog bool
	eng       engine
	tc        transportConfig
	// defaultRetry serves discovery routes and routes without their own.
	defaultRetry *retryPolicy
	// budget is carried from table to table while its config is unchanged.
	budget    *budget
	budgetCfg RetryBudget
}

// match is the outcome of routing one request.
type match struct {
	name          string
	bind          *binding
	hash          hashKey
	retry         *retryPolicy
	path, rawPath string // upstream path before joining the instance's base path
}

func compileRoute(rc RouteConfig, b *binding) *route {
	rt := &route{
		name:    rc.Name,
		host:    strings.ToLower(rc.Host),
		prefix:  normPrefix(rc.PathPrefix),
		methods: methodsUpper(rc.Methods),
		strip:   rc.StripPrefix,
		bind:    b,
	}
	if rest, ok := strings.CutPrefix(rt.host, "*"); ok {
		rt.host, rt.wildcard = rest, true
	}
	rt.hash, _ = parseHashKey(rc.HashKey) // validated already
	return rt
}

// sortRoutes puts routes in match order: exact hosts, then wildcard hosts
// (longest first), then any host; within each, the longest prefix first.
// Ties keep configuration order.
func sortRoutes(rs []*route) {
	rank := func(r *route) int {
		switch {
		case r.host == "":
			return 0
		case r.wildcard:
			return 1
		}
		return 2
	}
	slices.SortStableFunc(rs, func(a, b *route) int {
		return cmp.Or(
			cmp.Compare(rank(b), rank(a)),
			cmp.Compare(len(b.host), len(a.host)),
			cmp.Compare(len(b.prefix), len(a.prefix)),
		)
	})
}

// match routes r; it allocates nothing.
func (t *table) match(r *http.Request) (match, bool) {
	return t.matchParts(stripPort(r.Host), r.URL.Path, r.URL.RawPath, r.Method)
}

// matchParts routes a request given as its host (without port), decoded
// path, raw path and method; both front ends share it. It allocates nothing.
func (t *table) matchParts(host, path, rawPath, method string) (match, bool) {
	for _, rt := range t.routes {
		if !rt.matches(host, path, method) {
			continue
		}
		m := match{name: rt.name, bind: rt.bind, hash: rt.hash, retry: rt.retry, path: path, rawPath: rawPath}
		if rt.strip && rt.prefix != "/" {
			m.path, m.rawPath = stripPath(path, rawPath, rt.prefix)
		}
		return m, true
	}
	if t.discovery == nil || len(path) < 2 || path[0] != '/' {
		return match{}, false
	}
	seg := path[1:]
	if i := strings.IndexByte(seg, '/'); i >= 0 {
		seg = seg[:i]
	}
	b, ok := t.discovery[seg]
	if !ok {
		return match{}, false
	}
	m := match{name: discoveryRoute, bind: b, retry: t.defaultRetry}
	m.path, m.rawPath = stripPath(path, rawPath, path[:1+len(seg)])
	return m, true
}

func (rt *route) matches(host, path, method string) bool {
	if rt.host != "" {
		if rt.wildcard {
			if len(host) <= len(rt.host) || !strings.EqualFold(host[len(host)-len(rt.host):], rt.host) {
				return false
			}
		} else if !strings.EqualFold(host, rt.host) {
			return false
		}
	}
	if !hasPathPrefix(path, rt.prefix) {
		return false
	}
	return rt.methods == nil || slices.Contains(rt.methods, method)
}

// hasPathPrefix matches prefix on a segment boundary.
func hasPathPrefix(path, prefix string) bool {
	if prefix == "/" {
		return true
	}
	return strings.HasPrefix(path, prefix) && (len(path) == len(prefix) || path[len(prefix)] == '/')
}

// stripPath removes a matched prefix from the path and, when it carries the
// same prefix, from the raw path; otherwise the raw path is dropped and the
// proxy re-escapes the path.
func stripPath(path, rawPath, prefix string) (string, string) {
	p := path[len(prefix):]
	if p == "" {
		p = "/"
	}
	if rawPath == "" {
		return p, ""
	}
	if !strings.HasPrefix(rawPath, prefix) {
		return p, ""
	}
	rp := rawPath[len(prefix):]
	if rp == "" || rp[0] != '/' {
		return p, ""
	}
	return p, rp
}

// stripPort returns the host of a Host header value without its port.
func stripPort(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			return h[1:i]
		}
		return h
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		return h[:i]
	}
	return h
}

// trustedPeer reports whether the connection's peer may set X-Forwarded-*.
func (t *table) trustedPeer(remoteAddr string) bool {
	if len(t.trusted) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, p := range t.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// of extracts the hash key of a request. A missing header or cookie falls
// back to the client address, so keyless clients spread over the ring
// instead of all landing on the instance that owns "".
func (k hashKey) of(r *http.Request) string {
	switch k.kind {
	case hashNone:
		return ""
	case hashHeader:
		if v := r.Header[k.name]; len(v) > 0 && v[0] != "" {
			return v[0]
		}
	case hashCookie:
		if v := cookieValue(r.Header["Cookie"], k.name); v != "" {
			return v
		}
	case hashPath:
		return r.URL.Path
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// cookieValue finds a cookie without http.Request.Cookie's allocations.
func cookieValue(lines []string, name string) string {
	for _, line := range lines {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			n, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if !ok || n != name {
				continue
			}
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v
		}
	}
	return ""
}
