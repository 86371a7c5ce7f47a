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

	t    testing.TB
	java string
	dir  string
	child
}

// StartZooKeeper starts a server with tickTime=200 (sessions may be as short
// as 400ms) on a free port and waits until it serves. A missing Java
// or ZooKeeper install goes through Require; a server that does not come up
// fails the test. The server is killed when the test ends.
func StartZooKeeper(t testing.TB) *ZooKeeper {
	t.Helper()
	java := zkJava(t)

	dir := t.TempDir()
	port := FreePort(t)
	z := newZooKeeper(t, java, dir, port, zkConfig(filepath.Join(dir, "data"), port))
	t.Cleanup(z.Kill)
	z.Start()
	return z
}

// newZooKeeper writes cfg as dir/zoo.cfg and returns the server, not started,
// that runs from dir and answers on port.
func newZooKeeper(t testing.TB, java, dir string, port int, cfg string) *ZooKeeper {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "zoo.cfg"), []byte(cfg), 0o644); err != nil {
		t.Fatalf("testenv: write zoo.cfg: %v", err)
	}
	return &ZooKeeper{
		Addr:  net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		t:     t,
		java:  java,
		dir:   dir,
		child: child{logPath: filepath.Join(dir, "zookeeper.log")},
	}
}

// zkJava returns the java binary, after checking (through Require) that
// java and the ZooKeeper server are installed.
func zkJava(t testing.TB) string {
	t.Helper()
	java, err := exec.LookPath("java")
	Require(t, "java", err)
	jars, _ := filepath.Glob(zkJarGlob)
	if len(jars) == 0 {
		err = fmt.Errorf("no jar matches %s (apt-get install zookeeper)", zkJarGlob)
	}
	Require(t, "zookeeper", err)
	return java
}

// zkConfig is the zoo.cfg settings every test server shares: short ticks,
// loopback only, no fsync.
func zkConfig(dataDir string, clientPort int) string {
	return fmt.Sprintf(`tickTime=200
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
`, dataDir, clientPort)
}

// Start (re)starts the server on the same port and data directory and waits
// until it is ready. It does nothing if the server is running.
func (z *ZooKeeper) Start() {
	z.t.Helper()
	z.start(z.t, "zookeeper on "+z.Addr, func() *exec.Cmd { return z.command(zkClasspath) },
		func(exited <-chan struct{}) error { return waitZooKeeper(z.Addr, exited, zkReadyTimeout) })
}

// command runs the server from z.dir with the given classpath.
func (z *ZooKeeper) command(classpath string) *exec.Cmd {
	cmd := exec.Command(z.java,
		"-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-Dzookeeper.root.logger=INFO,CONSOLE",
		"-cp", classpath,
		"org.apache.zookeeper.server.quorum.QuorumPeerMain", "zoo.cfg")
	cmd.Dir = z.dir
	return cmd
}

// Stop shuts the server down with SIGTERM, falling back to SIGKILL after a
// few seconds, and waits for the process to exit.
func (z *ZooKeeper) Stop() { z.stop(5 * time.Second) }

// Kill sends SIGKILL to the server's pid and waits for it to exit.
func (z *ZooKeeper) Kill() { z.kill() }

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
