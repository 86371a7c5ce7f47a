package gateway

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	ok := RouteConfig{Name: "api", PathPrefix: "/api", Service: "api"}
	with := func(f func(*RouteConfig)) RouteConfig { rc := ok; f(&rc); return rc }
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none means valid
	}{
		{"empty", Config{}, nil},
		{"one route", Config{Routes: []RouteConfig{ok}}, nil},
		{"all policies", Config{Routes: []RouteConfig{
			with(func(r *RouteConfig) { r.Name, r.PathPrefix, r.Policy = "a", "/a", "random" }),
			with(func(r *RouteConfig) { r.Name, r.PathPrefix, r.Policy = "b", "/b", "least_request" }),
			with(func(r *RouteConfig) {
				r.Name, r.PathPrefix, r.Policy, r.HashKey = "c", "/c", "consistent_hash", "header:X-User"
			}),
			with(func(r *RouteConfig) { r.Name, r.Host, r.Methods = "d", "*.example.com", []string{"get", "POST"} }),
		}}, nil},
		{"unknown route policy", Config{Routes: []RouteConfig{with(func(r *RouteConfig) { r.Policy = "foo" })}},
			[]string{`route "api": unknown policy "foo" (valid: round_robin, weighted_round_robin, random, least_request, consistent_hash)`}},
		{"unknown default policy", Config{DefaultPolicy: "fastest"},
			[]string{`default policy: unknown policy "fastest"`}},
		{"hash default policy", Config{DefaultPolicy: "consistent_hash"},
			[]string{"default policy: consistent_hash needs a hash key"}},
		{"missing fields", Config{Routes: []RouteConfig{{}}}, []string{
			"route #1: name is required", "route #1: service is required", "route #1: path_prefix is required",
		}},
		{"bad fields", Config{Routes: []RouteConfig{{Name: "x", PathPrefix: "api", Service: "a/b",
			Host: "example.com:80", Methods: []string{"GE T"}}}}, []string{
			`route "x": path_prefix "api" must start with "/"`,
			`route "x": service:`,
			`route "x": host "example.com:80": must not contain a port`,
			`route "x": method "GE T" is not an HTTP method token`,
		}},
		{"duplicate name", Config{Routes: []RouteConfig{ok, with(func(r *RouteConfig) { r.PathPrefix = "/b" })}},
			[]string{`route "api": duplicate name`}},
		{"shadowed route", Config{Routes: []RouteConfig{ok, with(func(r *RouteConfig) { r.Name, r.PathPrefix = "b", "/api/" })}},
			[]string{`route "b": never matches, route "api"`}},
		{"methods split a prefix", Config{Routes: []RouteConfig{
			with(func(r *RouteConfig) { r.Methods = []string{"GET"} }),
			with(func(r *RouteConfig) { r.Name, r.Methods = "b", []string{"POST"} }),
		}}, nil},
		{"hash key required", Config{Routes: []RouteConfig{with(func(r *RouteConfig) { r.Policy = "consistent_hash" })}},
			[]string{`route "api": policy consistent_hash requires hash_key`}},
		{"hash key without hashing", Config{Routes: []RouteConfig{with(func(r *RouteConfig) { r.HashKey = "ip" })}},
			[]string{`route "api": hash_key "ip" is only used by policy consistent_hash, not round_robin`}},
		{"bad hash key", Config{Routes: []RouteConfig{with(func(r *RouteConfig) {
			r.Policy, r.HashKey = "consistent_hash", "query:x"
		})}}, []string{`route "api": hash_key "query:x": want header:<Name>, cookie:<name>, ip or path`}},
		{"bad trusted proxy", Config{TrustedProxies: []string{"10.0.0.0/8", "nope"}},
			[]string{`trusted proxies: "nope" is neither a CIDR nor an IP`}},
		{"negative settings", Config{DialTimeout: -1, MaxIdleConnsPerHost: -1},
			[]string{"dial timeout: -1ns is negative", "max idle conns per host: -1 is negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to contain %q", err, w)
				}
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != len(tt.want) {
				t.Errorf("got %d problems (%q), want %d", n, err, len(tt.want))
			}
		})
	}
}

func TestNewRejectsInvalid(t *testing.T) {
	_, err := New(Config{DefaultPolicy: "nope"}, newFakeSource(), nil)
	if err == nil {
		t.Fatal("got no error, want the validation error")
	}
}

func TestHashKeyOf(t *testing.T) {
	r := httptest.NewRequest("GET", "/a/b?c=d", nil)
	r.RemoteAddr = "192.0.2.9:5555"
	r.Header.Set("X-User", "u1")
	r.Header.Add("Cookie", "a=1; sid=\"s-42\"")
	r.Header.Add("Cookie", "z=2")
	tests := []struct{ key, want string }{
		{"header:x-user", "u1"},
		{"header:X-Missing", "192.0.2.9"}, // falls back to the client address
		{"cookie:sid", "s-42"},
		{"cookie:z", "2"},
		{"cookie:nope", "192.0.2.9"},
		{"ip", "192.0.2.9"},
		{"path", "/a/b"},
		{"", ""},
	}
	for _, tt := range tests {
		k, err := parseHashKey(tt.key)
		if err != nil {
			t.Fatalf("parseHashKey(%q): %v", tt.key, err)
		}
		if got := k.of(r); got != tt.want {
			t.Errorf("%q: got %q, want %q", tt.key, got, tt.want)
		}
		if n := testing.AllocsPerRun(100, func() { k.of(r) }); n != 0 {
			t.Errorf("%q: got %v allocs, want 0", tt.key, n)
		}
	}
}

func TestStripPort(t *testing.T) {
	tests := []struct{ in, want string }{
		{"example.com", "example.com"},
		{"example.com:8080", "example.com"},
		{"[::1]:80", "::1"},
		{"[::1]", "::1"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := stripPort(tt.in); got != tt.want {
			t.Errorf("stripPort(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestMatchAllocs(t *testing.T) {
	src := newFakeSource()
	src.set("echo")
	g, err := New(Config{DiscoveryRoutes: true, TrustedProxies: []string{"10.0.0.0/8"}, Routes: []RouteConfig{
		{Name: "api", Host: "*.example.com", PathPrefix: "/api", Service: "api", StripPrefix: true},
	}}, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	tbl := g.table.Load()
	for _, target := range []string{"http://x.example.com/api/v1?q=1", "/echo/hello", "/nosuch"} {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		r.RemoteAddr = "10.1.2.3:4567"
		if n := testing.AllocsPerRun(100, func() {
			tbl.match(r)
			tbl.trustedPeer(r.RemoteAddr)
		}); n != 0 {
			t.Errorf("%s: got %v allocs, want 0", target, n)
		}
	}
}
