package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"
)

// leanExchange is one request/response exchange of the lean engine on one
// upstream connection, run on the handler's goroutine.
type leanExchange struct {
	e *leanEngine
	c *upConn
	w http.ResponseWriter
	r *http.Request
	t *target

	bodyStarted bool // the request body has been read from
	gotBytes    bool // a byte of the response has been read
	cutOff      bool // the response header has gone to the client
	reusable    bool // the exchange ended at a message boundary
	flushing    bool // flush the client's response before blocking upstream
	pending     bool // written to the client since the last flush
	buf         []byte
	out         int // body bytes gathered in buf, not yet written
}

var (
	errUnexpectedUpgrade = errors.New("upstream switched protocols without an upgrade request")
	errBadFraming        = errors.New("upstream response framing unsupported")
)

func exchangeOf(e *leanEngine, c *upConn, w http.ResponseWriter, r *http.Request, t *target) leanExchange {
	return leanExchange{e: e, c: c, w: w, r: r, t: t}
}

// run performs the exchange and closes or pools the connection.
func (x *leanExchange) run() error {
	c := x.c
	// The client's cancellation unblocks upstream I/O by expiring the
	// connection's deadlines: no watcher goroutine per request.
	stop := context.AfterFunc(x.r.Context(), c.abort)
	now := time.Now()
	err := x.send()
	if err == nil {
		err = x.receive(now)
	}
	if x.buf != nil {
		x.e.buffers.Put(x.buf)
		x.buf, x.out = nil, 0
	}
	if !stop() || err != nil || !x.reusable {
		c.close()
		return err
	}
	c.pool.put(c, now)
	return nil
}

func (x *leanExchange) buffer() []byte {
	if x.buf == nil {
		x.buf = x.e.buffers.Get()
	}
	return x.buf
}

// send writes the request head and body.
func (x *leanExchange) send() error {
	bw := x.c.bw
	writeRequestHead(bw, x.r, x.t)
	if hasBody(x.r) {
		if err := x.sendBody(); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// sendBody streams the request body: as is with a known length, chunked
// otherwise.
func (x *leanExchange) sendBody() error {
	x.bodyStarted = true
	// A write error sticks in bw and surfaces at Flush.
	return copyRequestBody(x.c.bw, x.r.Body, x.buffer(), x.r.ContentLength)
}

// copyRequestBody copies a request body of length cl (-1: unknown, sent
// chunked) from rd to bw through buf; both front ends use it.
func copyRequestBody(bw *bufio.Writer, rd io.Reader, buf []byte, cl int64) error {
	chunked := cl < 0
	remain := cl
	for chunked || remain > 0 {
		p := buf
		if !chunked && remain < int64(len(p)) {
			p = p[:remain]
		}
		n, rerr := rd.Read(p)
		if n > 0 {
			if chunked {
				b := strconv.AppendInt(bw.AvailableBuffer(), int64(n), 16)
				b = append(b, '\r', '\n')
				_, _ = bw.Write(b)
			} else {
				remain -= int64(n)
			}
			_, _ = bw.Write(p[:n])
			if chunked {
				_, _ = bw.WriteString("\r\n")
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if !chunked && remain > 0 {
		return io.ErrUnexpectedEOF
	}
	if chunked {
		_, _ = bw.WriteString("0\r\n\r\n")
	}
	return nil
}

// receive reads the response head and streams the response to the client.
func (x *leanExchange) receive(now time.Time) error {
	c := x.c
	if d := x.e.tc.responseHeaderTimeout; d > 0 && (!c.readDeadline || c.deadline.Sub(now) < d-d/8) {
		// A deadline still armed from the previous exchange and at least
		// 7/8 of the timeout away is kept: moving it costs a timer update
		// per request, for a timeout that is coarse anyway.
		c.deadline = now.Add(d)
		_ = c.nc.SetReadDeadline(c.deadline)
		c.readDeadline = true
		// abort may have run before the deadline was moved forward.
		if err := x.r.Context().Err(); err != nil {
			return err
		}
	}
	var h respHead
	for {
		var err error
		if h, err = x.readHead(); err != nil {
			return err
		}
		if h.status >= 200 {
			break
		}
		if h.status == http.StatusSwitchingProtocols {
			return errUnexpectedUpgrade
		}
		// Interim responses (100, 102, 103) are dropped.
	}
	x.exportHead(&h)
	x.w.WriteHeader(h.status)
	x.cutOff = true
	x.flushing = h.stream
	x.pending = h.stream
	var err error
	switch {
	case h.noBody:
	case h.chunked:
		err = x.copyChunked()
	default:
		err = x.copyBody(h.length)
	}
	if err == nil {
		err = x.drain()
	}
	if err != nil {
		return err
	}
	x.reusable = !h.close && (h.noBody || h.chunked || h.length >= 0)
	return nil
}

// beforeBlock runs before a read that may wait for the upstream. It lifts
// the response-header deadline, which must not limit a long body. Unless
// the upstream has data ready (the read will not wait), it passes the
// gathered bytes to the client and, for streams, flushes them.
func (x *leanExchange) beforeBlock() error {
	c := x.c
	if c.readDeadline {
		c.readDeadline = false
		_ = c.nc.SetReadDeadline(time.Time{})
		if err := x.r.Context().Err(); err != nil {
			return err
		}
	}
	if c.readable() {
		return nil
	}
	if err := x.drain(); err != nil {
		return err
	}
	if x.pending {
		x.pending = false
		if f, ok := x.w.(http.Flusher); ok {
			f.Flush()
		}
	}
	return nil
}

// write sends p to the client.
func (x *leanExchange) write(p []byte) error {
	_, err := x.w.Write(p)
	x.pending = x.flushing
	return err
}
