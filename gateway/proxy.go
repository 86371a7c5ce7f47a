package gateway

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// engine forwards requests to upstreams: leanEngine (the default) or
// proxyEngine (httputil.ReverseProxy), chosen by Config.Engine.
//
// forward is called concurrently. It does not write errors: it returns the
// upstream error, with nothing sent to w, and the gateway turns it into a
// status in one place. A panic of http.ErrAbortHandler means the response
// was cut off after its header had been sent. closeIdle may be called at any
// time, also while requests are in flight.
type engine interface {
	forward(w http.ResponseWriter, r *http.Request, t *target) error
	closeIdle()
	// closeHost drops the connections to an upstream host that left the
	// registry; in-flight requests on them finish first.
	closeHost(host string)
}

// target is where and how one request goes upstream.
type target struct {
	url           *url.URL // the instance's base URL
	path, rawPath string   // request path after the route's rewrite
	trusted       bool     // the peer is a trusted proxy
}

// transportConfig is the part of Config that shapes connections; the engine
// is rebuilt only when it changes, so that reloads keep warm connections.
type transportConfig struct {
	dialTimeout, responseHeaderTimeout, idleConnTimeout time.Duration
	maxIdleConnsPerHost                                 int
	engine                                              string
}

func transportConfigOf(c Config) transportConfig {
	return transportConfig{c.DialTimeout, c.ResponseHeaderTimeout, c.IdleConnTimeout, c.MaxIdleConnsPerHost, c.Engine}
}

// newEngine builds the engine tc names.
func newEngine(tc transportConfig, log *zap.Logger) engine {
	if tc.engine == EngineReverseProxy {
		return newProxyEngine(tc, log)
	}
	return newLeanEngine(tc, log)
}

func newTransport(tc transportConfig) *http.Transport {
	d := &net.Dialer{Timeout: tc.dialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		// Upstreams come from the registry; an environment proxy must not
		// sit between the gateway and them.
		Proxy:       nil,
		DialContext: d.DialContext,
		// No global cap: the per-host cap is what keeps connections reused
		// under load instead of piling up in TIME_WAIT.
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   tc.maxIdleConnsPerHost,
		IdleConnTimeout:       tc.idleConnTimeout,
		ResponseHeaderTimeout: tc.responseHeaderTimeout,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// proxyEngine is the httputil.ReverseProxy engine. Each request borrows a
// pooled call whose ReverseProxy has its Rewrite and ErrorHandler bound to
// the call, so that per-request data reaches them without context values or
// closures.
type proxyEngine struct {
	transport *http.Transport
	buffers   *bufferPool
	errorLog  *zap.Logger
	calls     sync.Pool // *proxyCall
}

type proxyCall struct {
	rp  httputil.ReverseProxy
	t   *target
	err error
}

func newProxyEngine(tc transportConfig, log *zap.Logger) *proxyEngine {
	e := &proxyEngine{transport: newTransport(tc), buffers: newBufferPool(), errorLog: log.Named("proxy")}
	stdLog, err := zap.NewStdLogAt(e.errorLog, zapcore.WarnLevel)
	if err != nil {
		stdLog = zap.NewStdLog(e.errorLog) // only fails for an invalid level
	}
	e.calls.New = func() any {
		c := &proxyCall{}
		c.rp = httputil.ReverseProxy{
			Rewrite:      c.rewrite,
			Transport:    e.transport,
			BufferPool:   e.buffers,
			ErrorLog:     stdLog,
			ErrorHandler: c.fail,
		}
		return c
	}
	return e
}

func (e *proxyEngine) forward(w http.ResponseWriter, r *http.Request, t *target) error {
	c := e.calls.Get().(*proxyCall)
	c.t, c.err = t, nil
	c.rp.ServeHTTP(w, r)
	err := c.err
	c.t, c.err = nil, nil
	e.calls.Put(c)
	return err
}

func (e *proxyEngine) closeIdle() { e.transport.CloseIdleConnections() }

// closeHost is left to IdleConnTimeout: http.Transport can only close
// every idle connection at once, which would cost the other hosts theirs.
func (e *proxyEngine) closeHost(string) {}

// rewrite runs with the inbound X-Forwarded-* already removed from Out.
func (c *proxyCall) rewrite(pr *httputil.ProxyRequest) {
	t := c.t
	pr.Out.URL.Path, pr.Out.URL.RawPath = t.path, t.rawPath
	pr.SetURL(t.url)
	if t.trusted {
		// Extend the chain a trusted proxy started, and keep what it says
		// about the original host and scheme.
		if v := pr.In.Header["X-Forwarded-For"]; len(v) > 0 {
			pr.Out.Header["X-Forwarded-For"] = v
		}
		pr.SetXForwarded()
		for _, h := range [...]string{"X-Forwarded-Host", "X-Forwarded-Proto"} {
			if v := pr.In.Header[h]; len(v) > 0 {
				pr.Out.Header[h] = v
			}
		}
		return
	}
	pr.SetXForwarded()
}

// fail records the error for forward to return; writing is the gateway's job.
func (c *proxyCall) fail(_ http.ResponseWriter, _ *http.Request, err error) { c.err = err }

// bufferPool lends 32 KiB copy buffers. It pools array pointers, so that
// neither Get nor Put allocates.
type bufferPool struct{ p sync.Pool }

const bufferSize = 32 << 10

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { return new([bufferSize]byte) }}}
}

func (b *bufferPool) Get() []byte { return b.p.Get().(*[bufferSize]byte)[:] }

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) >= bufferSize {
		b.p.Put((*[bufferSize]byte)(buf[:bufferSize]))
	}
}
