package registry

import (
	"fmt"
	"strings"
)

// Layout maps services and instances to registry paths:
// <root>/<service>/<id>.
type Layout struct {
	Root string
}

// NewLayout validates and cleans a root path; "" means DefaultRoot.
func NewLayout(root string) (Layout, error) {
	if root == "" {
		root = DefaultRoot
	}
	if !strings.HasPrefix(root, "/") {
		return Layout{}, fmt.Errorf("registry root %q must start with /", root)
	}
	root = strings.TrimRight(root, "/")
	if root == "" {
		return Layout{}, fmt.Errorf("registry root must not be /")
	}
	for _, seg := range strings.Split(root[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return Layout{}, fmt.Errorf("registry root %q has an empty or relative segment", root)
		}
	}
	return Layout{Root: root}, nil
}

// ServicePath is the parent of a service's instance records.
func (l Layout) ServicePath(service string) string { return l.Root + "/" + service }

// Key is the path of one instance record.
func (l Layout) Key(service, id string) string { return l.Root + "/" + service + "/" + id }

// Prefix is the root with a trailing slash, for prefix reads and watches.
func (l Layout) Prefix() string { return l.Root + "/" }

// Parse splits an instance key into service and ID.
func (l Layout) Parse(key string) (service, id string, err error) {
	rest, ok := strings.CutPrefix(key, l.Prefix())
	if !ok {
		return "", "", fmt.Errorf("key %q is not under %q", key, l.Root)
	}
	service, id, ok = strings.Cut(rest, "/")
	if !ok || service == "" || id == "" || strings.Contains(id, "/") {
		return "", "", fmt.Errorf("key %q is not <root>/<service>/<id>", key)
	}
	return service, id, nil
}
