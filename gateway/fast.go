package gateway

import (
	"bufio"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/gatehouse/gatehouse/loadbalance"
)

// The fasthttp front end (Config.Server "fasthttp"; the gatehouse command's default).
//
// ServeFast is the fasthttp.RequestHandler twin of ServeHTTP: the same
// table, match, balancer, retry policy and budget, error statuses, access
// log fields and X-Forwarded-* rule. Upstream it speaks HTTP/1.1 itself on
// the lean engine's per-host pools (fast_upstream.go), byte to byte between
// fasthttp's request/response headers and the pooled connection, on the
// handler's goroutine. Upgrade requests hijack the client connection and
// tunnel (fast_tunnel.go). HTTP/2 cleartext is sniffed off the listener and
// served by net/http (fast_listener.go, fast_serve.go).
//
// Differences from the net/http front end:
//   - fasthttp has no request context: a client that goes away is noticed
//     only when a write to it fails. The wait for a response head is bounded
//     by ResponseHeaderTimeout; a streamed body stops at the first failed
//     write (logged as 499, Done(nil)).
//   - Responses whose Content-Length is at most fastInlineMax are read whole,
//     then written; larger ones are streamed with their length; chunked,
//     close-delimited and text/event-stream responses are streamed chunked,
//     flushed after each upstream read. Response trailers are dropped.
//   - Interim 1xx responses are dropped (as on the lean engine).
//   - Instances whose URL is not http:// (TLS), and tables whose engine is
//     not lean, go through fasthttpadaptor and ServeHTTP: correct, but the
//     response is buffered whole, and for TLS instances the balancer is
//     asked twice.
type fastCall struct {
	g   *Gateway
	t   *table
	e   *leanEngine
	ctx *fasthttp.RequestCtx

	start                    time.Time
	method, path, query      string // views of the request's bytes
	route, service, upstream string
	status                   int   // decided without sending (499)
	bytes                    int64 // response body bytes sent or queued
	err                      error
	attempts                 int

	target   target
	peer     netip.Addr // the client's address, unmapped; invalid if unknown
	hasBody  bool
	bodyUsed bool // some of the request body was read: not replayable
	upgrade  bool // an Upgrade request: tunnel after a 101

	// per attempt
	bodyStarted bool
	gotBytes    bool
	connTokens  string        // Connection tokens that name other headers to drop
	bw          *bufio.Writer // the upstream writer of the head being written
	visitFn     func(k, v []byte)

	stream  fastBody // a streamed response body, when streaming
	held    bool     // the response body stream or the tunnel owns the call
	adapted bool     // ServeHTTP served it through fasthttpadaptor
	head    []byte   // a 101 head for the tunnel
}

// fastInlineMax is the largest Content-Length read whole before writing.
const fastInlineMax = 64 << 10

// b2s views b as a string without copying; b must outlive the string's use
// and not change meanwhile.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

func (g *Gateway) fastCall() *fastCall {
	if c, ok := g.front.calls.Get().(*fastCall); ok {
		return c
	}
	c := &fastCall{g: g}
	c.visitFn = c.visitHeader
	c.stream.c = c
	return c
}

func (c *fastCall) release() {
	visit, g := c.visitFn, c.g
	head := c.head[:0]
	*c = fastCall{g: g, visitFn: visit, head: head}
	c.stream.c = c
	g.front.calls.Put(c)
}

// ServeFast routes, picks and proxies one request received by fasthttp.
func (g *Gateway) ServeFast(ctx *fasthttp.RequestCtx) {
	t := g.table.Load()
	e, ok := t.eng.(*leanEngine)
	if !ok {
		g.serveAdapted(ctx)
		return
	}
	c := g.fastCall()
	c.t, c.e, c.ctx = t, e, ctx
	if t.accessLog {
		c.start = time.Now()
	}
	c.serve()
	switch {
	case c.adapted:
		c.release() // the adapted ServeHTTP logged for itself
	case !c.held:
		c.finish()
	}
}

// serveAdapted hands ctx to ServeHTTP through fasthttpadaptor.
func (g *Gateway) serveAdapted(ctx *fasthttp.RequestCtx) {
	fasthttpadaptor.NewFastHTTPHandler(g)(ctx)
}

// finish logs and releases the call: at the end of ServeFast, or when a
// streamed or tunnelled response ends.
func (c *fastCall) finish() {
	if c.t.accessLog {
		c.logAccess()
	}
	c.release()
}

func (c *fastCall) serve() {
	ctx, t := c.ctx, c.t
	req := &ctx.Request
	c.method = b2s(req.Header.Method())
	path, rawPath, query, ok := splitRequestURI(b2s(req.Header.RequestURI()))
	c.path, c.query = path, query
	if !ok {
		c.writeError(http.StatusBadRequest)
		return
	}
	m, ok := t.matchParts(stripPort(b2s(req.Header.Host())), path, rawPath, c.method)
	if !ok {
		c.writeError(http.StatusNotFound)
		return
	}
	c.route, c.service = m.name, m.bind.key.service
	if ap, ok := addrPortOf(ctx.RemoteAddr()); ok {
		c.peer = ap.Addr().Unmap()
	}
	trusted := c.peer.IsValid() && t.trustedAddr(c.peer)
	cl := req.Header.ContentLength()
	c.hasBody = cl > 0 || cl == -1
	c.upgrade = len(req.Header.Peek("Upgrade")) > 0
	key := c.hashKey(m.hash)
	t.budget.deposit()
	for {
		ep, err := m.bind.bal.Pick(key)
		if err != nil {
			c.err = err
			c.writeError(http.StatusServiceUnavailable)
			return
		}
		if ep.URL.Scheme != "http" {
			// Not this front end's to carry: undo the pick, let ServeHTTP
			// do it all.
			c.g.release(ep, nil)
			c.adapted = true
			c.g.serveAdapted(ctx)
			return
		}
		c.attempts++
		c.upstream = ep.Instance.Address
		c.target = target{url: ep.URL, path: m.path, rawPath: m.rawPath, trusted: trusted}
		err = c.attempt(ep)
		if err == nil {
			return
		}
		c.err = err
		status := http.StatusBadGateway
		if isTimeout(err) {
			status = http.StatusGatewayTimeout
		}
		if c.attempts >= m.retry.attempts || !c.retryable(m.retry, err) || !t.budget.withdraw(time.Now()) {
			c.writeError(status)
			return
		}
	}
}

// retryable is retryPolicy.retryable for the fast path.
func (c *fastCall) retryable(p *retryPolicy, err error) bool {
	switch {
	case c.bodyUsed:
		return false
	case dialFailed(err):
		return true
	case isTimeout(err):
		return false
	}
	for _, m := range p.methods {
		if m == c.method {
			return true
		}
	}
	return false
}

// splitRequestURI returns what net/http puts in URL.Path, URL.RawPath and
// URL.RawQuery; it allocates only for escaped or absolute-form targets.
func splitRequestURI(uri string) (path, rawPath, query string, ok bool) {
	if uri != "" && uri[0] == '/' {
		p, q, _ := strings.Cut(uri, "?")
		if strings.IndexByte(p, '%') < 0 {
			return p, "", q, true
		}
	}
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		return "", "", "", false
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return u.Path, u.RawPath, u.RawQuery, true
}

func addrPortOf(a net.Addr) (netip.AddrPort, bool) {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort(), true
	}
	return netip.AddrPort{}, false
}

// trustedAddr is trustedPeer for an address already parsed.
func (t *table) trustedAddr(a netip.Addr) bool {
	for _, p := range t.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// hashKey is hashKey.of for the fast path.
func (c *fastCall) hashKey(k hashKey) string {
	h := &c.ctx.Request.Header
	switch k.kind {
	case hashNone:
		return ""
	case hashHeader:
		if v := h.Peek(k.name); len(v) > 0 {
			return b2s(v)
		}
	case hashCookie:
		if v := h.Cookie(k.name); len(v) > 0 {
			return b2s(v)
		}
	case hashPath:
		return c.path
	}
	if c.peer.IsValid() {
		return c.peer.String()
	}
	return ""
}

// writeError sends the gateway's JSON error body; the response has not
// begun when it is called.
func (c *fastCall) writeError(status int) {
	resp := &c.ctx.Response
	resp.ResetBody()
	resp.Header.Reset()
	msg, ok := errorMessages[status]
	if !ok {
		msg = http.StatusText(status)
	}
	resp.SetStatusCode(status)
	resp.Header.SetContentType("application/json")
	resp.Header.Set("X-Content-Type-Options", "nosniff")
	b := resp.BodyWriter()
	body := `{"error":` + strconv.Quote(msg) + `,"status":` + strconv.Itoa(status) + "}\n"
	_, _ = b.Write([]byte(body))
	c.bytes = int64(len(body))
}

func (c *fastCall) loggedStatus() int {
	if c.status != 0 {
		return c.status
	}
	return c.ctx.Response.StatusCode()
}

func (c *fastCall) logAccess() {
	ce := c.g.log.Check(zapcore.InfoLevel, "access")
	if ce == nil {
		return
	}
	ce.Write(
		// Copies: the views die with the request, and a core may keep fields.
		zap.String("method", strings.Clone(c.method)),
		zap.String("path", strings.Clone(c.path)),
		zap.String("route", c.route),
		zap.String("service", c.service),
		zap.String("upstream", c.upstream),
		zap.Int("status", c.loggedStatus()),
		zap.Duration("duration", time.Since(c.start)),
		zap.Int64("bytes", c.bytes),
		zap.Int("attempts", c.attempts),
		zap.Error(c.err),
	)
}

// done releases the endpoint of the current attempt.
func (c *fastCall) done(ep *loadbalance.Endpoint, err error) { c.g.release(ep, err) }
