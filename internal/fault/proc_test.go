package fault

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// bin is the gatehouse binary under test: $GATEHOUSE_BIN, or built once.
var bin string

func TestMain(m *testing.M) {
	code := func() int {
		bin = os.Getenv("GATEHOUSE_BIN")
		if bin == "" {
			dir, err := os.MkdirTemp("", "gatehouse-fault-")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			bin = filepath.Join(dir, "gatehouse")
			out, err := exec.Command("go", "build", "-o", bin, "github.com/gatehouse/gatehouse/cmd/gatehouse").CombinedOutput()
			if err != nil {
				fmt.Fprintf(os.Stderr, "build gatehouse: %v\n%s", err, out)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// scenario skips a fault scenario under -short: each runs real clusters
// and processes for tens of seconds. (A missing dependency is not a reason
// to skip: that goes through testenv.Require, which fails under CI=true.)
func scenario(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("fault scenario: real registries and processes under load")
	}
}

// proc is a gatehouse process started by a test and stopped by its PID.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
	err  error // set before done is closed
}

// syncBuffer collects a process's output for failure reports.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs the gatehouse binary with args; it is killed when the test
// ends, and its last lines are logged if the test failed.
func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, log: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("--- %s (pid %d) output, without access lines ---\n%s", name, p.cmd.Process.Pid, p.quiet(15))
		}
	})
	return p
}

// quiet returns the last n output lines that are not access-log lines.
func (p *proc) quiet(n int) string {
	var out []string
	for _, l := range strings.Split(strings.TrimRight(p.log.String(), "\n"), "\n") {
		if !strings.Contains(l, `"msg":"access"`) {
			out = append(out, l)
		}
	}
	return tail(strings.Join(out, "\n"), n)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (p *proc) signal(sig syscall.Signal) {
	_ = p.cmd.Process.Signal(sig) // by pid; an exited process is not an error here
}

// kill sends SIGKILL unless the process has exited, and waits for it.
func (p *proc) kill() {
	select {
	case <-p.done:
	default:
		p.signal(syscall.SIGKILL)
		<-p.done
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(timeout time.Duration) {
	p.t.Helper()
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			p.t.Fatalf("%s exited with %v\n%s", p.name, p.err, p.quiet(30))
		}
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %v of SIGTERM", p.name, timeout)
	}
}

// lines returns the output lines that contain any of parts (all lines if
// none are given), at most the last n of them.
func (p *proc) lines(n int, parts ...string) string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(p.log.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		match := len(parts) == 0
		for _, s := range parts {
			if strings.Contains(line, s) {
				match = true
				break
			}
		}
		if match {
			out = append(out, line)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return strings.Join(out, "\n")
}

// waitFor polls cond until it holds or the timeout passes, and returns how
// long that took.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	t0 := time.Now()
	deadline := t0.Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(t0)
}
