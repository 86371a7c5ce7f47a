package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap"
)

// BenchmarkProxy measures a request through the gateway to a backend, per
// engine: "http" includes the client and the gateway's own server,
// "handler" calls ServeHTTP directly, which isolates the gateway's and the
// proxy's cost.
func BenchmarkProxy(b *testing.B) {
	body := []byte("hello from the backend\n")
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	}))
	b.Cleanup(backend.Close)
	for _, tc := range []struct {
		engine    string
		accessLog bool
	}{{EngineLean, false}, {EngineReverseProxy, false}, {EngineLean, true}} {
		src := newFakeSource()
		src.set("echo", inst("echo", "e1", backend.URL))
		cfg := Config{DiscoveryRoutes: true, AccessLog: tc.accessLog, Engine: tc.engine}
		h := newHarness(b, cfg, src, zap.NewNop())
		h.client.Transport.(*http.Transport).MaxIdleConnsPerHost = 1024
		suffix := "-" + tc.engine
		if tc.accessLog {
			suffix += "-accesslog"
		}
		url := h.front.URL + "/echo/hello?x=1"

		viaHTTP := func(b *testing.B) {
			res, err := h.client.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				b.Fatalf("status %d", res.StatusCode)
			}
		}
		viaHandler := func(b *testing.B) {
			r := httptest.NewRequest(http.MethodGet, "/echo/hello?x=1", nil)
			w := httptest.NewRecorder()
			h.g.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				b.Fatalf("status %d", w.Code)
			}
		}
		for _, bc := range []struct {
			name string
			f    func(*testing.B)
		}{{"http", viaHTTP}, {"handler", viaHandler}} {
			b.Run("serial-"+bc.name+suffix, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					bc.f(b)
				}
			})
			b.Run("parallel-"+bc.name+suffix, func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						bc.f(b)
					}
				})
			})
		}
	}
}
