package testenv

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

// GatehouseBinary returns the gatehouse binary for a TestMain: $GATEHOUSE_BIN
// if set, else cmd/gatehouse built into a temporary directory that cleanup
// removes. TestMain has no testing.TB, hence the error.
func GatehouseBinary() (path string, cleanup func(), err error) {
	if bin := os.Getenv("GATEHOUSE_BIN"); bin != "" {
		return bin, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "gatehouse-test-")
	if err != nil {
		return "", nil, err
	}
	path = filepath.Join(dir, "gatehouse")
	out, err := exec.Command("go", "build", "-o", path, "github.com/gatehouse/gatehouse/cmd/gatehouse").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("build gatehouse: %v\n%s", err, out)
	}
	return path, func() { os.RemoveAll(dir) }, nil
}

// gatehouseBin is the binary GatehouseMain found, for Gatehouse; package
// state because a TestMain has no test to hand it to.
var gatehouseBin string

// GatehouseMain is a whole TestMain: it finds the binary with
// GatehouseBinary, runs the tests, removes a built binary and exits.
func GatehouseMain(m *testing.M) {
	path, cleanup, err := GatehouseBinary()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gatehouseBin = path
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// Gatehouse returns a Proc, not yet started, that runs the gatehouse binary
// with args. TestMain must be GatehouseMain.
func Gatehouse(name string, args ...string) *Proc {
	if gatehouseBin == "" {
		panic("testenv: Gatehouse needs TestMain to call GatehouseMain")
	}
	return &Proc{Name: name, Path: gatehouseBin, Args: args}
}

// Proc is a process started by a test and stopped by its PID, with its
// output captured for assertions and failure reports. Set the exported
// fields, then call Start.
type Proc struct {
	Name string // for messages
	Path string
	Args []string
	// Quiet, if set, marks output lines to leave out of failure reports
	// (Output keeps them), e.g. access lines that would bury the cause.
	Quiet func(line string) bool
	// ReportLines is how many lines the cleanup of a failed test logs; 40 if 0.
	ReportLines int

	t    testing.TB
	cmd  *exec.Cmd
	out  syncBuffer
	done chan struct{}
	err  error // set before done is closed
}

// Start runs the process. It is killed when the test ends, and its last
// lines are logged if the test failed.
func (p *Proc) Start(t testing.TB) *Proc {
	t.Helper()
	p.t, p.done = t, make(chan struct{})
	p.cmd = exec.Command(p.Path, p.Args...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.Name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			n := p.ReportLines
			if n == 0 {
				n = 40
			}
			what := "output"
			if p.Quiet != nil {
				what = "output, quiet lines left out"
			}
			t.Logf("--- %s (pid %d) %s ---\n%s", p.Name, p.Pid(), what, p.report(n))
		}
	})
	return p
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Output is everything the process has written to stdout and stderr.
func (p *Proc) Output() string { return p.out.String() }

// Signal sends sig by PID; an exited process is not an error here.
func (p *Proc) Signal(sig syscall.Signal) {
	_ = p.cmd.Process.Signal(sig)
}

// Kill sends SIGKILL unless the process has exited, and waits for it.
func (p *Proc) Kill() {
	select {
	case <-p.done:
	default:
		p.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// Stop sends SIGTERM and fails the test unless the process exits cleanly
// within timeout.
func (p *Proc) Stop(timeout time.Duration) {
	p.t.Helper()
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			p.t.Fatalf("%s exited with %v\n%s", p.Name, p.err, p.report(30))
		}
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %v of SIGTERM", p.Name, timeout)
	}
}

// HasLine reports whether the process logged a line containing all of parts.
func (p *Proc) HasLine(parts ...string) bool {
	sc := bufio.NewScanner(strings.NewReader(p.Output()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		ok := true
		for _, s := range parts {
			if !strings.Contains(sc.Text(), s) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// report returns the last n output lines that are not Quiet.
func (p *Proc) report(n int) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(p.Output(), "\n"), "\n") {
		if p.Quiet == nil || !p.Quiet(l) {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WaitFor polls cond until it holds or the timeout passes, and returns how
// long that took.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
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

// syncBuffer collects a process's output; the process writes while the
// test reads.
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
