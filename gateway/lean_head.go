package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"strings"
)

// respHead is what the engine needs of a parsed response head; the header
// fields themselves stay as spans of upConn.head until exportHead.
type respHead struct {
	status  int
	length  int64 // Content-Length; -1 when absent
	chunked bool
	close   bool // the connection ends with this response
	noBody  bool // HEAD, 1xx, 204, 304
	stream  bool // flush as it arrives: event streams, unknown length
	connTok bool // Connection names other headers to drop
}

// headerSpan locates one field in upConn.head.
type headerSpan struct {
	k0, k1, v0, v1 int32
	drop           bool
}

const maxHeadBytes = 64 << 10

var (
	errMalformedHead = errors.New("malformed upstream response head")
	errHeadTooLong   = errors.New("upstream response head too long")
)

// readLine returns the next line without its line ending; the slice is
// valid until the next read.
func (x *leanExchange) readLine() ([]byte, error) {
	line, err := x.c.br.ReadSlice('\n')
	if len(line) > 0 {
		x.gotBytes = true
	}
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errHeadTooLong
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// readHead parses a status line and header fields.
func (x *leanExchange) readHead() (respHead, error) {
	c := x.c
	c.head, c.spans = c.head[:0], c.spans[:0]
	h := respHead{length: -1}
	line, err := x.readLine()
	if err != nil {
		return h, err
	}
	// "HTTP/1.x NNN[ reason]"
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' ||
		(len(line) > 12 && line[12] != ' ') {
		return h, errMalformedHead
	}
	for _, d := range line[9:12] {
		if d < '0' || d > '9' {
			return h, errMalformedHead
		}
		h.status = h.status*10 + int(d-'0')
	}
	if h.status < 100 {
		return h, errMalformedHead
	}
	http10 := line[7] == '0'
	keepAlive := false
	for {
		if line, err = x.readLine(); err != nil {
			return h, err
		}
		if len(line) == 0 {
			break
		}
		i := bytes.IndexByte(line, ':')
		if i <= 0 || len(c.head)+len(line) > maxHeadBytes {
			return h, errMalformedHead
		}
		k0 := int32(len(c.head))
		c.head = append(c.head, line...)
		key := c.head[k0 : int(k0)+i]
		if !canonicalizeKey(key) {
			return h, errMalformedHead
		}
		v0, v1 := int(k0)+i+1, len(c.head)
		for v0 < v1 && (c.head[v0] == ' ' || c.head[v0] == '\t') {
			v0++
		}
		for v1 > v0 && (c.head[v1-1] == ' ' || c.head[v1-1] == '\t') {
			v1--
		}
		sp := headerSpan{k0: k0, k1: k0 + int32(i), v0: int32(v0), v1: int32(v1)}
		val := c.head[v0:v1]
		switch string(key) {
		case "Content-Length":
			n, ok := parseLength(val)
			if !ok || (h.length >= 0 && n != h.length) {
				return h, errMalformedHead
			}
			h.length = n
		case "Transfer-Encoding":
			// Only chunked, alone, is supported (as net/http does).
			if !bytes.EqualFold(val, []byte("chunked")) || h.chunked {
				return h, errBadFraming
			}
			h.chunked, sp.drop = true, true
		case "Connection":
			sp.drop = true
			for tok := range bytes.SplitSeq(val, []byte(",")) {
				tok = bytes.TrimSpace(tok)
				switch {
				case bytes.EqualFold(tok, []byte("close")):
					h.close = true
				case bytes.EqualFold(tok, []byte("keep-alive")):
					keepAlive = true
				case len(tok) > 0:
					h.connTok = true
				}
			}
		case "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Upgrade", "Te":
			sp.drop = true
		case "Content-Type":
			h.stream = h.stream || bytes.HasPrefix(val, []byte("text/event-stream"))
		}
		c.spans = append(c.spans, sp)
	}
	if http10 && !keepAlive {
		h.close = true
	}
	h.noBody = x.r.Method == http.MethodHead || h.status < 200 ||
		h.status == http.StatusNoContent || h.status == http.StatusNotModified
	if h.chunked {
		h.length = -1 // chunked wins; its Content-Length is not forwarded
	}
	if !h.noBody && h.length < 0 {
		h.stream = true
	}
	return h, nil
}

// exportHead copies the end-to-end fields into the client's header: one
// string for all of them and one backing array for their value slices.
func (x *leanExchange) exportHead(h *respHead) {
	c := x.c
	if h.connTok {
		x.dropConnectionListed()
	}
	s := string(c.head)
	vals := make([]string, len(c.spans))
	hdr := x.w.Header()
	for i, sp := range c.spans {
		if sp.drop {
			continue
		}
		k := s[sp.k0:sp.k1]
		if h.chunked && k == "Content-Length" {
			continue
		}
		vals[i] = s[sp.v0:sp.v1]
		if old, ok := hdr[k]; ok {
			hdr[k] = append(old, vals[i])
		} else {
			hdr[k] = vals[i : i+1 : i+1]
		}
	}
}

// dropConnectionListed marks the fields a Connection header names.
func (x *leanExchange) dropConnectionListed() {
	c := x.c
	for _, sp := range c.spans {
		if string(c.head[sp.k0:sp.k1]) != "Connection" {
			continue
		}
		for tok := range strings.SplitSeq(string(c.head[sp.v0:sp.v1]), ",") {
			tok = strings.TrimSpace(tok)
			for j := range c.spans {
				if strings.EqualFold(string(c.head[c.spans[j].k0:c.spans[j].k1]), tok) {
					c.spans[j].drop = true
				}
			}
		}
	}
}

// canonicalizeKey rewrites a field name in place as
// textproto.CanonicalMIMEHeaderKey would, and reports whether it is a valid
// token.
func canonicalizeKey(b []byte) bool {
	upper := true
	for i, ch := range b {
		if !isTokenByte(ch) {
			return false
		}
		if upper && 'a' <= ch && ch <= 'z' {
			b[i] = ch - ('a' - 'A')
		} else if !upper && 'A' <= ch && ch <= 'Z' {
			b[i] = ch + ('a' - 'A')
		}
		upper = ch == '-'
	}
	return true
}

func isTokenByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, d := range b {
		if d < '0' || d > '9' {
			return 0, false
		}
		n = n*10 + int64(d-'0')
	}
	return n, true
}
