package etcd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gatehouse/gatehouse/registry"
)

// Config configures a Client; zero values mean defaults.
type Config struct {
	// Endpoints are host:port or URLs of etcd members; http:// is added to
	// bare host:port.
	Endpoints []string
	// Root is the registry root; "" means registry.DefaultRoot.
	Root string
	// TTL is the lease TTL of each registration, rounded up to whole seconds
	// (default 10s). A watcher that hears nothing from etcd for a TTL checks
	// the cluster with a read and reports an error if that fails too.
	TTL time.Duration
	// DialTimeout bounds Dial's first contact and every single request
	// (default 5s).
	DialTimeout time.Duration
	// Logger receives this package's logs and, at warn level and above, the
	// etcd client's own; nil discards them.
	Logger *zap.Logger
}

// Defaults.
const (
	DefaultTTL         = 10 * time.Second
	DefaultDialTimeout = 5 * time.Second
)

// ErrClosed is returned by a closed Client or Watcher.
var ErrClosed = errors.New("etcd registry: closed")

// Client is one etcd client shared by every registration and watcher of a
// process. All methods are safe for concurrent use.
type Client struct {
	cli     *clientv3.Client
	layout  registry.Layout
	ttl     int64 // lease TTL in seconds
	timeout time.Duration
	log     *zap.Logger

	// ctx lives as long as the client; keep-alives and watches derive from it.
	ctx    context.Context
	cancel context.CancelFunc

	// mu guards regs and closed; wg.Add happens under it, so no keep-alive
	// goroutine starts after Close has begun waiting.
	mu     sync.Mutex
	regs   map[string]*lease // by record key
	closed bool
	wg     sync.WaitGroup // keep-alive drainers
}

var _ registry.Backend = (*Client)(nil)

// Dial connects to etcd and checks that it answers within DialTimeout (or
// ctx, whichever ends first).
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd registry: no endpoints")
	}
	layout, err := registry.NewLayout(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("etcd registry: %w", err)
	}
	ttl := cfg.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	timeout := cfg.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	eps := make([]string, len(cfg.Endpoints))
	for i, ep := range cfg.Endpoints {
		if !strings.Contains(ep, "://") {
			ep = "http://" + ep
		}
		eps[i] = ep
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   eps,
		DialTimeout: timeout,
		// The client logs every reconnect attempt at info; keep warnings only.
		Logger: atLeast(log.Named("etcd-client"), zap.WarnLevel),
		// Notice a silently dead connection under open streams; etcd allows
		// pings every 5s, and only while a stream is open.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: timeout,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd registry: dial %v: %w", eps, err)
	}
	// Client creation does not connect; one read proves the cluster answers.
	pctx, cancel := context.WithTimeout(ctx, timeout)
	_, err = cli.Get(pctx, layout.Prefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	cancel()
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("etcd registry: dial %v: %w", eps, err)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	return &Client{
		cli:     cli,
		layout:  layout,
		ttl:     int64((ttl + time.Second - 1) / time.Second),
		timeout: timeout,
		log:     log,
		ctx:     cctx,
		cancel:  ccancel,
		regs:    make(map[string]*lease),
	}, nil
}

// Close stops every keep-alive and watch and closes the connection. It does
// not revoke leases: records expire after their TTL, as after a crash.
// Deregister first for a clean shutdown.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	err := c.cli.Close()
	c.wg.Wait() // closing the client closed every keep-alive channel
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// Watcher returns a new watcher over every service under the root.
func (c *Client) Watcher() registry.Watcher { return newWatcher(c) }

// request bounds one etcd request by the caller's context and the client's
// timeout; clientv3 otherwise waits for a connection indefinitely.
func (c *Client) request(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// AtLeast raises l's level to lvl; zap refuses (and complains) when l is
// already quieter than lvl, so that case keeps l as it is.
func AtLeast(l *zap.Logger, lvl zapcore.Level) *zap.Logger {
	if l.Core().Enabled(lvl) {
		return l.WithOptions(zap.IncreaseLevel(lvl))
	}
	return l
}

func atLeast(l *zap.Logger, lvl zapcore.Level) *zap.Logger { return AtLeast(l, lvl) }
