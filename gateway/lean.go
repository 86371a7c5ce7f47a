package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"go.uber.org/zap"
)

// leanEngine forwards plain HTTP/1.1 exchanges itself, on its own pools of
// persistent upstream connections, and hands everything else to a
// proxyEngine (httputil.ReverseProxy). It runs each exchange on the calling
// goroutine: the request head and body are written, then the response head
// is parsed and the body streamed to the client, without the transport's
// per-connection goroutines and channel hand-offs, and without building an
// outbound http.Request or http.Response.
//
// Fallback (see leanable): upstreams that are not http:// (TLS, h2c),
// Upgrade requests (WebSocket), Expect: 100-continue, requests that declare
// trailers, gRPC, CONNECT, and HTTP/2 requests of unknown length, which may
// be full duplex.
//
// Differences from the fallback on the lean path: interim 1xx responses are
// dropped, not forwarded; the request body is sent whole before the
// response is read, so an upstream that answers early and closes without
// reading the body yields 502; the response-header timeout is kept armed
// across exchanges on a connection and moved only when less than 7/8 of it
// is left, so it fires between 7/8 and all of ResponseHeaderTimeout.
//
// Stale connections: a reused connection is peeked (a non-blocking
// MSG_PEEK) before a request that has a body or a non-idempotent method,
// and dropped if the server has closed it. Any request that fails on a
// reused connection before a byte of response arrived, without having read
// its body, is sent again once on a new connection.
type leanEngine struct {
	tc       transportConfig
	fallback *proxyEngine
	buffers  *bufferPool
	pools    poolSet
}

func newLeanEngine(tc transportConfig, log *zap.Logger) *leanEngine {
	fb := newProxyEngine(tc, log)
	e := &leanEngine{tc: tc, fallback: fb, buffers: fb.buffers}
	e.pools.init(tc)
	return e
}

func (e *leanEngine) closeHost(host string) { e.pools.closeHost(host) }

func (e *leanEngine) closeIdle() {
	e.fallback.closeIdle()
	e.pools.closeIdle()
}

// leanable reports whether the lean path can carry r to t.
func leanable(r *http.Request, t *target) bool {
	h := r.Header
	switch {
	case t.url.Scheme != "http",
		r.Method == http.MethodConnect,
		len(h["Upgrade"]) > 0,
		len(h["Expect"]) > 0,
		r.Trailer != nil,
		r.ProtoMajor >= 2 && r.ContentLength < 0:
		return false
	}
	if ct := h["Content-Type"]; len(ct) > 0 && strings.HasPrefix(ct[0], "application/grpc") {
		return false
	}
	return true
}

// hasBody reports whether r carries a request body upstream.
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// idempotent methods are safe to replay after a failure on a reused
// connection whatever the server did with the first attempt.
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

func (e *leanEngine) forward(w http.ResponseWriter, r *http.Request, t *target) error {
	if !leanable(r, t) {
		return e.fallback.forward(w, r, t)
	}
	p := e.pools.get(t.url.Host)
	ctx := r.Context()
	// A non-idempotent request or one with a body is not replayed once
	// written; so check a reused connection is still open before writing.
	check := hasBody(r) || !idempotent(r.Method)
	for attempt := 0; ; attempt++ {
		c, err := p.conn(ctx, attempt > 0, check)
		if err != nil {
			if ce := ctx.Err(); ce != nil {
				return ce
			}
			return err
		}
		x := exchangeOf(e, c, w, r, t)
		err = x.run()
		if err == nil {
			return nil
		}
		if x.cutOff {
			// The response has begun: too late for a status. Abort the
			// client's response, as httputil.ReverseProxy does.
			panic(http.ErrAbortHandler)
		}
		if ce := ctx.Err(); ce != nil {
			return ce
		}
		// A reused connection the server closed while idle fails before
		// any response byte. A request that consumed no body is sent
		// again, once, on a new connection (as net/http's transport
		// does for replayable requests).
		if attempt == 0 && c.reused && !x.bodyStarted && !x.gotBytes && staleConnErr(err) {
			continue
		}
		return err
	}
}

// staleConnErr is what a write to or read from a connection closed by the
// peer reports; timeouts are not among them.
func staleConnErr(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		return false
	}
	return true
}
