package gateway

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/loadbalance"
)

// attempt forwards the request once to ep on a pooled connection, with the
// lean engine's stale-connection rule: a request that fails on a reused
// connection before any response byte, without having read its body, is
// sent once more on a new connection. On success the response is set on
// ctx (or its body stream, or the tunnel, owns ep); on error nothing was
// sent to the client and ep has been released.
func (c *fastCall) attempt(ep *loadbalance.Endpoint) error {
	p := c.e.pools.get(c.target.url.Host)
	check := c.hasBody || !idempotent(c.method)
	for try := 0; ; try++ {
		uc, err := p.conn(context.Background(), try > 0, check)
		if err != nil {
			c.done(ep, err)
			return err
		}
		err = c.exchange(uc, ep)
		if err == nil {
			return nil
		}
		uc.close()
		if try == 0 && uc.reused && !c.bodyStarted && !c.gotBytes && staleConnErr(err) {
			continue
		}
		c.done(ep, err)
		return err
	}
}

// exchange writes the request on uc and reads the response head into
// ctx.Response; then, by the body's size and kind, it reads the body inline
// and pools uc, or hands uc to a body stream or a tunnel.
func (c *fastCall) exchange(uc *upConn, ep *loadbalance.Endpoint) error {
	c.bodyStarted, c.gotBytes = false, false
	now := time.Now()
	c.writeHead(uc.bw)
	if c.hasBody {
		if err := c.sendBody(uc.bw); err != nil {
			return err
		}
	}
	if err := uc.bw.Flush(); err != nil {
		return err
	}
	c.armHeaderDeadline(uc, now)
	resp := &c.ctx.Response
	h := &resp.Header
	for {
		if _, err := uc.br.Peek(1); err != nil {
			return err
		}
		c.gotBytes = true
		if err := h.Read(uc.br); err != nil {
			return err
		}
		st := h.StatusCode()
		if st >= 200 {
			break
		}
		if st == http.StatusSwitchingProtocols {
			if !c.upgrade {
				return errUnexpectedUpgrade
			}
			return c.tunnel(uc, ep)
		}
		// Interim responses (100, 102, 103) are dropped.
	}
	closeAfter := h.ConnectionClose() || c.upgrade
	c.cleanResponseHeader()
	st := h.StatusCode()
	noBody := c.method == http.MethodHead || st == http.StatusNoContent || st == http.StatusNotModified
	cl := h.ContentLength() // -1 chunked, -2 until close
	if noBody {
		c.reuse(uc, closeAfter, now)
		c.done(ep, nil)
		return nil
	}
	stream := bytes.HasPrefix(h.ContentType(), []byte("text/event-stream"))
	if cl >= 0 && cl <= fastInlineMax && !stream {
		if err := c.readInline(uc, cl); err != nil {
			resp.ResetBody()
			return err
		}
		c.reuse(uc, closeAfter, now)
		c.done(ep, nil)
		return nil
	}
	// Streamed: the body stream owns uc, ep and the call until fasthttp
	// closes it after writing.
	b := &c.stream
	b.uc, b.ep, b.now = uc, ep, now
	b.chunked, b.remain, b.closeAfter = cl == -1, int64(cl), closeAfter
	b.reusable = cl != -2 && !closeAfter
	c.held = true
	if cl >= 0 && !stream {
		resp.SetBodyStream(b, cl)
	} else {
		resp.SetBodyStream(b, -1) // chunked: each read is written and flushed
	}
	return nil
}

func (c *fastCall) armHeaderDeadline(uc *upConn, now time.Time) {
	if d := c.e.tc.responseHeaderTimeout; d > 0 && (!uc.readDeadline || uc.deadline.Sub(now) < d-d/8) {
		uc.deadline = now.Add(d)
		_ = uc.nc.SetReadDeadline(uc.deadline)
		uc.readDeadline = true
	}
}

// liftDeadline is called before a body read that may wait.
func liftDeadline(uc *upConn) {
	if uc.readDeadline {
		uc.readDeadline = false
		_ = uc.nc.SetReadDeadline(time.Time{})
	}
}

func (c *fastCall) reuse(uc *upConn, closeAfter bool, now time.Time) {
	if closeAfter {
		uc.close()
		return
	}
	uc.pool.put(uc, now)
}

// cleanResponseHeader drops hop-by-hop fields and those the Connection
// header names; fasthttp writes its own framing.
func (c *fastCall) cleanResponseHeader() {
	h := &c.ctx.Response.Header
	if conn := h.Peek("Connection"); len(conn) > 0 {
		for tok := range strings.SplitSeq(string(conn), ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				h.Del(tok)
			}
		}
		h.Del("Connection")
	}
	for _, k := range [...]string{"Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Upgrade", "Te", "Trailer"} {
		if len(h.Peek(k)) > 0 {
			h.Del(k)
		}
	}
	h.ResetConnectionClose()
}

// readInline appends a body of n bytes to the response.
func (c *fastCall) readInline(uc *upConn, n int) error {
	resp := &c.ctx.Response
	br := uc.br
	for n > 0 {
		if br.Buffered() == 0 {
			liftDeadline(uc)
			if _, err := br.Peek(1); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		k := min(br.Buffered(), n)
		p, _ := br.Peek(k)
		resp.AppendBody(p)
		_, _ = br.Discard(k)
		n -= k
	}
	c.bytes = int64(len(resp.Body()))
	return nil
}

// writeHead writes the request line and header: what the lean engine
// writes for a net/http request, from fasthttp's parsed header.
func (c *fastCall) writeHead(bw *bufio.Writer) {
	h := &c.ctx.Request.Header
	t := &c.target
	_, _ = bw.WriteString(c.method)
	_ = bw.WriteByte(' ')
	writeURI(bw, t, c.query)
	_, _ = bw.WriteString(" HTTP/1.1\r\nHost: ")
	_, _ = bw.WriteString(t.url.Host)
	_, _ = bw.WriteString("\r\n")
	c.connTokens = ""
	if conn := h.Peek("Connection"); len(conn) > 0 {
		c.connTokens = b2s(conn)
	}
	c.bw = bw
	h.VisitAll(c.visitFn)
	c.bw = nil
	if te := h.Peek("Te"); len(te) > 0 && hasToken([]string{b2s(te)}, "trailers") {
		_, _ = bw.WriteString("Te: trailers\r\n")
	}
	if c.upgrade {
		_, _ = bw.WriteString("Connection: Upgrade\r\nUpgrade: ")
		_, _ = bw.Write(h.Peek("Upgrade"))
		_, _ = bw.WriteString("\r\n")
	}
	c.writeForwarded(bw)
	cl := h.ContentLength()
	switch {
	case cl > 0:
		_, _ = bw.WriteString("Content-Length: ")
		_, _ = bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(cl), 10))
		_, _ = bw.WriteString("\r\n")
	case cl == -1:
		_, _ = bw.WriteString("Transfer-Encoding: chunked\r\n")
	case c.method == http.MethodPost || c.method == http.MethodPut || c.method == http.MethodPatch:
		_, _ = bw.WriteString("Content-Length: 0\r\n")
	}
	_, _ = bw.WriteString("\r\n")
}

// visitHeader is the VisitAll callback of writeHead.
func (c *fastCall) visitHeader(k, v []byte) {
	ks := b2s(k)
	if dropRequestHeader(ks) {
		return
	}
	if c.connTokens != "" && connectionListed([]string{c.connTokens}, ks) {
		return
	}
	bw := c.bw
	_, _ = bw.Write(k)
	_, _ = bw.WriteString(": ")
	_, _ = bw.Write(v)
	_, _ = bw.WriteString("\r\n")
}

// writeForwarded is writeForwarded for the fast path.
func (c *fastCall) writeForwarded(bw *bufio.Writer) {
	h := &c.ctx.Request.Header
	trusted := c.target.trusted
	if c.peer.IsValid() {
		_, _ = bw.WriteString("X-Forwarded-For: ")
		if trusted {
			for _, v := range h.PeekAll("X-Forwarded-For") {
				_, _ = bw.Write(v)
				_, _ = bw.WriteString(", ")
			}
		}
		_, _ = bw.Write(c.peer.AppendTo(bw.AvailableBuffer()))
		_, _ = bw.WriteString("\r\n")
	}
	if vv := h.PeekAll("X-Forwarded-Host"); trusted && len(vv) > 0 {
		for _, v := range vv {
			writeHeaderLine(bw, "X-Forwarded-Host", b2s(v))
		}
	} else {
		writeHeaderLine(bw, "X-Forwarded-Host", b2s(h.Host()))
	}
	if vv := h.PeekAll("X-Forwarded-Proto"); trusted && len(vv) > 0 {
		for _, v := range vv {
			writeHeaderLine(bw, "X-Forwarded-Proto", b2s(v))
		}
	} else if c.ctx.IsTLS() {
		_, _ = bw.WriteString("X-Forwarded-Proto: https\r\n")
	} else {
		_, _ = bw.WriteString("X-Forwarded-Proto: http\r\n")
	}
}

// writeURI writes the path joined to the instance's base path, and the
// query q, as SetURL does; both front ends use it.
func writeURI(bw *bufio.Writer, t *target, q string) {
	base := t.url
	path, raw := t.path, t.rawPath
	if base.Path != "" || base.RawPath != "" {
		path, raw = joinURLPath(base, path, raw)
	}
	if raw == "" && plainPath(path) {
		if path == "" {
			path = "/"
		}
		_, _ = bw.WriteString(path)
	} else {
		u := url.URL{Path: path, RawPath: raw}
		ep := u.EscapedPath()
		if ep == "" {
			ep = "/"
		}
		_, _ = bw.WriteString(ep)
	}
	if q != "" {
		q = cleanQueryParams(q)
	}
	switch {
	case base.RawQuery == "" && q == "":
	case base.RawQuery == "" || q == "":
		_ = bw.WriteByte('?')
		_, _ = bw.WriteString(base.RawQuery)
		_, _ = bw.WriteString(q)
	default:
		_ = bw.WriteByte('?')
		_, _ = bw.WriteString(base.RawQuery)
		_ = bw.WriteByte('&')
		_, _ = bw.WriteString(q)
	}
}

// sendBody streams the request body upstream: as is with a known length,
// chunked otherwise.
func (c *fastCall) sendBody(bw *bufio.Writer) error {
	req := &c.ctx.Request
	cl := req.Header.ContentLength()
	c.bodyStarted, c.bodyUsed = true, true
	rd := c.ctx.RequestBodyStream()
	if rd == nil { // a server without StreamRequestBody: the body is read
		body := req.Body()
		if cl == -1 {
			_, _ = bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(len(body)), 16))
			_, _ = bw.WriteString("\r\n")
			_, _ = bw.Write(body)
			_, _ = bw.WriteString("\r\n0\r\n\r\n")
			return nil
		}
		_, _ = bw.Write(body)
		return nil
	}
	buf := c.e.buffers.Get()
	defer c.e.buffers.Put(buf)
	return copyRequestBody(bw, rd, buf, int64(cl))
}
