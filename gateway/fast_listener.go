package gateway

import (
	"bytes"
	"net"
	"sync"
	"time"
)

// h2Preface starts every HTTP/2 connection made with prior knowledge (h2c,
// gRPC over cleartext).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// sniffTimeout bounds the wait for a new connection's first bytes.
const sniffTimeout = 10 * time.Second

// sniffListener accepts from a listener and sorts connections by their
// first bytes: the HTTP/2 preface to h2, anything else to h1. Each
// connection is sorted on its own goroutine, so that a silent client does
// not hold up the others. Closing either side closes the listener.
type sniffListener struct {
	ln     net.Listener
	h1, h2 *chanListener
	done   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup // the accept loop and the sorting goroutines
}

func newSniffListener(ln net.Listener) *sniffListener {
	s := &sniffListener{ln: ln, done: make(chan struct{})}
	s.h1 = &chanListener{parent: s, conns: make(chan net.Conn)}
	s.h2 = &chanListener{parent: s, conns: make(chan net.Conn)}
	s.wg.Add(1)
	go s.accept()
	return s
}

func (s *sniffListener) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
			default:
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					continue
				}
				s.close()
			}
			return
		}
		s.wg.Add(1)
		go s.sort(c)
	}
}

// sort reads until the bytes seen leave the preface or complete it.
func (s *sniffListener) sort(c net.Conn) {
	defer s.wg.Done()
	var buf [len(h2Preface)]byte
	n := 0
	_ = c.SetReadDeadline(time.Now().Add(sniffTimeout))
	for n < len(buf) && bytes.Equal(buf[:n], []byte(h2Preface[:n])) {
		m, err := c.Read(buf[n:])
		n += m
		if err != nil {
			_ = c.Close()
			return
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	to := s.h1
	if n == len(buf) && string(buf[:]) == h2Preface {
		to = s.h2
	}
	pc := &peekedConn{Conn: c, peeked: append([]byte(nil), buf[:n]...)}
	select {
	case to.conns <- pc:
	case <-s.done:
		_ = c.Close()
	}
}

func (s *sniffListener) close() error {
	var err error
	s.once.Do(func() {
		close(s.done)
		err = s.ln.Close()
	})
	return err
}

// chanListener is one side of a sniffListener.
type chanListener struct {
	parent *sniffListener
	conns  chan net.Conn
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.parent.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error   { return l.parent.close() }
func (l *chanListener) Addr() net.Addr { return l.parent.ln.Addr() }

// peekedConn replays the sniffed bytes before reading on.
type peekedConn struct {
	net.Conn
	peeked []byte
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if len(c.peeked) > 0 {
		n := copy(p, c.peeked)
		c.peeked = c.peeked[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
