package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/discovery"
	"github.com/gatehouse/gatehouse/gateway"
	"github.com/gatehouse/gatehouse/internal/regurl"
	"github.com/gatehouse/gatehouse/registry"
	etcdreg "github.com/gatehouse/gatehouse/registry/etcd"
)

func newGatewayCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run the gateway",
		Args:  cobra.NoArgs,
	}
	fs := cmd.Flags()
	addCommonFlags(fs)
	fs.String("listen", ":8080", "address for proxied traffic")
	fs.String("admin", "127.0.0.1:9901", "address of the admin API (healthz, readyz, admin/services)")
	fs.String("registry", "embedded", "registry URL: etcd://host:port[,…], zk://host:port[,…][/chroot] or embedded")
	fs.String("registry-root", registry.DefaultRoot, "registry path under which services live")
	fs.Duration("registry-ttl", 10*time.Second, "etcd lease TTL / ZooKeeper session timeout")
	fs.String("embedded-client-addr", "127.0.0.1:2379", "client address of the embedded registry")
	fs.String("embedded-peer-addr", "127.0.0.1:2380", "peer address of the embedded registry")
	fs.String("embedded-dir", "", "data directory of the embedded registry (default: a temporary one)")
	fs.Bool("access-log", true, "log one line per request")
	fs.Bool("discovery-routes", true, "route /<service>/<rest> to every discovered service")
	fs.String("default-policy", "round_robin", "balancer policy of discovery routes and of routes that name none")
	fs.StringSlice("trusted-proxies", nil, "CIDRs whose X-Forwarded-* headers are extended, not replaced")
	fs.Duration("upstream-dial-timeout", 2*time.Second, "upstream connect timeout")
	fs.Duration("upstream-response-header-timeout", 30*time.Second, "upstream time to response headers (then 504)")
	fs.Duration("upstream-idle-conn-timeout", 90*time.Second, "how long idle upstream connections are kept")
	fs.Int("upstream-max-idle-conns-per-host", 512, "idle upstream connections kept per backend")
	fs.String("server", gateway.ServerFastHTTP, "HTTP front end: nethttp, or fasthttp (faster for plain HTTP/1.1; h2c goes to net/http)")
	fs.String("engine", gateway.EngineLean, "upstream engine: lean (pooled HTTP/1.1) or reverseproxy (httputil.ReverseProxy for everything)")
	fs.Duration("shutdown-timeout", 15*time.Second, "how long in-flight requests may finish on SIGTERM")
	fs.Duration("shutdown-delay", 0, "on SIGTERM, how long /readyz fails before the listener closes (time for a load balancer to notice)")
	fs.String("gateways-root", DefaultGatewaysRoot, "registry path where this gateway announces its admin API")
	fs.String("advertise-admin", "", "admin URL announced to sidecars for drain confirmations (default from --admin; \"none\" to not announce)")
	fs.String("snapshot-file", "", "file the routing state is saved to and, with the registry down at start, served from")
	fs.Duration("max-staleness", 0, "expire all services after the registry is unreachable this long (0: serve the last good sets forever)")
	fs.Float64("panic-floor", 0.5, "largest share of a service's instances one update may remove before it is held for confirmation (negative: off)")
	fs.Duration("panic-confirm-delay", 3*time.Second, "how long the panic floor holds a large removal")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		s, err := bindSettings(fs)
		if err != nil {
			return err
		}
		cfg, err := loadGatewayConfig(s)
		if err != nil {
			return err
		}
		log, err := newLogger(cfg.LogLevel, cfg.LogFormat)
		if err != nil {
			return err
		}
		defer log.Sync()
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		reload := func() (gatewayConfig, error) {
			s, err := bindSettings(fs)
			if err != nil {
				return gatewayConfig{}, err
			}
			return loadGatewayConfig(s)
		}
		return runGateway(ctx, cfg, log, reload, nil)
	}
	return cmd
}

// runningGateway is what runGateway reports once it is listening.
type runningGateway struct {
	Addr, AdminAddr, RegistryEndpoint string
}

// runGateway serves until ctx is done, then drains. reload, when not nil,
// is called on SIGHUP. started, when not nil, is called once listening.
func runGateway(ctx context.Context, cfg gatewayConfig, log *zap.Logger,
	reload func() (gatewayConfig, error), started func(runningGateway)) error {
	spec, err := regurl.Parse(cfg.Registry)
	if err != nil {
		return err
	}
	if spec.Kind == regurl.Embedded {
		emb, err := startEmbedded(ctx, cfg.Embedded, log)
		if err != nil {
			return err
		}
		defer emb.Close()
		spec = regurl.Spec{Kind: regurl.Etcd, Servers: []string{emb.Endpoint()}}
		log.Info("embedded registry started", zap.String("endpoint", "etcd://"+emb.Endpoint()))
	}
	lw := &lazyWatcher{open: func(ctx context.Context) (registry.Backend, error) {
		return regurl.Open(ctx, spec, regurl.Options{Root: cfg.RegistryRoot, TTL: cfg.RegistryTTL, Logger: log.Named("registry")})
	}}
	defer lw.Close()
	subject := discovery.NewSubject(lw, discovery.Options{
		Logger:       log.Named("discovery"),
		MaxStaleness: cfg.MaxStaleness,
		PanicFloor:   cfg.PanicFloor,
		ConfirmDelay: cfg.PanicConfirmDelay,
		SnapshotPath: cfg.SnapshotFile,
	})
	gw, err := gateway.New(cfg.gateway(), subject, log.Named("gateway"))
	if err != nil {
		return err
	}
	defer gw.Close()

	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()
	subjectDone := make(chan struct{})
	go func() { defer close(subjectDone); _ = subject.Run(runCtx) }()
	defer func() { cancelRun(); <-subjectDone }()
	go func() {
		select {
		case <-subject.Synced():
			log.Info("registry synced", zap.Int("services", len(subject.Services())))
		case <-runCtx.Done():
		}
	}()

	draining := make(chan struct{})
	ready := func() bool {
		select {
		case <-draining:
			return false
		default:
			return subject.Ready()
		}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	var adminSrv *http.Server
	var adminLn net.Listener
	if cfg.Admin != "" {
		if adminLn, err = net.Listen("tcp", cfg.Admin); err != nil {
			ln.Close()
			return fmt.Errorf("admin listen %s: %w", cfg.Admin, err)
		}
		adminSrv = &http.Server{Handler: adminHandler(gw, subject, ready), ReadHeaderTimeout: 10 * time.Second}
		go adminSrv.Serve(adminLn)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- gw.Serve(ln) }()
	info := runningGateway{Addr: ln.Addr().String(), RegistryEndpoint: spec.Kind + "://" + joinServers(spec.Servers)}
	if adminLn != nil {
		info.AdminAddr = adminLn.Addr().String()
	}
	announceCtx, stopAnnounce := context.WithCancel(context.WithoutCancel(ctx))
	announced := make(chan struct{})
	if u := advertiseAdmin(cfg.AdvertiseAdmin, info.AdminAddr); u != "" {
		opts := regurl.Options{Root: cfg.GatewaysRoot, TTL: cfg.RegistryTTL, Logger: log.Named("announce")}
		go func() { defer close(announced); announceGateway(announceCtx, spec, opts, u, log) }()
	} else {
		close(announced)
	}
	defer func() { stopAnnounce(); <-announced }()
	log.Info("gateway listening", zap.String("addr", info.Addr), zap.String("admin", info.AdminAddr),
		zap.String("registry", info.RegistryEndpoint))
	if started != nil {
		started(info)
	}

	hup := make(chan os.Signal, 1)
	if reload != nil {
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}
	for {
		select {
		case err := <-serveErr:
			return fmt.Errorf("serve: %w", err)
		case <-hup:
			next, err := reload()
			if err == nil {
				err = gw.Reload(next.gateway())
			}
			if err != nil {
				log.Error("config reload refused; the running config keeps serving", zap.Error(err))
				continue
			}
			log.Info("config reloaded", zap.Int("routes", len(next.Routes)))
		case <-ctx.Done():
			close(draining)
			stopAnnounce()
			<-announced
			if cfg.ShutdownDelay > 0 {
				log.Info("shutting down: not ready, still serving", zap.Duration("delay", cfg.ShutdownDelay))
				time.Sleep(cfg.ShutdownDelay)
			}
			log.Info("shutting down: draining in-flight requests", zap.Duration("timeout", cfg.ShutdownTimeout))
			sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
			err := gw.Shutdown(sctx)
			if adminSrv != nil {
				adminSrv.Shutdown(sctx)
			}
			cancel()
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Warn("shutdown did not finish in time", zap.Error(err))
			}
			log.Info("gateway stopped")
			return nil
		}
	}
}

// embeddedRegistry is an in-process etcd and the temporary directory it
// owns, if any.
type embeddedRegistry struct {
	*etcdreg.Embedded
	tmp string
}

func (e *embeddedRegistry) Close() {
	e.Embedded.Close()
	if e.tmp != "" {
		os.RemoveAll(e.tmp)
	}
}

func startEmbedded(ctx context.Context, c embeddedConfig, log *zap.Logger) (*embeddedRegistry, error) {
	dir, tmp := c.Dir, ""
	if dir == "" {
		var err error
		if tmp, err = os.MkdirTemp("", "gatehouse-registry-"); err != nil {
			return nil, err
		}
		dir = tmp
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	emb, err := etcdreg.StartEmbedded(sctx, etcdreg.EmbeddedConfig{
		ClientAddr: c.ClientAddr, PeerAddr: c.PeerAddr, Dir: dir,
		// etcd's own start-up warnings (single port, simple tokens) are expected here.
		Logger: etcdreg.AtLeast(log.Named("embedded"), zap.ErrorLevel),
	})
	if err != nil {
		if tmp != "" {
			os.RemoveAll(tmp)
		}
		return nil, fmt.Errorf("embedded registry: %w", err)
	}
	return &embeddedRegistry{Embedded: emb, tmp: tmp}, nil
}

// advertiseAdmin is the admin URL announced to sidecars: the flag, or one
// derived from the admin listener.
func advertiseAdmin(flag, adminAddr string) string {
	switch {
	case flag == "none" || adminAddr == "":
		return ""
	case flag != "":
		return strings.TrimRight(flag, "/")
	}
	host, port, err := net.SplitHostPort(adminAddr)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if host, err = os.Hostname(); err != nil {
			return ""
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}

func joinServers(s []string) string { return strings.Join(s, ",") }
