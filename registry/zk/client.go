package zk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	gozk "github.com/go-zookeeper/zk"
	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/registry"
)

// ErrClosed is returned by a closed Client and by its watchers.
var ErrClosed = errors.New("zookeeper: client closed")

// DefaultSessionTimeout is used when Config.SessionTimeout is zero.
const DefaultSessionTimeout = 10 * time.Second

// Config describes a ZooKeeper client.
type Config struct {
	Servers        []string      // host:port
	Chroot         string        // optional, e.g. "/prod"; prefixed to every path
	Root           string        // registry root, "" = registry.DefaultRoot
	SessionTimeout time.Duration // 0 = DefaultSessionTimeout; the server may clamp it
	Logger         *zap.Logger   // nil = nop
}

// Client is one ZooKeeper session shared by all registrations and watchers.
// Its methods are safe for concurrent use.
type Client struct {
	conn    *gozk.Conn
	events  <-chan gozk.Event // closed once the driver's goroutine has ended
	layout  registry.Layout   // root includes the chroot
	timeout time.Duration
	log     *zap.Logger
	calls   sync.WaitGroup // goroutines of in-flight driver calls, see call

	ready     chan struct{} // closed at the first session
	readyOnce sync.Once

	// mu guards the fields below. The driver's event callback takes it, so it
	// is never held across a driver call. Lock order: mu, then watcher.mu.
	mu        sync.Mutex
	closed    bool
	connected bool // the current connection has a session
	sess      session
	gen       uint64      // bumped at every session change
	offline   *time.Timer // runs while there is no session, see onOffline
	watchers  map[*watcher]struct{}
}

// session is one ZooKeeper session and the channel closed when it ends.
type session struct {
	id   int64
	lost chan struct{}
}

var _ registry.Backend = (*Client)(nil)

// Dial connects and returns once the client has a session, or with ctx's
// error. Unreachable servers are retried until ctx is done.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("zookeeper: no servers")
	}
	chroot := cfg.Chroot
	if chroot != "" && (!strings.HasPrefix(chroot, "/") || strings.HasSuffix(chroot, "/")) {
		return nil, fmt.Errorf("zookeeper: chroot %q must start with / and not end with /", chroot)
	}
	root := cfg.Root
	if root == "" {
		root = registry.DefaultRoot
	}
	layout, err := registry.NewLayout(chroot + root)
	if err != nil {
		return nil, fmt.Errorf("zookeeper: %w", err)
	}
	c := &Client{
		layout:   layout,
		timeout:  cfg.SessionTimeout,
		log:      cfg.Logger,
		ready:    make(chan struct{}),
		watchers: make(map[*watcher]struct{}),
	}
	if c.timeout <= 0 {
		c.timeout = DefaultSessionTimeout
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	// Holding mu makes the callback wait until c.conn is set: the driver
	// starts calling it before Connect returns.
	c.mu.Lock()
	conn, events, err := gozk.Connect(cfg.Servers, c.timeout,
		gozk.WithEventCallback(c.onEvent),
		gozk.WithDialer(boundedDialer(c.timeout)),
		gozk.WithLogger(printfLogger{c.log.Sugar()}),
		gozk.WithLogInfo(false))
	if err != nil {
		c.mu.Unlock()
		return nil, fmt.Errorf("zookeeper: %w", err)
	}
	c.conn, c.events = conn, events
	c.mu.Unlock()

	select {
	case <-c.ready:
	case <-ctx.Done():
		c.Close()
		return nil, fmt.Errorf("zookeeper: connect to %v: %w", cfg.Servers, ctx.Err())
	}
	if chroot != "" {
		if err := c.ensure(ctx, chroot); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Close ends the session, which deletes its ephemeral records, closes every
// lost channel, and fails every watcher with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.endSessionLocked()
	c.stopOfflineLocked()
	for w := range c.watchers {
		w.shutdown()
	}
	clear(c.watchers)
	c.mu.Unlock()

	c.conn.Close()
	c.calls.Wait()
	// The driver closes its event channel when its goroutine ends.
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case _, ok := <-c.events:
			if !ok {
				return nil
			}
		case <-t.C:
			return errors.New("zookeeper: driver did not stop within 5s")
		}
	}
}

// Watcher returns a new watcher over every service under the root.
func (c *Client) Watcher() registry.Watcher {
	w := newWatcher(c)
	c.mu.Lock()
	if c.closed {
		w.shutdown()
	} else {
		c.watchers[w] = struct{}{}
	}
	c.mu.Unlock()
	return w
}

func (c *Client) removeWatcher(w *watcher) {
	c.mu.Lock()
	delete(c.watchers, w)
	c.mu.Unlock()
}

// onEvent receives every driver event on the driver's goroutine; it must not
// block or call the driver.
func (c *Client) onEvent(ev gozk.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	switch {
	case ev.Type == gozk.EventSession && ev.State == gozk.StateHasSession:
		if id := c.conn.SessionID(); id != c.sess.id {
			if c.sess.id != 0 {
				c.log.Warn("zookeeper session replaced", zap.Int64("old", c.sess.id), zap.Int64("new", id))
				c.endSessionLocked()
				c.failWatchersLocked(errors.New("zookeeper: session replaced"), true)
			}
			c.sess = session{id: id, lost: make(chan struct{})}
			c.gen++
		}
		c.connected = true
		c.stopOfflineLocked()
		c.readyOnce.Do(func() { close(c.ready) })
	case ev.Type == gozk.EventSession && ev.State == gozk.StateExpired:
		c.log.Warn("zookeeper session expired", zap.Int64("session", c.sess.id))
		c.connected = false
		c.endSessionLocked()
		c.failWatchersLocked(gozk.ErrSessionExpired, true)
	case ev.Type == gozk.EventSession:
		if ev.State == gozk.StateDisconnected && c.connected {
			c.connected = false
			if c.offline == nil {
				c.offline = time.AfterFunc(c.timeout, c.onOffline)
			}
		}
	case ev.Type == gozk.EventNotWatching:
		// The driver dropped every watch (session expired or closing).
		c.failWatchersLocked(fmt.Errorf("zookeeper: watch on %s dropped: %w", ev.Path, ev.Err), true)
	default:
		for w := range c.watchers {
			w.notify(ev)
		}
	}
}

// onOffline fails the watchers when no session came back within the
// session timeout: their view may be stale, and the caller should know.
// It is not loss: the server may still hold the session.
func (c *Client) onOffline() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offline = nil
	if c.closed || c.connected {
		return
	}
	c.failWatchersLocked(fmt.Errorf("zookeeper: no connection for %v", c.timeout), false)
}

func (c *Client) stopOfflineLocked() {
	if c.offline != nil {
		c.offline.Stop()
		c.offline = nil
	}
}

func (c *Client) failWatchersLocked(err error, reset bool) {
	for w := range c.watchers {
		w.fail(err, reset)
	}
}

func (c *Client) endSessionLocked() {
	if c.sess.lost != nil {
		close(c.sess.lost)
	}
	c.sess = session{}
}

// current returns the session ID (0 between sessions) and its generation.
func (c *Client) current() (int64, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess.id, c.gen
}

// lostFor returns the lost channel of session id, closed if it has ended.
func (c *Client) lostFor(id int64) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id != 0 && id == c.sess.id {
		return c.sess.lost
	}
	ch := make(chan struct{})
	close(ch)
	return ch
}

// call runs one driver call, which takes no context, and returns early when
// ctx is done. The call's goroutine ends when the driver answers, at the
// latest when Close closes the connection; Close waits for it.
func call[T any](ctx context.Context, c *Client, f func() (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return zero, ErrClosed
	}
	c.calls.Add(1) // under mu: never after Close has started waiting
	c.mu.Unlock()
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		defer c.calls.Done()
		v, err := f()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// boundedDialer dials connections whose read and write deadlines are at
// most the session timeout away. The driver waits ten receive timeouts for
// the answer to its connect request, so a server that accepts but does not
// answer (one still starting) would stall reconnection for many sessions'
// worth of time; after one session timeout the answer is useless anyway.
func boundedDialer(limit time.Duration) gozk.Dialer {
	return func(network, addr string, timeout time.Duration) (net.Conn, error) {
		conn, err := net.DialTimeout(network, addr, timeout)
		if err != nil {
			return nil, err
		}
		return boundedConn{conn, limit}, nil
	}
}

type boundedConn struct {
	net.Conn
	limit time.Duration
}

func (b boundedConn) clamp(t time.Time) time.Time {
	if limit := time.Now().Add(b.limit); !t.IsZero() && t.After(limit) {
		return limit
	}
	return t
}

func (b boundedConn) SetReadDeadline(t time.Time) error  { return b.Conn.SetReadDeadline(b.clamp(t)) }
func (b boundedConn) SetWriteDeadline(t time.Time) error { return b.Conn.SetWriteDeadline(b.clamp(t)) }

// printfLogger routes the driver's log lines to zap. With WithLogInfo(false)
// the driver logs only failures, so they go out as warnings.
type printfLogger struct{ l *zap.SugaredLogger }

func (p printfLogger) Printf(format string, args ...any) { p.l.Warnf("zookeeper: "+format, args...) }
