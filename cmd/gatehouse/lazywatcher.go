package main

import (
	"context"
	"errors"
	"sync"

	"github.com/gatehouse/gatehouse/registry"
)

// lazyWatcher connects to the registry on first use and again after a failed
// connect, so the gateway starts and serves while the registry is down; the
// discovery loop's backoff paces the attempts.
type lazyWatcher struct {
	open func(context.Context) (registry.Backend, error)

	mu      sync.Mutex // guards backend, w, closed
	backend registry.Backend
	w       registry.Watcher
	closed  bool
}

func (l *lazyWatcher) Next(ctx context.Context) (registry.Batch, error) {
	l.mu.Lock()
	w, closed := l.w, l.closed
	l.mu.Unlock()
	if closed {
		return registry.Batch{}, errors.New("watcher closed")
	}
	if w == nil {
		b, err := l.open(ctx)
		if err != nil {
			return registry.Batch{}, err
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			b.Close()
			return registry.Batch{}, errors.New("watcher closed")
		}
		l.backend, l.w = b, b.Watcher()
		w = l.w
		l.mu.Unlock()
	}
	return w.Next(ctx)
}

func (l *lazyWatcher) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.backend == nil {
		return nil
	}
	l.w.Close()
	return l.backend.Close()
}
