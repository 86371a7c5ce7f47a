package fault

import (
	"bufio"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// TestMain runs the tests against $GATEHOUSE_BIN, or a binary built once.
func TestMain(m *testing.M) { testenv.GatehouseMain(m) }

// scenario skips a fault scenario under -short: each runs real clusters
// and processes for tens of seconds. (A missing dependency is not a reason
// to skip: that goes through testenv.Require, which fails under CI=true.)
func scenario(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("fault scenario: real registries and processes under load")
	}
}

// start runs the gatehouse binary with args until the test ends. Failure
// reports leave out access lines: under load they would bury the cause.
func start(t *testing.T, name string, args ...string) *testenv.Proc {
	t.Helper()
	p := testenv.Gatehouse(name, args...)
	p.ReportLines = 15
	p.Quiet = func(l string) bool { return strings.Contains(l, `"msg":"access"`) }
	return p.Start(t)
}

// lines returns p's output lines that contain any of parts (all lines if
// none are given), at most the last n of them.
func lines(p *testenv.Proc, n int, parts ...string) string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(p.Output()))
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
