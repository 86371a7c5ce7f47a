package discovery

import "sync"

// mailbox delivers values to a consumer on its own goroutine. It holds at
// most one pending value: a newer post replaces an undelivered one, so a
// slow consumer never blocks the poster and always ends on the latest value.
type mailbox[T any] struct {
	deliver func(T)

	mu      sync.Mutex // guards pending, has, closed
	pending T
	has     bool
	closed  bool

	wake chan struct{} // one slot: "pending changed or closed"
	done chan struct{} // closed when the goroutine ends
}

func newMailbox[T any](deliver func(T)) *mailbox[T] {
	m := &mailbox[T]{deliver: deliver, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go m.loop()
	return m
}

func (m *mailbox[T]) post(v T) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.pending, m.has = v, true
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *mailbox[T]) loop() {
	defer close(m.done)
	for range m.wake {
		m.mu.Lock()
		v, has, closed := m.pending, m.has, m.closed
		var zero T
		m.pending, m.has = zero, false
		m.mu.Unlock()
		if closed {
			return
		}
		if has {
			m.deliver(v)
		}
	}
}

// close stops delivery and waits for a delivery in progress to return.
func (m *mailbox[T]) close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		<-m.done
		return
	}
	m.closed = true
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
	<-m.done
}
