package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/registry"
)

func TestAdminHealth(t *testing.T) {
	h := newHarness(t, Config{}, nil, nil)
	var ready atomic.Bool
	admin := httptest.NewServer(h.g.AdminHandler(ready.Load))
	t.Cleanup(admin.Close)

	get := func(path string) (int, string) {
		res, err := http.Get(admin.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	tests := []struct {
		name, path string
		ready      bool
		wantStatus int
		wantBody   string
	}{
		{"healthz", "/healthz", false, 200, "{\n  \"status\": \"ok\"\n}\n"},
		{"readyz before sync", "/readyz", false, 503, "{\n  \"status\": \"not ready\"\n}\n"},
		{"readyz after sync", "/readyz", true, 200, "{\n  \"status\": \"ready\"\n}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready.Store(tt.ready)
			if status, body := get(tt.path); status != tt.wantStatus || body != tt.wantBody {
				t.Errorf("got %d %q, want %d %q", status, body, tt.wantStatus, tt.wantBody)
			}
		})
	}
}

func TestAdminServices(t *testing.T) {
	release := make(chan struct{})
	hold := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(hold.Close)
	echo := newEcho(t, "e2")

	src := newFakeSource()
	a := registry.Instance{Service: "api", ID: "a1", Address: hold.URL, Weight: 3,
		Metadata: map[string]string{"version": "v2", "zone": "z1"}}
	b := registry.Instance{Service: "api", ID: "a2", Address: echo.URL}
	src.set("api", b, a)
	h := newHarness(t, Config{DiscoveryRoutes: true, Routes: []RouteConfig{
		{Name: "sticky", PathPrefix: "/s", Service: "api", Policy: "consistent_hash", HashKey: "cookie:sid"},
	}}, src, nil)
	admin := httptest.NewServer(h.g.AdminHandler(nil))
	t.Cleanup(admin.Close)

	// Hold one request on a1 so that it shows in flight.
	errc := make(chan error, 1)
	go func() {
		res, err := h.client.Get(h.front.URL + "/api/") // round robin starts at a1
		if err == nil {
			res.Body.Close()
		}
		errc <- err
	}()
	t.Cleanup(func() {
		close(release)
		if err := <-errc; err != nil {
			t.Errorf("held request: %v", err)
		}
	})

	want := []ServiceInfo{{
		Name: "api",
		Balancers: []BalancerInfo{
			{Policy: "consistent_hash", HashKey: "cookie:sid", Routes: []string{"sticky"}},
			{Policy: "round_robin", Routes: []string{discoveryRoute}},
		},
		Instances: []InstanceInfo{
			{ID: "a1", Address: hold.URL, Weight: 3, Metadata: a.Metadata, InFlight: 1,
				Health: &HealthInfo{EffectiveWeight: 3}},
			{ID: "a2", Address: echo.URL, Weight: 1, Health: &HealthInfo{EffectiveWeight: 1}},
		},
	}}
	var got []ServiceInfo
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, err := http.Get(admin.URL + "/admin/services")
		if err != nil {
			t.Fatal(err)
		}
		got = nil
		err = json.NewDecoder(res.Body).Decode(&got)
		res.Body.Close()
		if err != nil {
			t.Fatalf("decoding /admin/services: %v", err)
		}
		if ct := res.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type: got %q, want application/json", ct)
		}
		if reflect.DeepEqual(got, want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond) // polling for the held request to arrive
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("/admin/services:\n got %+v\nwant %+v", got, want)
	}
}
