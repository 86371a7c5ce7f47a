package gateway

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"
)

// ServiceInfo describes one service the gateway routes to.
type ServiceInfo struct {
	Name      string         `json:"name"`
	Balancers []BalancerInfo `json:"balancers"`
	// Instances are the members by ID; InFlight is summed over balancers.
	Instances []InstanceInfo `json:"instances"`
}

// BalancerInfo is one balancer serving a service and the routes using it.
type BalancerInfo struct {
	Policy  string   `json:"policy"`
	HashKey string   `json:"hash_key,omitempty"`
	Routes  []string `json:"routes"`
}

// InstanceInfo is one instance as the gateway sees it.
type InstanceInfo struct {
	ID       string            `json:"id"`
	Address  string            `json:"address"`
	Weight   int               `json:"weight"` // effective weight, at least 1
	Metadata map[string]string `json:"metadata,omitempty"`
	InFlight int64             `json:"in_flight"`
	// Health is the passive health state in the first balancer serving the
	// service (each balancer keeps its own).
	Health *HealthInfo `json:"health,omitempty"`
}

// HealthInfo is an instance's passive health for the admin API.
type HealthInfo struct {
	Ejected             bool      `json:"ejected"`
	EjectedUntil        time.Time `json:"ejected_until,omitzero"`
	ConsecutiveFailures int       `json:"consecutive_failures"`
	EffectiveWeight     int       `json:"effective_weight"`
	Warming             bool      `json:"warming,omitempty"`
}

// Services lists the services of the current route table, sorted by name.
func (g *Gateway) Services() []ServiceInfo {
	t := g.table.Load()
	type bal struct {
		b      *binding
		routes []string
	}
	var order []*binding
	byBinding := make(map[*binding]*bal)
	add := func(b *binding, route string) {
		e, ok := byBinding[b]
		if !ok {
			e = &bal{b: b}
			byBinding[b] = e
			order = append(order, b)
		}
		e.routes = append(e.routes, route)
	}
	for _, rt := range t.routes {
		add(rt.bind, rt.name)
	}
	for _, b := range t.discovery {
		add(b, discoveryRoute)
	}

	svcs := make(map[string]*ServiceInfo)
	for _, b := range order {
		si, ok := svcs[b.key.service]
		if !ok {
			si = &ServiceInfo{Name: b.key.service, Balancers: []BalancerInfo{}, Instances: []InstanceInfo{}}
			svcs[b.key.service] = si
		}
		routes := byBinding[b].routes
		slices.Sort(routes)
		si.Balancers = append(si.Balancers, BalancerInfo{Policy: b.key.policy, HashKey: b.key.hashKey, Routes: routes})
		for _, ep := range b.bal.Endpoints() {
			in := ep.Instance
			i := slices.IndexFunc(si.Instances, func(ii InstanceInfo) bool { return ii.ID == in.ID })
			if i < 0 {
				h := ep.Health()
				si.Instances = append(si.Instances, InstanceInfo{
					ID: in.ID, Address: in.Address, Weight: in.EffectiveWeight(), Metadata: in.Metadata,
					Health: &HealthInfo{Ejected: h.Ejected, EjectedUntil: h.EjectedUntil,
						ConsecutiveFailures: h.ConsecutiveFailures, EffectiveWeight: h.EffectiveWeight, Warming: h.Warming},
				})
				i = len(si.Instances) - 1
			}
			si.Instances[i].InFlight += ep.InFlight()
		}
	}
	out := make([]ServiceInfo, 0, len(svcs))
	for _, si := range svcs {
		slices.SortFunc(si.Balancers, func(a, b BalancerInfo) int {
			return strings.Compare(a.Policy+"\x00"+a.HashKey, b.Policy+"\x00"+b.HashKey)
		})
		slices.SortFunc(si.Instances, func(a, b InstanceInfo) int { return strings.Compare(a.ID, b.ID) })
		out = append(out, *si)
	}
	slices.SortFunc(out, func(a, b ServiceInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// AdminHandler serves the health, readiness and service endpoints. ready
// says whether the gateway should receive traffic (e.g. the registry has
// synced); nil means always.
func (g *Gateway) AdminHandler(ready func() bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil && !ready() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	mux.HandleFunc("GET /admin/services", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, g.Services())
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
