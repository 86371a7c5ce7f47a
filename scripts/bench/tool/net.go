package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// cmdPorts prints N distinct free loopback ports, one per line. The
// listeners are all open at once, so the ports differ; another process may
// still take one before the harness binds it, which the harness detects as a
// failed start.
func cmdPorts(args []string) error {
	if len(args) != 1 {
		return errors.New("want N")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		return fmt.Errorf("bad N %q", args[0])
	}
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		lns = append(lns, ln)
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	}
	return nil
}

var client = &http.Client{Timeout: 2 * time.Second}

func parseTimeout(s string) (time.Time, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("bad timeout %q: %w", s, err)
	}
	return time.Now().Add(d), nil
}

// poll calls f every 100 ms until it returns nil or the deadline passes,
// and then returns its last error.
func poll(deadline time.Time, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// get fetches url and returns the response with its whole body read.
func get(url string) (*http.Response, []byte, error) {
	res, err := client.Get(url)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res, b, err
}

// cmdWait waits until URL answers 200.
func cmdWait(args []string) error {
	if len(args) != 2 {
		return errors.New("want URL TIMEOUT")
	}
	deadline, err := parseTimeout(args[1])
	if err != nil {
		return err
	}
	return poll(deadline, func() error {
		res, _, err := get(args[0])
		if err != nil {
			return err
		}
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: status %d", args[0], res.StatusCode)
		}
		return nil
	})
}

// cmdWaitInstances waits until the gateway's /admin/services lists at least
// N instances of SERVICE.
func cmdWaitInstances(args []string) error {
	if len(args) != 4 {
		return errors.New("want ADMIN_URL SERVICE N TIMEOUT")
	}
	url, service := args[0], args[1]
	want, err := strconv.Atoi(args[2])
	if err != nil {
		return fmt.Errorf("bad N %q", args[2])
	}
	deadline, err := parseTimeout(args[3])
	if err != nil {
		return err
	}
	return poll(deadline, func() error {
		res, b, err := get(url)
		if err != nil {
			return err
		}
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: status %d", url, res.StatusCode)
		}
		var svcs []struct {
			Name      string            `json:"name"`
			Instances []json.RawMessage `json:"instances"`
		}
		if err := json.Unmarshal(b, &svcs); err != nil {
			return fmt.Errorf("decoding %s: %w", url, err)
		}
		for _, s := range svcs {
			if s.Name == service && len(s.Instances) >= want {
				return nil
			}
		}
		return fmt.Errorf("service %q has fewer than %d instances", service, want)
	})
}

// cmdCheck sends a few requests to URL and fails unless every one is a 200
// with a body of BYTES bytes and at least MIN_BACKENDS distinct X-Backend
// values were seen (so a proxy really balances over the backends).
func cmdCheck(args []string) error {
	if len(args) != 3 {
		return errors.New("want URL BYTES MIN_BACKENDS")
	}
	size, err := strconv.Atoi(args[1])
	if err != nil {
		return fmt.Errorf("bad BYTES %q", args[1])
	}
	minBackends, err := strconv.Atoi(args[2])
	if err != nil {
		return fmt.Errorf("bad MIN_BACKENDS %q", args[2])
	}
	seen := map[string]bool{}
	for range 6 {
		res, b, err := get(args[0])
		if err != nil {
			return err
		}
		if res.StatusCode != http.StatusOK || len(b) != size {
			return fmt.Errorf("%s: status %d, %d bytes; want 200, %d bytes", args[0], res.StatusCode, len(b), size)
		}
		seen[res.Header.Get("X-Backend")] = true
	}
	if len(seen) < minBackends {
		return fmt.Errorf("%s: answered by %d backend(s), want at least %d", args[0], len(seen), minBackends)
	}
	return nil
}
