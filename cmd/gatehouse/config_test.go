package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// loadFor parses args as the gateway command would and loads its config.
func loadFor(t *testing.T, args ...string) (gatewayConfig, error) {
	t.Helper()
	cmd := newGatewayCmd()
	if err := cmd.Flags().Parse(args); err != nil {
		t.Fatal(err)
	}
	s, err := bindSettings(cmd.Flags())
	if err != nil {
		return gatewayConfig{}, err
	}
	return loadGatewayConfig(s)
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "gatehouse.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigDefaults(t *testing.T) {
	c, err := loadFor(t)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":8080" || c.Admin != "127.0.0.1:9901" || c.Registry != "embedded" ||
		!c.AccessLog || !c.DiscoveryRoutes || c.Embedded.ClientAddr != "127.0.0.1:2379" {
		t.Fatalf("got %+v, want the documented defaults", c)
	}
}

func TestConfigFileEnvFlagPrecedence(t *testing.T) {
	path := writeFile(t, `
listen: ":7000"
admin: "127.0.0.1:7001"
registry: "zk://127.0.0.1:2181/prod"
access_log: false
upstream:
  dial_timeout: 3s
embedded:
  client_addr: 127.0.0.1:3379
retry:
  attempts: 2
retry_budget:
  ratio: 0.1
passive_health: {slow_start: 30s}
health_checks:
  - {service: users, type: http, path: /ready, interval: 2s, timeout: 500ms}
routes:
  - name: users
    retry: {attempts: 4, methods: [GET, POST]}
    path_prefix: /users
    service: users
    strip_prefix: true
    policy: consistent_hash
    hash_key: header:X-User
`)
	t.Setenv("GATEHOUSE_ADMIN", "127.0.0.1:7002")
	t.Setenv("GATEHOUSE_UPSTREAM_DIAL_TIMEOUT", "4s")
	c, err := loadFor(t, "--config", path, "--listen", ":7003")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"flag beats file", c.Listen, ":7003"},
		{"env beats file", c.Admin, "127.0.0.1:7002"},
		{"file", c.Registry, "zk://127.0.0.1:2181/prod"},
		{"file bool", c.AccessLog, false},
		{"env nested", c.Upstream.DialTimeout, 4 * time.Second},
		{"file nested", c.Embedded.ClientAddr, "127.0.0.1:3379"},
		{"routes", len(c.Routes), 1},
		{"retry", c.Retry.Attempts, 2},
		{"retry budget", c.RetryBudget.Ratio, 0.1},
		{"passive health", c.PassiveHealth.SlowStart, 30 * time.Second},
		{"health check", len(c.HealthChecks) == 1 && c.HealthChecks[0].Interval == 2*time.Second && c.HealthChecks[0].Path == "/ready", true},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	if r := c.Routes[0]; r.Name != "users" || !r.StripPrefix || r.HashKey != "header:X-User" ||
		r.Retry == nil || r.Retry.Attempts != 4 || len(r.Retry.Methods) != 2 {
		t.Errorf("route: got %+v", r)
	}
}

func TestConfigRefused(t *testing.T) {
	cases := []struct{ name, file, want string }{
		{"unknown key", "listn: \":1\"\n", "listn"},
		{"bad registry", "registry: consul://a:1\n", "consul"},
		{"bad policy", "routes:\n  - {name: a, path_prefix: /a, service: a, policy: fastest}\n", "fastest"},
		{"bad root", "registry_root: relative\n", "relative"},
		{"bad duration", "shutdown_timeout: soon\n", "shutdown_timeout"},
		{"not yaml", "routes: [\n", "config"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := loadFor(t, "--config", writeFile(t, c.file))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error naming %q", err, c.want)
			}
		})
	}
}

func TestFlagKey(t *testing.T) {
	for in, want := range map[string]string{
		"registry-root":         "registry_root",
		"upstream-dial-timeout": "upstream.dial_timeout",
		"embedded-client-addr":  "embedded.client_addr",
		"listen":                "listen",
	} {
		if got := flagKey(in); got != want {
			t.Errorf("flagKey(%q): got %q, want %q", in, got, want)
		}
	}
}
