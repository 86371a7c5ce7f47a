package testenv

import (
	"errors"
	"fmt"
	"net"
	"testing"
)

func TestFreePort(t *testing.T) {
	p := FreePort(t)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		t.Fatalf("listen on free port %d: %v", p, err)
	}
	l.Close()
}

// recordTB captures Skipf and Fatalf instead of ending the test.
type recordTB struct {
	testing.TB
	skipped, fatal bool
}

func (r *recordTB) Helper()               {}
func (r *recordTB) Skipf(string, ...any)  { r.skipped = true }
func (r *recordTB) Fatalf(string, ...any) { r.fatal = true }

func TestRequire(t *testing.T) {
	missing := errors.New("not installed")
	cases := []struct {
		name        string
		ci          string
		err         error
		skip, fatal bool
	}{
		{"available", "", nil, false, false},
		{"available in CI", "true", nil, false, false},
		{"missing locally skips", "", missing, true, false},
		{"missing with CI=false skips", "false", missing, true, false},
		{"missing in CI fails", "true", missing, false, true},
		{"missing in CI=1 fails", "1", missing, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			r := &recordTB{TB: t}
			Require(r, "thing", tc.err)
			if r.skipped != tc.skip || r.fatal != tc.fatal {
				t.Errorf("got skip=%v fatal=%v, want skip=%v fatal=%v", r.skipped, r.fatal, tc.skip, tc.fatal)
			}
		})
	}
}
