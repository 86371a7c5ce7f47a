package gateway

import (
	"bufio"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// recorder notes the status and size of a response. It keeps the wrapped
// writer's optional powers: Flush for streaming, Hijack for WebSocket
// upgrades, and Unwrap for http.ResponseController.
type recorder struct {
	http.ResponseWriter
	status   int // final status; 0 until the header is sent
	bytes    int64
	hijacked bool
}

func (w *recorder) WriteHeader(code int) {
	// 1xx other than 101 are interim (e.g. 103 Early Hints) and pass through.
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *recorder) Flush() { _ = w.FlushError() }

// FlushError is what http.ResponseController prefers over Flush.
func (w *recorder) FlushError() error {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.hijacked = true
		if w.status == 0 {
			w.status = http.StatusSwitchingProtocols
		}
	}
	return c, brw, err
}

func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// headerSent reports whether it is too late to send an error status.
func (w *recorder) headerSent() bool { return w.status != 0 || w.hijacked }

// exchange is the per-request state, pooled so that the gateway's own part
// of a proxied request does not allocate.
type exchange struct {
	rec      recorder
	target   target
	start    time.Time
	route    string
	service  string
	upstream string
	status   int   // a status the gateway decided without sending (499)
	err      error // the upstream or pick error, for the access log
	attempts int   // upstream tries, retries included
	body     replayBody
}

func (x *exchange) reset(w http.ResponseWriter) {
	*x = exchange{rec: recorder{ResponseWriter: w}}
}

// loggedStatus is what the access log reports.
func (x *exchange) loggedStatus() int {
	switch {
	case x.status != 0:
		return x.status
	case x.rec.status != 0:
		return x.rec.status
	}
	return http.StatusOK // the handler returned without writing
}

func (g *Gateway) logAccess(r *http.Request, x *exchange) {
	ce := g.log.Check(zapcore.InfoLevel, "access")
	if ce == nil {
		return
	}
	ce.Write(
		zap.String("method", r.Method),
		zap.String("path", r.URL.Path),
		zap.String("route", x.route),
		zap.String("service", x.service),
		zap.String("upstream", x.upstream),
		zap.Int("status", x.loggedStatus()),
		zap.Duration("duration", time.Since(x.start)),
		zap.Int64("bytes", x.rec.bytes),
		zap.Int("attempts", x.attempts),
		zap.Error(x.err), // skipped when nil
	)
}
