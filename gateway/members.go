package gateway

import (
	"net/url"

	"github.com/gatehouse/gatehouse/discovery"
	"github.com/gatehouse/gatehouse/loadbalance"
)

// memberWatch passes a service's snapshots to its balancer and tells the
// engine which upstream hosts left, so that their idle connections close at
// once instead of lingering until the idle timeout.
type memberWatch struct {
	g     *Gateway
	bal   loadbalance.Balancer
	hosts map[string]struct{} // of the previous snapshot; Update is serialized
}

func (m *memberWatch) Update(s discovery.Snapshot) {
	m.bal.Update(s)
	next := make(map[string]struct{}, len(s.Instances))
	for _, in := range s.Instances {
		if u, err := url.Parse(in.Address); err == nil {
			next[u.Host] = struct{}{}
		}
	}
	if t := m.g.table.Load(); t != nil { // nil while New builds the first table
		for h := range m.hosts {
			if _, ok := next[h]; !ok {
				t.eng.closeHost(h)
			}
		}
	}
	m.hosts = next
}
