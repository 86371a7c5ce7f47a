package registry

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// DefaultRoot is the registry path under which services are kept.
const DefaultRoot = "/gatehouse/services"

// Well-known metadata keys.
const (
	MetaVersion = "version"
	MetaZone    = "zone"
)

// Instance is one backend of a service as it is stored in the registry.
type Instance struct {
	// Service is the name the gateway routes by.
	Service string `json:"service"`
	// ID is stable across re-registrations of the same backend.
	ID string `json:"id"`
	// Address is the backend's base URL, e.g. http://127.0.0.1:9001.
	Address string `json:"address"`
	// Weight is used by weighted balancers; 0 in a record means 1.
	Weight int `json:"weight,omitempty"`
	// Metadata holds free-form labels such as version and zone.
	Metadata map[string]string `json:"metadata,omitempty"`
}

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid instance")

// MaxWeight bounds weights so that weighted schedules stay small.
const MaxWeight = 1000

// Validate reports whether the instance can be registered and routed to.
func (in Instance) Validate() error {
	if err := ValidateName(in.Service); err != nil {
		return fmt.Errorf("%w: service: %v", ErrInvalid, err)
	}
	if err := ValidateName(in.ID); err != nil {
		return fmt.Errorf("%w: id: %v", ErrInvalid, err)
	}
	u, err := url.Parse(in.Address)
	if err != nil {
		return fmt.Errorf("%w: address %q: %v", ErrInvalid, in.Address, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%w: address %q: scheme must be http or https", ErrInvalid, in.Address)
	}
	if u.Host == "" {
		return fmt.Errorf("%w: address %q: no host", ErrInvalid, in.Address)
	}
	if in.Weight < 0 || in.Weight > MaxWeight {
		return fmt.Errorf("%w: weight %d out of range 0..%d", ErrInvalid, in.Weight, MaxWeight)
	}
	return nil
}

// ValidateName checks a service name or instance ID: it becomes one path
// segment in both ZooKeeper and etcd and the first segment of discovery routes.
func ValidateName(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > 128 {
		return errors.New("longer than 128 bytes")
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '-' || r == '_' || r == '.' || r == ':'
		if !ok {
			return fmt.Errorf("%q: only letters, digits, '-', '_', '.', ':' are allowed", s)
		}
	}
	if s == "." || s == ".." {
		return fmt.Errorf("%q is not a name", s)
	}
	return nil
}

// EffectiveWeight is the weight a balancer uses: at least 1.
func (in Instance) EffectiveWeight() int {
	if in.Weight <= 0 {
		return 1
	}
	return in.Weight
}

// Equal reports whether two records are the same in every field.
func (in Instance) Equal(o Instance) bool {
	if in.Service != o.Service || in.ID != o.ID || in.Address != o.Address || in.Weight != o.Weight {
		return false
	}
	if len(in.Metadata) != len(o.Metadata) {
		return false
	}
	for k, v := range in.Metadata {
		if ov, ok := o.Metadata[k]; !ok || ov != v {
			return false
		}
	}
	return true
}

// SortByID sorts instances in place by ID, the canonical snapshot order.
func SortByID(ins []Instance) {
	sort.Slice(ins, func(i, j int) bool { return ins[i].ID < ins[j].ID })
}

// DefaultID derives a stable instance ID from an address: the same backend
// gets the same ID after a restart.
func DefaultID(address string) string {
	u, err := url.Parse(address)
	h := address
	if err == nil && u.Host != "" {
		h = u.Host
	}
	var b strings.Builder
	for _, r := range h {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}
