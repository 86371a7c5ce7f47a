// Package gateway routes HTTP requests to service instances: it matches a
// request against an immutable route table, picks an instance with the
// route's balancer, and proxies the request to it.
//
// The table is rebuilt on Reload and whenever the Source announces a new
// service, and swapped atomically; the request path takes no lock. Balancers
// are shared per (service, policy, hash key) and survive reloads that keep
// that triple, so rotation and health state carry over.
//
// Matching order: configured routes first, most specific host first (exact,
// then wildcard, then none), then the longest path prefix on a segment
// boundary, then methods. A method mismatch is not a 405: the route simply
// does not match and the next candidate is tried, ending in 404. Then
// discovery routes: a first path segment naming a known service routes to
// that service with the segment removed.
//
// Proxying goes through an engine (Config.Engine). The default, "lean",
// speaks HTTP/1.1 to upstreams itself on per-host pools of persistent
// connections, on the handler's goroutine, and hands what it does not cover
// (TLS or h2c upstreams, WebSocket and other upgrades, Expect: 100-continue,
// gRPC, declared request trailers, HTTP/2 request streams of unknown
// length, CONNECT) to httputil.ReverseProxy, which "reverseproxy" uses for
// everything.
package gateway
