package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

// front is the Gateway's serving state: the servers Serve runs, for
// Shutdown, and ServeFast's pooled calls.
type front struct {
	calls sync.Pool // *fastCall

	// mu guards the fields below; it is never held while serving or
	// shutting down.
	mu       sync.Mutex
	hs       *http.Server     // net/http: all requests, or h2c beside fasthttp
	fs       *fasthttp.Server // the fasthttp front end, when chosen
	sniff    *sniffListener
	shutdown bool
}

// Server timeouts of the front ends Serve runs.
const (
	serveReadHeaderTimeout = 10 * time.Second
	serveIdleTimeout       = 120 * time.Second
)

func validateServer(server, engine string) error {
	switch server {
	case "", ServerNetHTTP:
		return nil
	case ServerFastHTTP:
		if engine == EngineReverseProxy {
			return fmt.Errorf("server %s: needs engine %s, not %s", ServerFastHTTP, EngineLean, engine)
		}
		return nil
	}
	return fmt.Errorf("server: unknown server %q (valid: %s, %s)", server, ServerNetHTTP, ServerFastHTTP)
}

// Serve serves the gateway on ln with the front end Config.Server names,
// until Shutdown; then it returns http.ErrServerClosed, like
// http.Server.Serve. "nethttp" serves HTTP/1.1 and h2c with net/http;
// "fasthttp" sorts connections by their first bytes: HTTP/2 (h2c, gRPC) to
// net/http, the rest to fasthttp and ServeFast. Serve is called at most
// once per Gateway.
func (g *Gateway) Serve(ln net.Listener) error {
	g.mu.Lock()
	server := g.cfg.Server
	g.mu.Unlock()
	hs := &http.Server{
		Handler:           h2c.NewHandler(g, &http2.Server{}),
		ReadHeaderTimeout: serveReadHeaderTimeout,
		IdleTimeout:       serveIdleTimeout,
		ErrorLog:          zap.NewStdLog(g.log.Named("http")),
	}
	f := &g.front
	f.mu.Lock()
	if f.shutdown || f.hs != nil {
		f.mu.Unlock()
		return http.ErrServerClosed
	}
	f.hs = hs
	if server != ServerFastHTTP {
		f.mu.Unlock()
		return hs.Serve(ln)
	}
	fs := g.newFastServer()
	sl := newSniffListener(ln)
	f.fs, f.sniff = fs, sl
	f.mu.Unlock()

	h2err := make(chan error, 1)
	go func() { h2err <- hs.Serve(sl.h2) }()
	err := fs.Serve(sl.h1)
	_ = sl.close()
	if e := <-h2err; err == nil && !errors.Is(e, http.ErrServerClosed) {
		err = e
	}
	sl.wg.Wait()
	f.mu.Lock()
	down := f.shutdown
	f.mu.Unlock()
	if down && (err == nil || errors.Is(err, net.ErrClosed)) {
		return http.ErrServerClosed
	}
	return err
}

// newFastServer configures fasthttp for proxying: bodies streamed both
// ways, no default headers added to upstream responses, no path rewriting.
func (g *Gateway) newFastServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                       g.ServeFast,
		Name:                          "",
		NoDefaultServerHeader:         true,
		NoDefaultDate:                 true,
		NoDefaultContentType:          true,
		DisableHeaderNamesNormalizing: false,
		StreamRequestBody:             true,
		MaxRequestBodySize:            8 << 10, // read ahead; the rest streams
		DisablePreParseMultipartForm:  true,
		ReadTimeout:                   0,
		IdleTimeout:                   serveIdleTimeout,
		ReadBufferSize:                16 << 10,
		Concurrency:                   1 << 20,
		CloseOnShutdown:               true,
		Logger:                        fastLogger{g.log.Named("fasthttp")},
	}
}

// Shutdown stops accepting, lets requests in flight finish and closes idle
// connections, until ctx ends. Hijacked connections (WebSocket tunnels) are
// not waited for, as with net/http.
func (g *Gateway) Shutdown(ctx context.Context) error {
	f := &g.front
	f.mu.Lock()
	f.shutdown = true
	hs, fs := f.hs, f.fs
	f.mu.Unlock()
	var errs []error
	if fs != nil {
		errs = append(errs, fs.ShutdownWithContext(ctx))
	}
	if hs != nil {
		errs = append(errs, hs.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// fastLogger routes fasthttp's own messages to the gateway's log.
type fastLogger struct{ l *zap.Logger }

func (l fastLogger) Printf(format string, args ...any) { l.l.Sugar().Warnf(format, args...) }
