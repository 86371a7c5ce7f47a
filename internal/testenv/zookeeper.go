package testenv

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// zkClasspath is where Debian's zookeeper package puts its jars and config.
const zkClasspath = "/etc/zookeeper/conf:/usr/share/java/*"

// zkJarGlob must match for the ZooKeeper server to be considered installed.
const zkJarGlob = "/usr/share/java/zookeeper-3*.jar"

// zkReadyTimeout bounds a start; a cold JVM on a busy machine takes seconds.
const zkReadyTimeout = 20 * time.Second

// ZooKeeper is a standalone ZooKeeper server run as a child process for one
// test. Its port and data directory survive Stop/Start, so sessions and
// znodes can outlive a restart as they would in production.
type ZooKeeper struct {
	// Addr is the client address, "127.0.0.1:<port>".
	Addr string

	t       testing.TB
	java    string
	dir     string
	logPath string

	mu   sync.Mutex // guards cmd and done
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd has been reaped
}

// StartZooKeeper starts a server with tickTime=200 (sessions may be as short
// as 400ms) on a free port and waits until it serves. A missing Java
// or ZooKeeper install goes through Require; a server that does not come up
// fails the test. The server is killed when the test ends.
func StartZooKeeper(t testing.TB) *ZooKeeper {
	t.Helper()
	java, err := exec.LookPath("java")
	Require(t, "java", err)
	jars, _ := filepath.Glob(zkJarGlob)
	if len(jars) == 0 {
		err = fmt.Errorf("no jar matches %s (apt-get install zookeeper)", zkJarGlob)
	}
	Require(t, "zookeeper", err)

	dir := t.TempDir()
	port := FreePort(t)
	cfg := fmt.Sprintf(`tickTime=200
initLimit=10
syncLimit=5
dataDir=%s
clientPort=%d
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=*
forceSync=no
preAllocSize=4096
`, filepath.Join(dir, "data"), port)
	if err := os.WriteFile(filepath.Join(dir, "zoo.cfg"), []byte(cfg), 0o644); err != nil {
		t.Fatalf("testenv: write zoo.cfg: %v", err)
	}
	z := &ZooKeeper{
		Addr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		t:       t,
		java:    java,
		dir:     dir,
		logPath: filepath.Join(dir, "zookeeper.log"),
	}
	t.Cleanup(z.Kill)
	z.Start()
	return z
}

// Start (re)starts the server on the same port and data directory and waits
// until it is ready. It does nothing if the server is running.
func (z *ZooKeeper) Start() {
	z.t.Helper()
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.cmd != nil {
		return
	}
	logf, err := os.OpenFile(z.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		z.t.Fatalf("testenv: open zookeeper log: %v", err)
	}
	defer logf.Close() // the child keeps its own descriptor
	cmd := exec.Command(z.java,
		"-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-Dzookeeper.root.logger=INFO,CONSOLE",
		"-cp", zkClasspath,
		"org.apache.zookeeper.server.quorum.QuorumPeerMain", "zoo.cfg")
	cmd.Dir = z.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		z.t.Fatalf("testenv: start zookeeper: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // reap; the exit status of a killed server is not news
		close(done)
	}()
	z.cmd, z.done = cmd, done
	if err := waitZooKeeper(z.Addr, done, zkReadyTimeout); err != nil {
		z.killLocked()
		z.t.Fatalf("testenv: zookeeper on %s not ready: %v\n--- tail of %s ---\n%s",
			z.Addr, err, z.logPath, tail(z.logPath, 4096))
	}
}

// Stop shuts the server down with SIGTERM, falling back to SIGKILL after a
// few seconds, and waits for the process to exit.
func (z *ZooKeeper) Stop() {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.cmd == nil {
		return
	}
	_ = z.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-z.done:
		z.cmd, z.done = nil, nil
	case <-time.After(5 * time.Second):
		z.killLocked()
	}
}

// Kill sends SIGKILL to the server's pid and waits for it to exit.
func (z *ZooKeeper) Kill() {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.killLocked()
}

func (z *ZooKeeper) killLocked() {
	if z.cmd == nil {
		return
	}
	_ = z.cmd.Process.Kill() // by pid, never by name: other tests run servers too
	<-z.done
	z.cmd, z.done = nil, nil
}

// waitZooKeeper polls the "srvr" four-letter word until the server reports
// its mode, the process exits, or the timeout passes. "ruok" is not enough:
// it answers "imok" before the server accepts sessions.
func waitZooKeeper(addr string, exited <-chan struct{}, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := errors.New("no answer yet")
	for {
		if ok, err := serving(addr); ok {
			return nil
		} else if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", timeout, last)
		}
		select {
		case <-exited:
			return errors.New("server process exited")
		case <-tick.C:
		}
	}
}

// serving reports whether the server at addr accepts sessions.
func serving(addr string) (bool, error) {
	out, err := fourLetter(addr, "srvr")
	if err != nil {
		return false, err
	}
	if !strings.Contains(out, "Mode: ") {
		return false, fmt.Errorf("srvr answered %q", out)
	}
	return true, nil
}

// fourLetter sends a ZooKeeper four-letter command and returns the answer.
func fourLetter(addr, cmd string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte(cmd)); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	if len(b) == 0 && err != nil {
		return "", err
	}
	return string(b), nil
}

// tail returns the last n bytes of a file, for failure messages.
func tail(path string, n int64) string {
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
