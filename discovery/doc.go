// Package discovery turns a registry watch into immutable per-service
// snapshots and pushes them to subscribers (the observer pattern). It knows
// no registry: any registry.Watcher will do.
package discovery
