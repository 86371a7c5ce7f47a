package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/gateway"
	"github.com/gatehouse/gatehouse/internal/regurl"
	"github.com/gatehouse/gatehouse/registry"
)

// Zero-loss deregistration. Each gateway registers its admin URL as an
// ephemeral record under the gateways root. A departing backend's sidecar
// lists the gateways before it deregisters, then asks each one's
// /admin/routed until none routes to it any more: only then may the backend
// stop. A gateway that cannot be asked is covered by the fixed drain.

// DefaultGatewaysRoot is where gateways announce their admin API.
const DefaultGatewaysRoot = "/gatehouse/gateways"

// gatewaysService is the service name gateways register under.
const gatewaysService = "gateway"

// announceGateway keeps this gateway's admin URL registered until ctx ends.
func announceGateway(ctx context.Context, spec regurl.Spec, opts regurl.Options, adminURL string, log *zap.Logger) {
	in := registry.Instance{Service: gatewaysService, ID: registry.DefaultID(adminURL), Address: adminURL}
	if err := in.Validate(); err != nil {
		log.Warn("gateway not announced: admin URL invalid", zap.Error(err))
		return
	}
	// Announcing is best effort: the gateway's own watch already logs an
	// unreachable registry.
	be, err := openWithRetry(ctx, spec, opts, zap.NewNop())
	if err != nil {
		return
	}
	defer be.Close()
	registry.Keep(ctx, be, in, keepBackoff(opts.TTL), registry.KeepEvents{})
}

// routedHandler answers GET /admin/routed?service=S&id=X: whether any route
// of this gateway still sends requests to that instance.
func routedHandler(gw *gateway.Gateway) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		svc, id := r.URL.Query().Get("service"), r.URL.Query().Get("id")
		if svc == "" || id == "" {
			writeAdminJSON(w, http.StatusBadRequest, map[string]string{"error": "want ?service=S&id=X"})
			return
		}
		routed := false
		for _, s := range gw.Services() {
			if s.Name != svc {
				continue
			}
			for _, in := range s.Instances {
				if in.ID == id {
					routed = true
				}
			}
		}
		writeAdminJSON(w, http.StatusOK, map[string]bool{"routed": routed})
	}
}

// listGateways reads the announced gateways' admin URLs.
func listGateways(ctx context.Context, spec regurl.Spec, opts regurl.Options) ([]string, error) {
	be, err := regurl.Open(ctx, spec, opts)
	if err != nil {
		return nil, err
	}
	defer be.Close()
	w := be.Watcher()
	defer w.Close()
	b, err := w.Next(ctx)
	if err != nil {
		return nil, err
	}
	var urls []string
	for _, in := range b.Services[gatewaysService] {
		urls = append(urls, in.Address)
	}
	return urls, nil
}

// awaitUnrouted polls every gateway until none routes to in, or until max.
// It returns how many gateways confirmed and how many could not be asked.
func awaitUnrouted(ctx context.Context, gateways []string, in registry.Instance, max time.Duration, log *zap.Logger) (confirmed, unknown int) {
	ctx, cancel := context.WithTimeout(ctx, max)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, g := range gateways {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok := pollUnrouted(ctx, client, g, in)
			mu.Lock()
			defer mu.Unlock()
			if ok {
				confirmed++
			} else {
				unknown++
				log.Warn("gateway did not confirm the removal in time", zap.String("gateway", g))
			}
		}()
	}
	wg.Wait()
	return confirmed, unknown
}

func pollUnrouted(ctx context.Context, client *http.Client, gatewayURL string, in registry.Instance) bool {
	u := fmt.Sprintf("%s/admin/routed?service=%s&id=%s", gatewayURL, url.QueryEscape(in.Service), url.QueryEscape(in.ID))
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if resp, err := client.Do(req); err == nil {
			var v struct {
				Routed *bool `json:"routed"`
			}
			err := json.NewDecoder(resp.Body).Decode(&v)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK && v.Routed != nil && !*v.Routed {
				return true
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}
