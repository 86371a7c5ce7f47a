// Command backend is the load harness's upstream: a small net/http server
// that answers every request with a fixed body, as fast as net/http allows.
//
// The body size is chosen per request by the last path segment (/bench/100,
// /16384) among the sizes given by -sizes; any other path gets the first
// size. One process thus serves every body size of a run, and every target
// (direct, proxies, Gatehouse after it strips /bench) sends the same request.
// Each response carries X-Backend: <name>, so the harness can check that a
// proxy round-robins over both backends.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	name := flag.String("name", "backend", "value of the X-Backend response header")
	sizes := flag.String("sizes", "100,16384", "body sizes in bytes; the first is the default")
	addrFile := flag.String("addr-file", "", "write the listening address to this file once listening")
	flag.Parse()

	h, err := newHandler(*name, *sizes)
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute}
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// body is one precomputed response: the bytes and its header values, built
// once so that serving it allocates nothing of its own.
type body struct {
	data   []byte
	length []string
}

type handler struct {
	def     body
	bySize  map[string]body // keyed by the decimal size, as in the path
	ctype   []string
	backend []string
}

func newHandler(name, sizes string) (*handler, error) {
	h := &handler{bySize: map[string]body{}, ctype: []string{"application/octet-stream"}, backend: []string{name}}
	for i, f := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("-sizes: %q is not a size in bytes", f)
		}
		data := make([]byte, n)
		for j := range data {
			data[j] = 'a' + byte(j%26)
		}
		b := body{data: data, length: []string{strconv.Itoa(n)}}
		h.bySize[strconv.Itoa(n)] = b
		if i == 0 {
			h.def = b
		}
	}
	return h, nil
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b := h.def
	p := r.URL.Path
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		if s, ok := h.bySize[p[i+1:]]; ok {
			b = s
		}
	}
	hdr := w.Header()
	hdr["Content-Type"] = h.ctype
	hdr["Content-Length"] = b.length
	hdr["X-Backend"] = h.backend
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b.data)
	}
}
