package etcd

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// EmbeddedConfig configures a single-member etcd run in this process.
type EmbeddedConfig struct {
	ClientAddr string // host:port, default "127.0.0.1:2379"
	PeerAddr   string // host:port, default "127.0.0.1:2380"
	Dir        string // data directory; required
	// Logger receives the server's logs at warn level and above; nil
	// discards them.
	Logger *zap.Logger
}

// Embedded is a running embedded etcd member.
type Embedded struct {
	etcd     *embed.Etcd
	endpoint string
}

// StartEmbedded starts an etcd member and waits until it serves clients, ctx
// ends, or a minute passes.
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.Dir == "" {
		return nil, errors.New("embedded etcd: no data directory")
	}
	if cfg.ClientAddr == "" {
		cfg.ClientAddr = "127.0.0.1:2379"
	}
	if cfg.PeerAddr == "" {
		cfg.PeerAddr = "127.0.0.1:2380"
	}
	ec, err := embedConfig(cfg)
	if err != nil {
		return nil, err
	}
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: %w", err)
	}
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	select {
	case <-e.Server.ReadyNotify():
		return &Embedded{etcd: e, endpoint: cfg.ClientAddr}, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd: %w", err)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("embedded etcd: not ready: %w", ctx.Err())
	case <-t.C:
		e.Close()
		return nil, errors.New("embedded etcd: not ready after a minute")
	}
}

// embedConfig translates cfg into the etcd server's own configuration.
func embedConfig(cfg EmbeddedConfig) (*embed.Config, error) {
	curl, err := url.Parse("http://" + cfg.ClientAddr)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: client address %q: %w", cfg.ClientAddr, err)
	}
	purl, err := url.Parse("http://" + cfg.PeerAddr)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: peer address %q: %w", cfg.PeerAddr, err)
	}
	lg := cfg.Logger
	if lg == nil {
		lg = zap.NewNop()
	}
	ec := embed.NewConfig()
	ec.Name = "gatehouse"
	ec.Dir = cfg.Dir
	ec.ListenClientUrls = []url.URL{*curl}
	ec.AdvertiseClientUrls = []url.URL{*curl}
	ec.ListenPeerUrls = []url.URL{*purl}
	ec.AdvertisePeerUrls = []url.URL{*purl}
	ec.InitialCluster = ec.Name + "=" + purl.String()
	ec.LogLevel = "warn"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(atLeast(lg.Named("etcd-server"), zap.WarnLevel))
	return ec, nil
}

// Endpoint is the client address, host:port.
func (e *Embedded) Endpoint() string { return e.endpoint }

// Close stops the member and waits for it to end. etcd lets open watch and
// keep-alive streams finish for up to about seven seconds, so close this
// process's own clients first.
func (e *Embedded) Close() {
	e.etcd.Close()
	<-e.etcd.Server.StopNotify()
}
