package main

import (
	"encoding/json"
	"net/http"

	"github.com/gatehouse/gatehouse/discovery"
	"github.com/gatehouse/gatehouse/gateway"
)

// adminHandler adds the registry's state to the gateway's admin API:
// /readyz says why it is (not) ready, /admin/registry shows the connection
// state and each service's panic-floor hold.
func adminHandler(gw *gateway.Gateway, subject *discovery.Subject, ready func() bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", gw.AdminHandler(ready))
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		code, status := http.StatusOK, "ready"
		if !ready() {
			code, status = http.StatusServiceUnavailable, "not ready"
		}
		writeAdminJSON(w, code, map[string]any{"status": status, "registry": subject.Status()})
	})
	mux.HandleFunc("GET /admin/routed", routedHandler(gw))
	mux.HandleFunc("GET /admin/registry", func(w http.ResponseWriter, _ *http.Request) {
		services := map[string]discovery.ServiceStatus{}
		for _, name := range subject.Services() {
			if ss, ok := subject.ServiceStatus(name); ok {
				services[name] = ss
			}
		}
		writeAdminJSON(w, http.StatusOK, map[string]any{"registry": subject.Status(), "services": services})
	})
	return mux
}

func writeAdminJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
