package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// zkQuorumTimeout bounds an election: n cold JVMs at once on a busy
// two-core machine take far longer than one.
const zkQuorumTimeout = 45 * time.Second

// ZKEnsemble is n ZooKeeper servers forming one quorum, each a child process
// on its own loopback ports, so a test can kill the leader or all of them.
// Every server keeps its ports, myid and data across Kill/Stop and Start.
// Methods are meant for the test goroutine (they call t.Fatalf).
type ZKEnsemble struct {
	t       testing.TB
	servers []*ZooKeeper
}

// StartZooKeeperEnsemble starts n servers with tickTime=200 (sessions of
// 400 ms to 4 s), short init and sync limits, and waits until every server
// serves and one of them leads. A missing Java or ZooKeeper install goes
// through Require. All servers are killed when the test ends.
func StartZooKeeperEnsemble(t testing.TB, n int) *ZKEnsemble {
	t.Helper()
	if n < 1 {
		t.Fatalf("testenv: ZooKeeper ensemble of %d servers", n)
	}
	java := zkJava(t)

	clientPorts := make([]int, n)
	var quorum strings.Builder
	for i := range n {
		clientPorts[i] = FreePort(t)
		fmt.Fprintf(&quorum, "server.%d=127.0.0.1:%d:%d\n", i+1, FreePort(t), FreePort(t))
	}
	e := &ZKEnsemble{t: t}
	for i := range n {
		dir := t.TempDir()
		data := filepath.Join(dir, "data")
		if err := os.MkdirAll(data, 0o755); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		if err := os.WriteFile(filepath.Join(data, "myid"), []byte(strconv.Itoa(i+1)+"\n"), 0o644); err != nil {
			t.Fatalf("testenv: write myid: %v", err)
		}
		// standaloneEnabled=false: one server is a quorum of one, so Leader
		// means the same for every n.
		cfg := zkConfig(data, clientPorts[i]) + "standaloneEnabled=false\ncnxTimeout=500\n" + quorum.String()
		e.servers = append(e.servers, newZooKeeper(t, java, dir, clientPorts[i], cfg))
	}
	t.Cleanup(e.killAll)
	e.StartAll()
	return e
}

// Addrs are the servers' client addresses, "127.0.0.1:<port>", by index.
func (e *ZKEnsemble) Addrs() []string {
	as := make([]string, len(e.servers))
	for i, z := range e.servers {
		as[i] = z.Addr
	}
	return as
}

// URL is the registry URL of the whole ensemble, "zk://a,b,c".
func (e *ZKEnsemble) URL() string { return "zk://" + strings.Join(e.Addrs(), ",") }

// Server returns server i, e.g. for its log path.
func (e *ZKEnsemble) Server(i int) *ZooKeeper { return e.servers[i] }

// Kill sends SIGKILL to server i's pid and waits until it has exited.
func (e *ZKEnsemble) Kill(i int) { e.servers[i].Kill() }

// Stop stops server i with SIGTERM (SIGKILL after five seconds).
func (e *ZKEnsemble) Stop(i int) { e.servers[i].Stop() }

// Start restarts server i and waits until the running servers form a
// quorum again. A running server is left alone.
func (e *ZKEnsemble) Start(i int) {
	e.t.Helper()
	e.spawn(i)
	e.waitQuorum()
}

// StopAll stops every server at once.
func (e *ZKEnsemble) StopAll() { atOnce(e.servers, (*ZooKeeper).Stop) }

// StartAll starts every server that is not running and waits for a quorum
// with all of them in it.
func (e *ZKEnsemble) StartAll() {
	e.t.Helper()
	for i := range e.servers {
		e.spawn(i)
	}
	e.waitQuorum()
}

// Leader returns the index of the server whose srvr answer says
// "Mode: leader", waiting up to zkQuorumTimeout for an election.
func (e *ZKEnsemble) Leader() int {
	e.t.Helper()
	deadline := time.Now().Add(zkQuorumTimeout)
	for {
		modes := e.modes()
		for i, m := range modes {
			if m == "leader" {
				return i
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("testenv: ZooKeeper ensemble has no leader after %v: modes %q", zkQuorumTimeout, modes)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *ZKEnsemble) killAll() { atOnce(e.servers, (*ZooKeeper).Kill) }

// modes asks every server for its mode: "leader", "follower", "down" (not
// running) or "" (running, not serving: no quorum yet).
func (e *ZKEnsemble) modes() []string {
	out := make([]string, len(e.servers))
	for i, z := range e.servers {
		if !z.running() {
			out[i] = "down"
			continue
		}
		ans, err := fourLetter(z.Addr, "srvr")
		if err != nil {
			continue
		}
		if _, rest, ok := strings.Cut(ans, "Mode: "); ok {
			out[i], _, _ = strings.Cut(rest, "\n")
		}
	}
	return out
}

// waitQuorum waits until every running server serves and one leads.
func (e *ZKEnsemble) waitQuorum() {
	e.t.Helper()
	deadline := time.Now().Add(zkQuorumTimeout)
	for {
		err := quorumErr(e.modes())
		if err == nil {
			return
		}
		for i, z := range e.servers {
			if z.exited() {
				e.t.Fatalf("testenv: ZooKeeper server %d exited\n%s", i, z.logTail())
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("testenv: ZooKeeper ensemble not ready after %v: %v\n%s",
				zkQuorumTimeout, err, e.servers[0].logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// quorumErr says why the modes are not a serving quorum, or nil.
func quorumErr(modes []string) error {
	leaders := 0
	for i, m := range modes {
		switch m {
		case "leader":
			leaders++
		case "follower", "down":
		default:
			return fmt.Errorf("server %d not serving (modes %q)", i, modes)
		}
	}
	if leaders != 1 {
		return errors.New("no leader yet")
	}
	return nil
}

// spawn starts server i's process without waiting: a lone ensemble member
// does not serve until a quorum is up.
func (e *ZKEnsemble) spawn(i int) {
	e.t.Helper()
	z := e.servers[i]
	z.start(e.t, fmt.Sprintf("zookeeper server %d", i), func() *exec.Cmd { return z.command(zkLoggingClasspath()) }, nil)
}

// LogCount counts the occurrences of s in every server's log, e.g.
// "Expiring session" to confirm that a test really expired a session. The
// servers log at INFO through slf4j-simple (see zkLogJar), which Debian's
// ZooKeeper always brings.
func (e *ZKEnsemble) LogCount(s string) int {
	n := 0
	for _, z := range e.servers {
		b, err := os.ReadFile(z.logPath)
		if err != nil {
			continue
		}
		n += strings.Count(string(b), s)
	}
	return n
}

// zkLogJar binds SLF4J to its simple logger (INFO to stderr). Debian's
// /usr/share/java holds several SLF4J bindings and the wildcard often picks
// slf4j-nop, which leaves the server log empty; naming this one first makes
// the server log what it does (elections, "Expiring session …"), for
// failure reports and LogCount. The log4j binding cannot be used: Debian
// also ships log4j-over-slf4j, and SLF4J refuses the pair.
const zkLogJar = "/usr/share/java/slf4j-simple.jar"

func zkLoggingClasspath() string {
	if _, err := os.Stat(zkLogJar); err != nil {
		return zkClasspath
	}
	conf, rest, _ := strings.Cut(zkClasspath, ":")
	return conf + ":" + zkLogJar + ":" + rest
}
