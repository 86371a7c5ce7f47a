package testenv

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// startEcho runs a line echo server until the test ends.
func startEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func echo(c net.Conn, msg string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return line[:len(line)-1], nil
}

func TestTCPProxy(t *testing.T) {
	p := NewTCPProxy(t, startEcho(t))

	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := echo(c, "hello"); err != nil || got != "hello" {
		t.Fatalf("through proxy: got %q, %v, want %q", got, err, "hello")
	}

	p.Cut()
	if _, err := echo(c, "after cut"); err == nil {
		t.Fatalf("existing connection after Cut: got nil error, want one")
	}
	c2, err := net.Dial("tcp", p.Addr())
	if err == nil {
		_, err = echo(c2, "during cut")
		c2.Close()
	}
	if err == nil {
		t.Fatalf("new connection during Cut: got nil error, want one")
	}

	p.Restore()
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if got, err := echo(c3, "back"); err != nil || got != "back" {
		t.Fatalf("after Restore: got %q, %v, want %q", got, err, "back")
	}
	if errors.Is(err, io.EOF) {
		t.Fatal("unexpected EOF")
	}
}
