//go:build linux || darwin || freebsd || netbsd || openbsd

package gateway

import "syscall"

// peek is the RawConn.Read callback of alive and readable: a non-blocking
// MSG_PEEK that tells data or a FIN (something to read) from nothing yet.
func (c *upConn) peek(fd uintptr) bool {
	_, _, err := syscall.Recvfrom(int(fd), c.peekBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	c.peekEmpty = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
	return true
}
