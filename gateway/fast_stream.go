package gateway

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/gatehouse/gatehouse/loadbalance"
)

// fastBody is a streamed upstream response body, set as the fasthttp
// response's body stream. fasthttp reads it while writing the response,
// after ServeFast has returned, and then calls CloseWithError with the
// write's outcome: that is where the upstream connection is pooled or
// closed, the endpoint released and the access log written.
//
// With a length, fasthttp copies it as is; without (-1), it writes each
// Read as one chunk and flushes it, which is what makes event streams flow.
type fastBody struct {
	c  *fastCall
	uc *upConn
	ep *loadbalance.Endpoint

	now        time.Time
	chunked    bool
	remain     int64 // fixed length left; -2: until close; chunked: of this chunk
	closeAfter bool
	reusable   bool
	needCRLF   bool // a chunk's data ended, its CRLF is unread
	done       bool // the body ended cleanly
	upErr      error
}

var _ fasthttp.ReadCloserWithError = (*fastBody)(nil)

func (b *fastBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.read(p)
	b.c.bytes += int64(n)
	if err != nil && err != io.EOF {
		b.upErr = err
	}
	if err == io.EOF {
		b.done = true
	}
	return n, err
}

func (b *fastBody) read(p []byte) (int, error) {
	br := b.uc.br
	if br.Buffered() == 0 {
		liftDeadline(b.uc)
	}
	switch {
	case b.chunked:
		if b.remain <= 0 {
			if err := b.nextChunk(); err != nil {
				return 0, err
			}
			if b.done {
				return 0, io.EOF
			}
		}
		if int64(len(p)) > b.remain {
			p = p[:b.remain]
		}
		n, err := br.Read(p)
		b.remain -= int64(n)
		if b.remain == 0 {
			b.needCRLF = true
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return n, err
	case b.remain == -2: // until the upstream closes
		return br.Read(p)
	}
	if b.remain == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.remain {
		p = p[:b.remain]
	}
	n, err := br.Read(p)
	b.remain -= int64(n)
	if err == io.EOF && b.remain > 0 {
		err = io.ErrUnexpectedEOF
	}
	if b.remain == 0 && err == nil {
		err = io.EOF
	}
	return n, err
}

// nextChunk reads chunk framing up to the next chunk's data; at the last
// chunk it reads (and drops) the trailers and sets done.
func (b *fastBody) nextChunk() error {
	br := b.uc.br
	if b.needCRLF {
		line, err := readFramingLine(br)
		if err != nil {
			return err
		}
		if len(line) != 0 {
			return errBadChunk
		}
		b.needCRLF = false
	}
	line, err := readFramingLine(br)
	if err != nil {
		return err
	}
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	size, ok := parseHexSize(bytes.TrimSpace(line))
	if !ok {
		return errBadChunk
	}
	if size > 0 {
		b.remain = size
		return nil
	}
	for { // trailers, dropped
		line, err := readFramingLine(br)
		if err != nil {
			return err
		}
		if len(line) == 0 {
			b.done = true
			return nil
		}
	}
}

func readFramingLine(br interface{ ReadSlice(byte) ([]byte, error) }) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// CloseWithError ends the stream: wErr is the client write's error, or nil.
func (b *fastBody) CloseWithError(wErr error) error {
	c := b.c
	var outcome error
	switch {
	case b.upErr != nil:
		// The upstream broke off mid-body: its failure; fasthttp closes
		// the client's connection, which cuts the response off.
		b.uc.close()
		outcome, c.err = errCutOff, errCutOff
	case b.done && wErr == nil:
		if b.reusable {
			b.uc.pool.put(b.uc, b.now)
		} else {
			b.uc.close()
		}
	default:
		// The client went away (a write failed) or fasthttp dropped the
		// response unwritten: not the backend's failure.
		b.uc.close()
		c.status, c.err = StatusClientClosedRequest, errCutOff
		if wErr != nil {
			c.err = wErr
		}
	}
	ep := b.ep
	b.uc, b.ep = nil, nil
	c.done(ep, outcome)
	c.finish()
	return nil
}

// tunnel relays a 101 response to the client and then bytes both ways, on
// the hijacked client connection. uc is not pooled afterwards.
func (c *fastCall) tunnel(uc *upConn, ep *loadbalance.Endpoint) error {
	liftDeadline(uc)
	h := &c.ctx.Response.Header
	c.head = append(c.head[:0], h.Header()...)
	c.held = true
	ctx := c.ctx
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(client net.Conn) {
		var outcome error
		if _, err := client.Write(c.head); err != nil {
			c.status = StatusClientClosedRequest
		} else {
			c.status = http.StatusSwitchingProtocols
			relay(client, uc)
		}
		uc.close()
		c.done(ep, outcome)
		c.finish()
	})
	return nil
}

// relay copies both ways until either side ends, then closes both.
func relay(client net.Conn, uc *upConn) {
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = client.SetDeadline(aLongTimeAgo)
			_ = uc.nc.SetDeadline(aLongTimeAgo)
		})
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		_, _ = io.Copy(uc.nc, client)
		stop()
	})
	// Through uc.br: bytes the upstream sent right after its head first.
	// An error is how a tunnel ends.
	_, _ = io.Copy(client, uc.br)
	stop()
	wg.Wait()
}
