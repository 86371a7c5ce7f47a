package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// child is a server run as a child process, its output appended to a log
// file that outlives restarts. It is signalled only by its PID, never by
// name: other tests run the same servers.
type child struct {
	logPath string

	mu   sync.Mutex // guards cmd and done
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd has been reaped
}

// start runs newCmd() unless a process is running, then, if ready is set,
// waits for ready (given a channel closed when the process exits) and kills
// the process if it fails. Failures fail the test; what names the server.
func (c *child) start(t testing.TB, what string, newCmd func() *exec.Cmd, ready func(exited <-chan struct{}) error) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		return
	}
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("testenv: start %s: %v", what, err)
	}
	defer logf.Close() // the child keeps its own descriptor
	cmd := newCmd()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: start %s: %v", what, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // reap; the exit status of a killed server is not news
		close(done)
	}()
	c.cmd, c.done = cmd, done
	if ready == nil {
		return
	}
	if err := ready(done); err != nil {
		c.killLocked()
		t.Fatalf("testenv: %s not ready: %v\n%s", what, err, c.logTail())
	}
}

// stop sends SIGTERM and waits for the process to exit, falling back to
// SIGKILL after grace.
func (c *child) stop(grace time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		c.cmd, c.done = nil, nil
	case <-time.After(grace):
		c.killLocked()
	}
}

// kill sends SIGKILL and waits for the process to exit.
func (c *child) kill() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.killLocked()
}

func (c *child) killLocked() {
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Kill() // by pid
	<-c.done
	c.cmd, c.done = nil, nil
}

// pid is the process id, or 0 when no process is running.
func (c *child) pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// running reports whether there is a live process.
func (c *child) running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cmd != nil
}

// exitedCh is closed when the running process exits; nil if none runs.
func (c *child) exitedCh() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done
}

// exited reports whether a started process has ended on its own.
func (c *child) exited() bool {
	done := c.exitedCh()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// atOnce calls f for every server in parallel and waits for all, so n slow
// stops or kills take about as long as one.
func atOnce[S any](servers []S, f func(S)) {
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() { f(s) })
	}
	wg.Wait()
}

// logTail is the last 4 KiB of the log, headed for a failure message.
func (c *child) logTail() string {
	return fmt.Sprintf("--- tail of %s ---\n%s", c.logPath, tailFile(c.logPath, 4096))
}

// tailFile returns the last n bytes of a file.
func tailFile(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, 0)
	}
	b := make([]byte, n)
	k, _ := f.Read(b)
	return string(b[:k])
}
