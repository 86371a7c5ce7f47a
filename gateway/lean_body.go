package gateway

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/textproto"
)

var errBadChunk = errors.New("malformed chunked upstream body")

// copyBody streams n bytes of the upstream body to the client, or up to EOF
// when n < 0 (a body delimited by the connection's close). A body already
// buffered whole goes out straight from the connection's reader. Otherwise
// bytes gather in the pooled buffer (x.buf[:x.out]) and go to the client
// when it is full, before a read that would wait for the upstream, and at
// the end: one write for what arrives together, instead of one per read.
func (x *leanExchange) copyBody(n int64) error {
	br := x.c.br
	if n > 0 && x.out == 0 && int64(br.Buffered()) >= n {
		p, _ := br.Peek(int(n))
		err := x.write(p)
		_, _ = br.Discard(int(n))
		return err
	}
	if !x.flushing && n > 0 && n <= bufferSize && x.out == 0 {
		return x.copyWhole(int(n))
	}
	for n != 0 {
		buf := x.buffer()
		if x.out == len(buf) {
			if err := x.drain(); err != nil {
				return err
			}
		}
		if br.Buffered() == 0 {
			// May drain: x.out changes.
			if err := x.beforeBlock(); err != nil {
				return err
			}
		}
		free := buf[x.out:]
		if n > 0 && int64(len(free)) > n {
			free = free[:n]
		}
		m, err := br.Read(free)
		x.out += m
		if n > 0 {
			n -= int64(m)
		}
		switch {
		case err == io.EOF && n < 0:
			return nil
		case err == io.EOF:
			return io.ErrUnexpectedEOF
		case err != nil:
			return err
		}
	}
	return nil
}

// drain writes the gathered bytes to the client.
func (x *leanExchange) drain() error {
	if x.out == 0 {
		return nil
	}
	err := x.write(x.buf[:x.out])
	x.out = 0
	return err
}

// copyWhole reads a body of n bytes, which fits the copy buffer, before
// writing it to the client at once.
func (x *leanExchange) copyWhole(n int) error {
	if err := x.beforeBlock(); err != nil {
		return err
	}
	p := x.buffer()[:n]
	if _, err := io.ReadFull(x.c.br, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return x.write(p)
}

// copyChunked decodes a chunked body, streams its data and sets its
// trailers on the client's response.
func (x *leanExchange) copyChunked() error {
	for {
		line, err := x.chunkLine()
		if err != nil {
			return err
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i] // chunk extensions are dropped
		}
		size, ok := parseHexSize(bytes.TrimSpace(line))
		if !ok {
			return errBadChunk
		}
		if size == 0 {
			return x.copyTrailers()
		}
		if err := x.copyBody(size); err != nil {
			return err
		}
		if line, err = x.chunkLine(); err != nil {
			return err
		}
		if len(line) != 0 {
			return errBadChunk
		}
	}
}

// chunkLine reads a line of chunk framing, first flushing if the whole
// line is not buffered yet.
func (x *leanExchange) chunkLine() ([]byte, error) {
	br := x.c.br
	if b, _ := br.Peek(br.Buffered()); bytes.IndexByte(b, '\n') < 0 {
		if err := x.beforeBlock(); err != nil {
			return nil, err
		}
	}
	line, err := x.readLine()
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return line, err
}

func (x *leanExchange) copyTrailers() error {
	for {
		line, err := x.chunkLine()
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return nil
		}
		i := bytes.IndexByte(line, ':')
		if i <= 0 {
			return errBadChunk
		}
		k := textproto.CanonicalMIMEHeaderKey(string(bytes.TrimSpace(line[:i])))
		hdr := x.w.Header()
		hdr[http.TrailerPrefix+k] = append(hdr[http.TrailerPrefix+k], string(bytes.TrimSpace(line[i+1:])))
	}
}

func parseHexSize(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	return n, true
}
