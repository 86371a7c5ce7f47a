package gateway

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// An instance that leaves the registry loses its idle upstream connections
// at once, not after the idle timeout.
func TestRemovedInstanceConnectionsClosed(t *testing.T) {
	if harnessEngine != EngineLean {
		t.Skip("the ReverseProxy engine leaves this to its idle timeout")
	}
	var open atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok"))
	}))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	other := newEcho(t, "other")
	src := newFakeSource()
	src.set("s", inst("s", "a", srv.URL), inst("s", "b", other.URL))
	h := newHarness(t, Config{DiscoveryRoutes: true}, src, nil)
	for i := 0; i < 4; i++ {
		if status, body, _ := h.do(t, "GET", "/s/x", "", "", nil); status != 200 {
			t.Fatalf("got %d %s, want 200", status, body)
		}
	}
	if got := open.Load(); got < 1 {
		t.Fatalf("got %d open upstream connections, want a pooled one", got)
	}
	src.set("s", inst("s", "b", other.URL))
	eventually(t, "the removed instance's pooled connection closed", func() bool { return open.Load() == 0 })
}
