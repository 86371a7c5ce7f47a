package gateway

import (
	"bufio"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// writeRequestHead writes the outbound request line and header: what
// httputil.ReverseProxy with Rewrite, SetURL and SetXForwarded sends, minus
// the intermediate http.Request. Errors stick in bw until Flush.
func writeRequestHead(bw *bufio.Writer, r *http.Request, t *target) {
	_, _ = bw.WriteString(r.Method)
	_ = bw.WriteByte(' ')
	writeRequestURI(bw, r, t)
	_, _ = bw.WriteString(" HTTP/1.1\r\nHost: ")
	_, _ = bw.WriteString(t.url.Host)
	_, _ = bw.WriteString("\r\n")
	conn := r.Header["Connection"]
	for k, vv := range r.Header {
		if dropRequestHeader(k) || (len(conn) > 0 && connectionListed(conn, k)) {
			continue
		}
		for _, v := range vv {
			writeHeaderLine(bw, k, v)
		}
	}
	if hasToken(r.Header["Te"], "trailers") {
		_, _ = bw.WriteString("Te: trailers\r\n")
	}
	writeForwarded(bw, r, t)
	switch {
	case r.ContentLength > 0:
		_, _ = bw.WriteString("Content-Length: ")
		_, _ = bw.Write(strconv.AppendInt(bw.AvailableBuffer(), r.ContentLength, 10))
		_, _ = bw.WriteString("\r\n")
	case r.ContentLength < 0 && hasBody(r):
		_, _ = bw.WriteString("Transfer-Encoding: chunked\r\n")
	case r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch:
		_, _ = bw.WriteString("Content-Length: 0\r\n")
	}
	_, _ = bw.WriteString("\r\n")
}

func writeHeaderLine(bw *bufio.Writer, k, v string) {
	_, _ = bw.WriteString(k)
	_, _ = bw.WriteString(": ")
	_, _ = bw.WriteString(v)
	_, _ = bw.WriteString("\r\n")
}

// dropRequestHeader: hop-by-hop headers, and those the engine writes itself.
func dropRequestHeader(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"Host", "Content-Length", "Forwarded",
		"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
		return true
	}
	return false
}

// connectionListed reports whether a Connection header names k.
func connectionListed(conn []string, k string) bool {
	for _, v := range conn {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), k) {
				return true
			}
		}
	}
	return false
}

func hasToken(vv []string, token string) bool { return connectionListed(vv, token) }

// writeForwarded is SetXForwarded, extending the chain of a trusted peer.
func writeForwarded(bw *bufio.Writer, r *http.Request, t *target) {
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		_, _ = bw.WriteString("X-Forwarded-For: ")
		if t.trusted {
			for _, v := range r.Header["X-Forwarded-For"] {
				_, _ = bw.WriteString(v)
				_, _ = bw.WriteString(", ")
			}
		}
		_, _ = bw.WriteString(ip)
		_, _ = bw.WriteString("\r\n")
	}
	if vv := r.Header["X-Forwarded-Host"]; t.trusted && len(vv) > 0 {
		for _, v := range vv {
			writeHeaderLine(bw, "X-Forwarded-Host", v)
		}
	} else {
		writeHeaderLine(bw, "X-Forwarded-Host", r.Host)
	}
	if vv := r.Header["X-Forwarded-Proto"]; t.trusted && len(vv) > 0 {
		for _, v := range vv {
			writeHeaderLine(bw, "X-Forwarded-Proto", v)
		}
	} else if r.TLS != nil {
		_, _ = bw.WriteString("X-Forwarded-Proto: https\r\n")
	} else {
		_, _ = bw.WriteString("X-Forwarded-Proto: http\r\n")
	}
}

// writeRequestURI writes the path joined to the instance's base path, and
// the query, as SetURL does.
func writeRequestURI(bw *bufio.Writer, r *http.Request, t *target) {
	writeURI(bw, t, r.URL.RawQuery)
}

// plainPath reports whether path needs no escaping in a request line.
func plainPath(path string) bool {
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~$&+,/:;=@", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// joinURLPath is httputil's, for a path given as its parts.
func joinURLPath(a *url.URL, bPath, bRaw string) (path, rawpath string) {
	if a.RawPath == "" && bRaw == "" {
		return singleJoiningSlash(a.Path, bPath), ""
	}
	b := url.URL{Path: bPath, RawPath: bRaw}
	apath, bpath := a.EscapedPath(), b.EscapedPath()
	aslash, bslash := strings.HasSuffix(apath, "/"), strings.HasPrefix(bpath, "/")
	switch {
	case aslash && bslash:
		return a.Path + bPath[1:], apath + bpath[1:]
	case !aslash && !bslash:
		return a.Path + "/" + bPath, apath + "/" + bpath
	}
	return a.Path + bPath, apath + bpath
}

func singleJoiningSlash(a, b string) string {
	aslash, bslash := strings.HasSuffix(a, "/"), strings.HasPrefix(b, "/")
	switch {
	case aslash && bslash:
		return a + b[1:]
	case !aslash && !bslash:
		return a + "/" + b
	}
	return a + b
}

// cleanQueryParams is httputil's: a query that would not parse is
// re-encoded from what does, so that the upstream sees what was checked.
func cleanQueryParams(s string) string {
	reencode := func(s string) string {
		v, _ := url.ParseQuery(s)
		return v.Encode()
	}
	for i := 0; i < len(s); {
		switch s[i] {
		case ';':
			return reencode(s)
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return reencode(s)
			}
			i += 3
		default:
			i++
		}
	}
	return s
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
