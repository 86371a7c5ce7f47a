// Package regurl turns a registry URL (etcd://, zk://, embedded) into a
// connected registry.Backend.
package regurl

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/registry"
	etcdreg "github.com/gatehouse/gatehouse/registry/etcd"
	zkreg "github.com/gatehouse/gatehouse/registry/zk"
)

// Kinds of registry.
const (
	Etcd     = "etcd"
	ZK       = "zk"
	Embedded = "embedded"
)

// Spec is a parsed registry URL.
type Spec struct {
	Kind    string
	Servers []string // host:port
	Chroot  string   // zk only
}

// Parse reads etcd://h:p[,h:p…], zk://h:p[,h:p…][/chroot] or "embedded".
func Parse(s string) (Spec, error) {
	if s == Embedded {
		return Spec{Kind: Embedded}, nil
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return Spec{}, fmt.Errorf("registry %q: want etcd://host:port[,host:port], zk://host:port[,host:port][/chroot] or embedded", s)
	}
	var sp Spec
	switch scheme {
	case "etcd":
		sp.Kind = Etcd
	case "zk", "zookeeper":
		sp.Kind = ZK
	default:
		return Spec{}, fmt.Errorf("registry %q: unknown scheme %q (want etcd, zk or embedded)", s, scheme)
	}
	hosts, path, _ := strings.Cut(rest, "/")
	if path != "" {
		if sp.Kind != ZK {
			return Spec{}, fmt.Errorf("registry %q: a path (chroot) is only allowed for zk", s)
		}
		sp.Chroot = "/" + strings.TrimRight(path, "/")
	}
	for _, h := range strings.Split(hosts, ",") {
		if _, port, err := net.SplitHostPort(h); err != nil || port == "" {
			return Spec{}, fmt.Errorf("registry %q: server %q is not host:port", s, h)
		}
		sp.Servers = append(sp.Servers, h)
	}
	if _, err := url.Parse("x://" + hosts); err != nil {
		return Spec{}, fmt.Errorf("registry %q: %v", s, err)
	}
	return sp, nil
}

// Options for Open.
type Options struct {
	Root string
	// TTL is the etcd lease TTL or the ZooKeeper session timeout.
	TTL    time.Duration
	Logger *zap.Logger
}

// Open connects to an etcd or ZooKeeper registry. An embedded spec must be
// started by the caller and opened as etcd at its endpoint.
func Open(ctx context.Context, sp Spec, o Options) (registry.Backend, error) {
	switch sp.Kind {
	case Etcd:
		c, err := etcdreg.Dial(ctx, etcdreg.Config{Endpoints: sp.Servers, Root: o.Root, TTL: o.TTL, Logger: o.Logger})
		if err != nil {
			return nil, err
		}
		return c, nil
	case ZK:
		c, err := zkreg.Dial(ctx, zkreg.Config{Servers: sp.Servers, Chroot: sp.Chroot, Root: o.Root, SessionTimeout: o.TTL, Logger: o.Logger})
		if err != nil {
			return nil, err
		}
		return c, nil
	case Embedded:
		return nil, fmt.Errorf("embedded registry must be started, then opened as etcd")
	}
	return nil, fmt.Errorf("unknown registry kind %q", sp.Kind)
}
