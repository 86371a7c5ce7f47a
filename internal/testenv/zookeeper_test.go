package testenv

import (
	"testing"
)

func TestZooKeeperLifecycle(t *testing.T) {
	z := StartZooKeeper(t)
	steps := []struct {
		name string
		do   func()
		up   bool
	}{
		{"started", func() {}, true},
		{"stopped", z.Stop, false},
		{"restarted on the same port", z.Start, true},
		{"killed", z.Kill, false},
		{"started after kill", z.Start, true},
	}
	for _, s := range steps {
		s.do()
		ok, err := serving(z.Addr)
		if ok != s.up {
			t.Fatalf("%s: serving on %s: got %v (%v), want %v", s.name, z.Addr, ok, err, s.up)
		}
	}
}
