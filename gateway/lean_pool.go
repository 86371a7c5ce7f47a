package gateway

import (
	"bufio"
	"context"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// upConn is one persistent upstream connection. It is used by one exchange
// at a time; in between it sits in its pool's idle stack.
type upConn struct {
	nc     net.Conn
	rc     syscall.RawConn // for the liveness peek; nil if unavailable
	br     *bufio.Reader
	bw     *bufio.Writer
	pool   *hostPool
	reused bool      // it served an exchange before this one
	idleAt time.Time // when it was last put back (approximately)
	// readDeadline is set while the response-header deadline is armed.
	readDeadline bool
	deadline     time.Time
	// head is scratch for parsing response heads; its contents are copied
	// into one string per response.
	head  []byte
	spans []headerSpan
	// peek results, fields so that the peek callback does not allocate.
	peekFn    func(fd uintptr) bool
	peekBuf   [1]byte
	peekEmpty bool // nothing to read yet: a read would wait
}

const (
	upReadBufSize  = 8 << 10
	upWriteBufSize = 4 << 10
)

func newUpConn(nc net.Conn, p *hostPool) *upConn {
	c := &upConn{
		nc:   nc,
		br:   bufio.NewReaderSize(nc, upReadBufSize),
		bw:   bufio.NewWriterSize(nc, upWriteBufSize),
		pool: p,
	}
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			c.rc = rc
			c.peekFn = c.peek
		}
	}
	return c
}

// alive reports whether an idle connection is still open with nothing
// unread: a server that closed it while idle has sent a FIN by now.
func (c *upConn) alive() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	if c.rc == nil {
		return true
	}
	c.peekEmpty = false
	if err := c.rc.Read(c.peekFn); err != nil {
		return false
	}
	return c.peekEmpty
}

// readable reports whether a read would return at once, with data or EOF.
// It errs towards false, which costs a flush, never a stalled stream.
func (c *upConn) readable() bool {
	if c.br.Buffered() > 0 {
		return true
	}
	if c.rc == nil {
		return false
	}
	c.peekEmpty = true
	if err := c.rc.Read(c.peekFn); err != nil {
		return false
	}
	return !c.peekEmpty
}

// abort unblocks the exchange's reads and writes; it runs when the client's
// request context ends. The connection is not reused afterwards.
func (c *upConn) abort() { _ = c.nc.SetDeadline(aLongTimeAgo) }

var aLongTimeAgo = time.Unix(1, 0)

func (c *upConn) close() { _ = c.nc.Close() }

// hostPool holds the idle connections to one upstream host.
type hostPool struct {
	set  *poolSet
	key  string // the target URL's host, as routed
	addr string // host:port to dial

	// mu guards idle, timer and retired. Lock order: poolSet.mu before mu.
	mu    sync.Mutex
	idle  []*upConn // a stack: the most recently used on top
	timer *time.Timer
	// retired: the host left the registry; connections coming back from
	// requests still in flight are closed, not kept.
	retired bool
}

// conn returns an idle connection, most recently used first, or dials one;
// with fresh, it always dials. With check, an idle connection is first
// tested with alive.
func (p *hostPool) conn(ctx context.Context, fresh, check bool) (*upConn, error) {
	for !fresh {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if check && !c.alive() {
			c.close()
			continue
		}
		c.reused = true
		return c, nil
	}
	nc, err := p.set.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	return newUpConn(nc, p), nil
}

// put returns a connection whose exchange ended cleanly.
func (p *hostPool) put(c *upConn, now time.Time) {
	c.idleAt = now
	p.mu.Lock()
	if p.retired || len(p.idle) >= p.set.maxIdle {
		p.mu.Unlock()
		c.close()
		return
	}
	p.idle = append(p.idle, c)
	if p.timer == nil {
		p.timer = time.AfterFunc(p.set.idleTimeout, p.prune)
	}
	p.mu.Unlock()
}

// prune closes connections idle for longer than the idle timeout; it runs
// on the pool's timer while the pool has idle connections. A pool left
// empty is dropped from its set, so that removed instances leave nothing.
func (p *hostPool) prune() {
	cutoff := time.Now().Add(-p.set.idleTimeout)
	p.mu.Lock()
	i := 0
	for i < len(p.idle) && !p.idle[i].idleAt.After(cutoff) {
		p.idle[i].close()
		p.idle[i] = nil
		i++
	}
	p.idle = append(p.idle[:0], p.idle[i:]...)
	empty := len(p.idle) == 0
	if empty {
		p.timer = nil
	} else {
		p.timer.Reset(p.idle[0].idleAt.Sub(cutoff))
	}
	p.mu.Unlock()
	if empty {
		p.set.dropIfEmpty(p)
	}
}

func (p *hostPool) closeIdle() {
	p.mu.Lock()
	for i, c := range p.idle {
		c.close()
		p.idle[i] = nil
	}
	p.idle = p.idle[:0]
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	p.mu.Unlock()
}

// poolSet maps upstream hosts to their pools. Lookups load an immutable
// map and take no lock; a new host copies the map under mu.
type poolSet struct {
	pools       atomic.Pointer[map[string]*hostPool]
	dialer      net.Dialer
	maxIdle     int
	idleTimeout time.Duration

	mu sync.Mutex // serializes writers of pools
}

func (s *poolSet) init(tc transportConfig) {
	s.dialer = net.Dialer{Timeout: tc.dialTimeout, KeepAlive: 30 * time.Second}
	s.maxIdle, s.idleTimeout = tc.maxIdleConnsPerHost, tc.idleConnTimeout
	m := map[string]*hostPool{}
	s.pools.Store(&m)
}

func (s *poolSet) get(host string) *hostPool {
	if p, ok := (*s.pools.Load())[host]; ok {
		return p
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.pools.Load()
	if p, ok := old[host]; ok {
		return p
	}
	addr := host
	if _, port, err := net.SplitHostPort(host); err != nil || port == "" {
		addr = net.JoinHostPort(trimBrackets(host), "80")
	}
	p := &hostPool{set: s, key: host, addr: addr}
	m := make(map[string]*hostPool, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[host] = p
	s.pools.Store(&m)
	return p
}

func trimBrackets(h string) string {
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		return h[1 : len(h)-1]
	}
	return h
}

// dropIfEmpty removes p from the set unless it has idle connections again.
// Exchanges still holding a connection of p put it back into p, whose own
// timer then closes it.
func (s *poolSet) dropIfEmpty(p *hostPool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p.mu.Lock()
	empty := len(p.idle) == 0
	p.mu.Unlock()
	old := *s.pools.Load()
	if !empty || old[p.key] != p {
		return
	}
	m := make(map[string]*hostPool, len(old))
	for k, v := range old {
		if v != p {
			m[k] = v
		}
	}
	s.pools.Store(&m)
}

func (s *poolSet) closeIdle() {
	for _, p := range *s.pools.Load() {
		p.closeIdle()
	}
}

// closeHost retires the pool of a host that left the registry: its idle
// connections close now, those in use when their requests end. A host that
// comes back gets a new pool.
func (s *poolSet) closeHost(host string) {
	s.mu.Lock()
	old := *s.pools.Load()
	p, ok := old[host]
	if ok {
		m := make(map[string]*hostPool, len(old))
		for k, v := range old {
			if k != host {
				m[k] = v
			}
		}
		s.pools.Store(&m)
	}
	s.mu.Unlock()
	if ok {
		p.mu.Lock()
		p.retired = true
		p.mu.Unlock()
		p.closeIdle()
	}
}
