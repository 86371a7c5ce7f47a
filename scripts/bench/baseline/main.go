// Command baseline is the load harness's reference Go proxy: a plain
// httputil.ReverseProxy, round robin over the backends with an atomic
// counter, and an http.Transport whose idle pool is raised so that upstream
// connections are reused rather than churned. It is what "a Go gateway
// written in a few lines" costs; Gatehouse has to beat it by a wide margin.
package main

import (
	"errors"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8081", "address to listen on")
	backends := flag.String("backends", "", "comma-separated backend base URLs")
	idle := flag.Int("max-idle-conns-per-host", 1024, "idle upstream connections kept per backend")
	flag.Parse()

	var targets []*url.URL
	for _, s := range strings.Split(*backends, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || u.Host == "" {
			log.Fatalf("-backends: bad URL %q", s)
		}
		targets = append(targets, u)
	}

	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 0 // no global cap; the per-host one below applies
	tr.MaxIdleConnsPerHost = *idle
	var next atomic.Uint64
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(targets[(next.Add(1)-1)%uint64(len(targets))])
			r.SetXForwarded()
		},
		Transport: tr,
		ErrorLog:  log.New(io.Discard, "", 0),
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: proxy, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute}
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
