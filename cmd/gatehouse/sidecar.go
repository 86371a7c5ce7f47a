package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/internal/regurl"
	"github.com/gatehouse/gatehouse/registry"
)

// addInstanceFlags declares the flags that describe the registered instance.
func addInstanceFlags(fs *pflag.FlagSet) {
	fs.String("registry", "", "registry URL: etcd://host:port[,…] or zk://host:port[,…][/chroot]")
	fs.String("registry-root", registry.DefaultRoot, "registry path under which services live")
	fs.Duration("ttl", 10*time.Second, "etcd lease TTL / ZooKeeper session timeout of the record")
	fs.String("service", "", "service name to register under")
	fs.String("id", "", "instance ID (default: derived from the address, stable across restarts)")
	fs.Int("weight", 1, "instance weight for weighted balancers")
	fs.StringArray("meta", nil, "metadata k=v (repeatable), e.g. version=1.2 zone=a")
	fs.String("gateways-root", DefaultGatewaysRoot, "registry path where gateways announce their admin API")
	fs.Duration("drain-max", 30*time.Second, "on SIGTERM, longest wait for the gateways to confirm they stopped routing here")
}

// deregisterAndDrain is the zero-loss exit: list the gateways, deregister,
// then wait until every gateway confirms it no longer routes to the
// instance; where none can be asked, wait the fixed drain instead.
func deregisterAndDrain(s *settings, k *keeper, in registry.Instance, log *zap.Logger) {
	spec, opts, err := registrySpec(s)
	var gateways []string
	if err == nil {
		opts.Root = s.v.GetString("gateways_root")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		gateways, err = listGateways(ctx, spec, opts)
		cancel()
	}
	if err != nil {
		log.Warn("could not list the gateways; using the fixed drain", zap.Error(err))
	}
	k.stop()
	fixed := s.v.GetDuration("drain")
	if len(gateways) > 0 {
		t0 := time.Now()
		confirmed, unknown := awaitUnrouted(context.Background(), gateways, in, s.v.GetDuration("drain_max"), log)
		log.Info("gateways confirmed the removal", zap.Int("confirmed", confirmed), zap.Int("unconfirmed", unknown),
			zap.Duration("after", time.Since(t0)))
		if unknown == 0 {
			return
		}
	}
	time.Sleep(fixed)
}

// registrySpec reads --registry and the client options.
func registrySpec(s *settings) (regurl.Spec, regurl.Options, error) {
	spec, err := regurl.Parse(s.v.GetString("registry"))
	if err != nil {
		return spec, regurl.Options{}, err
	}
	if spec.Kind == regurl.Embedded {
		return spec, regurl.Options{}, errors.New("--registry: a sidecar or backend needs the gateway's registry address, e.g. etcd://127.0.0.1:2379")
	}
	return spec, regurl.Options{Root: s.v.GetString("registry_root"), TTL: s.v.GetDuration("ttl"), Logger: zap.NewNop()}, nil
}

// instanceFromSettings builds and validates the instance the flags describe.
func instanceFromSettings(s *settings, address string) (registry.Instance, error) {
	in := registry.Instance{
		Service: s.v.GetString("service"),
		ID:      s.v.GetString("id"),
		Address: address,
		Weight:  s.v.GetInt("weight"),
	}
	if in.ID == "" {
		in.ID = registry.DefaultID(address)
	}
	for _, kv := range s.v.GetStringSlice("meta") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return in, fmt.Errorf("--meta %q: want k=v", kv)
		}
		if in.Metadata == nil {
			in.Metadata = map[string]string{}
		}
		in.Metadata[k] = v
	}
	return in, in.Validate()
}

// openRegistry connects to an external registry, retrying until ctx is done.
func openRegistry(ctx context.Context, s *settings, log *zap.Logger) (registry.Backend, error) {
	spec, opts, err := registrySpec(s)
	if err != nil {
		return nil, err
	}
	opts.Logger = log.Named("registry")
	return openWithRetry(ctx, spec, opts, log)
}

// openWithRetry connects to a registry, retrying with backoff until ctx is
// done; each failed attempt is logged to log.
func openWithRetry(ctx context.Context, spec regurl.Spec, opts regurl.Options, log *zap.Logger) (registry.Backend, error) {
	var b registry.Backoff
	for attempt := 0; ; attempt++ {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		be, err := regurl.Open(dctx, spec, opts)
		cancel()
		if err == nil {
			return be, nil
		}
		d := b.Delay(attempt)
		log.Warn("registry not reachable; retrying", zap.Error(err), zap.Duration("retry_in", d))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(d):
		}
	}
}

func keepEvents(log *zap.Logger) registry.KeepEvents {
	return registry.KeepEvents{
		Registered: func(in registry.Instance) {
			log.Info("registered", zap.String("service", in.Service), zap.String("id", in.ID), zap.String("address", in.Address))
		},
		Lost: func(in registry.Instance) {
			log.Warn("registration lost (session or lease expired); registering again", zap.String("id", in.ID))
		},
		Failed: func(in registry.Instance, err error) {
			log.Warn("registration failed; retrying", zap.String("id", in.ID), zap.Error(err))
		},
	}
}

// keeper runs registry.Keep in the background and stops it on demand.
type keeper struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func startKeeper(ctx context.Context, r registry.Registrar, in registry.Instance, ttl time.Duration, log *zap.Logger) *keeper {
	kctx, cancel := context.WithCancel(ctx)
	k := &keeper{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(k.done)
		if err := registry.Keep(kctx, r, in, keepBackoff(ttl), keepEvents(log)); err != nil && !errors.Is(err, context.Canceled) {
			log.Warn("deregistration failed; the record goes when its session or lease expires", zap.Error(err))
		}
	}()
	return k
}

// keepBackoff retries registration well within the TTL: after a registry
// outage, etcd restores the old leases with a fresh TTL, and a record must
// be put on a new lease before the old one expires or the gateways see it
// vanish.
func keepBackoff(ttl time.Duration) registry.Backoff {
	return registry.Backoff{Base: 100 * time.Millisecond, Max: min(max(ttl/3, 200*time.Millisecond), 5*time.Second)}
}

// stop deregisters and waits for it.
func (k *keeper) stop() {
	if k != nil {
		k.cancel()
		<-k.done
	}
}

func newSidecarCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sidecar",
		Short: "Keep a backend registered while its health check passes",
		Args:  cobra.NoArgs,
	}
	fs := cmd.Flags()
	addCommonFlags(fs)
	addInstanceFlags(fs)
	fs.String("address", "", "the backend's base URL, e.g. http://127.0.0.1:9001")
	fs.String("health", "", "health check URL (2xx passes); default: a TCP connect to the address")
	fs.Duration("interval", 2*time.Second, "health check interval")
	fs.Duration("timeout", time.Second, "health check timeout")
	fs.Int("rise", 1, "consecutive passes before the backend is registered")
	fs.Int("fall", 2, "consecutive failures before the backend is deregistered")
	fs.Duration("drain", 2*time.Second, "on SIGTERM, how long to wait after deregistering when the gateways cannot confirm")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		s, log, err := bindWithLogger(fs)
		if err != nil {
			return err
		}
		defer log.Sync()
		in, err := instanceFromSettings(s, s.v.GetString("address"))
		if err != nil {
			return err
		}
		hc, err := newHealthCheck(s.v.GetString("health"), in.Address, s.v.GetDuration("timeout"))
		if err != nil {
			return err
		}
		rise, fall := max(1, s.v.GetInt("rise")), max(1, s.v.GetInt("fall"))
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		backend, err := openRegistry(ctx, s, log)
		if err != nil {
			return err
		}
		defer backend.Close()

		var k *keeper
		healthy, streak := false, 0
		tick := time.NewTicker(s.v.GetDuration("interval"))
		defer tick.Stop()
		for {
			err := hc.check(ctx)
			if ctx.Err() != nil {
				break
			}
			if (err == nil) == healthy {
				streak = 0
			} else {
				streak++
			}
			switch {
			case !healthy && streak >= rise:
				healthy, streak = true, 0
				log.Info("backend healthy", zap.String("address", in.Address))
				k = startKeeper(ctx, backend, in, s.v.GetDuration("ttl"), log)
			case healthy && streak >= fall:
				healthy, streak = false, 0
				log.Warn("backend unhealthy; deregistering", zap.String("address", in.Address), zap.Error(err))
				k.stop()
				k = nil
			}
			select {
			case <-ctx.Done():
			case <-tick.C:
				continue
			}
			break
		}
		log.Info("stopping: deregistering, then draining")
		if k != nil {
			deregisterAndDrain(s, k, in, log)
		}
		log.Info("sidecar stopped")
		return nil
	}
	return cmd
}

// healthCheck probes a backend by HTTP (2xx passes) or TCP connect.
type healthCheck struct {
	url     string
	tcpAddr string
	client  *http.Client
	timeout time.Duration
}

func newHealthCheck(healthURL, address string, timeout time.Duration) (*healthCheck, error) {
	hc := &healthCheck{url: healthURL, timeout: timeout,
		client: &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}}
	if healthURL != "" {
		if u, err := url.Parse(healthURL); err != nil || u.Host == "" {
			return nil, fmt.Errorf("--health %q: not an absolute URL", healthURL)
		}
		return hc, nil
	}
	u, err := url.Parse(address)
	if err != nil {
		return nil, err
	}
	hc.tcpAddr = u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		hc.tcpAddr = net.JoinHostPort(u.Hostname(), port)
	}
	return hc, nil
}

func (h *healthCheck) check(ctx context.Context) error {
	if h.url == "" {
		c, err := (&net.Dialer{Timeout: h.timeout}).DialContext(ctx, "tcp", h.tcpAddr)
		if err != nil {
			return err
		}
		return c.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("health check %s: status %d", h.url, resp.StatusCode)
	}
	return nil
}
