package discovery

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/registry"
)

func set(svc string, ids ...string) []registry.Instance {
	out := make([]registry.Instance, len(ids))
	for i, id := range ids {
		out[i] = inst(svc, id)
	}
	return out
}

func batch(full bool, svc string, ids ...string) step {
	return step{b: registry.Batch{Full: full, Services: map[string][]registry.Instance{svc: set(svc, ids...)}}}
}

func TestPanicFloor(t *testing.T) {
	cases := []struct {
		name  string
		after []step // after a full list of a..j (10 instances)
		// want is the published set right after the steps; held whether a
		// removal is being held.
		want []string
		held bool
	}{
		{"small removal applies", []step{batch(false, "s", "a", "b", "c", "d", "e", "f", "g", "h")}, []string{"a", "b", "c", "d", "e", "f", "g", "h"}, false},
		{"80% removal is held", []step{batch(false, "s", "a", "b")}, []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}, true},
		{"held removal superseded by recovery", []step{batch(false, "s", "a", "b"), batch(false, "s", "a", "b", "c", "d", "e", "f", "g", "h", "i")}, []string{"a", "b", "c", "d", "e", "f", "g", "h", "i"}, false},
		{"full re-list confirms", []step{batch(false, "s", "a", "b"), batch(true, "s", "a", "b")}, []string{"a", "b"}, false},
		{"service vanishing from a full list is held", []step{{b: registry.Batch{Full: true, Services: map[string][]registry.Instance{}}}}, []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}, true},
		{"single removals in a burst add up", []step{
			batch(false, "s", "b", "c", "d", "e", "f", "g", "h", "i", "j"),
			batch(false, "s", "c", "d", "e", "f", "g", "h", "i", "j"),
			batch(false, "s", "d", "e", "f", "g", "h", "i", "j"),
			batch(false, "s", "e", "f", "g", "h", "i", "j"),
			batch(false, "s", "f", "g", "h", "i", "j"),
			batch(false, "s", "g", "h", "i", "j"),
		}, []string{"f", "g", "h", "i", "j"}, true}, // half may go; the sixth is held
		{"additions apply while removals are held", []step{batch(false, "s", "a", "k")}, []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newScript()
			s := startWith(t, w, Options{ConfirmDelay: time.Hour})
			w.steps <- batch(true, "s", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j")
			<-s.Synced()
			for _, st := range c.after {
				w.steps <- st
			}
			// A marker service proves every step was applied.
			w.steps <- batch(false, "marker", "m")
			waitFor(t, "steps applied", func() bool { _, ok := s.Snapshot("marker"); return ok })
			snap, _ := s.Snapshot("s")
			if got := ids(snap); !equalStrings(got, c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			ss, _ := s.ServiceStatus("s")
			if (ss.HeldRemoval > 0) != c.held {
				t.Fatalf("got held removal %d, want held %v", ss.HeldRemoval, c.held)
			}
		})
	}
}

func TestPanicFloorConfirmedByDelay(t *testing.T) {
	w := newScript()
	s := startWith(t, w, Options{ConfirmDelay: 50 * time.Millisecond})
	rec := &recorder{}
	defer s.Subscribe("s", rec)()
	w.steps <- batch(true, "s", "a", "b", "c", "d", "e")
	<-s.Synced()
	w.steps <- batch(false, "s", "a")
	waitFor(t, "held removal applied after the delay", func() bool { got, _ := rec.last(); return len(got.Instances) == 1 })
	if ss, _ := s.ServiceStatus("s"); ss.HeldRemoval != 0 {
		t.Fatalf("got held removal %d after confirmation, want 0", ss.HeldRemoval)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestStatusStaleAndExpired(t *testing.T) {
	w := newScript()
	s := startWith(t, w, Options{MaxStaleness: 100 * time.Millisecond, PanicFloor: -1})
	rec := &recorder{}
	defer s.Subscribe("s", rec)()
	if s.Ready() || s.Status().State != Starting {
		t.Fatalf("got ready %v state %v, want not ready, STARTING", s.Ready(), s.Status().State)
	}
	w.steps <- step{err: errors.New("dial: refused")}
	w.steps <- batch(true, "s", "a", "b")
	<-s.Synced()
	if st := s.Status(); st.State != Synced || !s.Ready() || st.LastSync.IsZero() {
		t.Fatalf("got %+v ready %v, want SYNCED and ready", st, s.Ready())
	}
	w.steps <- step{err: errors.New("connection lost")}
	waitFor(t, "STALE", func() bool { return s.Status().State == Stale })
	if st := s.Status(); st.StaleSince.IsZero() || st.LastError != "connection lost" || !s.Ready() {
		t.Fatalf("got %+v ready %v, want stale since set, the error, still ready", st, s.Ready())
	}
	if snap, _ := s.Snapshot("s"); len(snap.Instances) != 2 {
		t.Fatalf("got %v while stale, want the last good [a b]", ids(snap))
	}
	waitFor(t, "EXPIRED", func() bool { return s.Status().State == Expired })
	waitFor(t, "empty set published on expiry", func() bool { got, _ := rec.last(); return len(got.Instances) == 0 })
	w.steps <- batch(true, "s", "a", "b")
	waitFor(t, "SYNCED again with instances", func() bool {
		got, _ := rec.last()
		return s.Status().State == Synced && len(got.Instances) == 2
	})
}

func TestSnapshotFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "routes.json")
	w := newScript()
	s := startWith(t, w, Options{SnapshotPath: path, ConfirmDelay: 200 * time.Millisecond})
	w.steps <- step{b: registry.Batch{Full: true, Services: map[string][]registry.Instance{
		"s": set("s", "a", "b"), "t": set("t", "x")}}}
	<-s.Synced()
	waitFor(t, "snapshot file written", func() bool {
		got, _, err := readSnapshotFile(path)
		return err == nil && len(got["s"]) == 2 && len(got["t"]) == 1
	})

	// A new gateway whose registry is down serves from the file.
	w2 := newScript()
	s2 := startWith(t, w2, Options{SnapshotPath: path, ConfirmDelay: 200 * time.Millisecond})
	w2.steps <- step{err: errors.New("registry down")}
	if !s2.Ready() || !s2.Status().Restored || s2.Status().State != Stale {
		t.Fatalf("got ready %v status %+v, want ready, restored, STALE", s2.Ready(), s2.Status())
	}
	rec := &recorder{}
	defer s2.Subscribe("s", rec)()
	waitFor(t, "restored set delivered", func() bool { got, _ := rec.last(); return len(got.Instances) == 2 })
	if names := s2.Services(); len(names) != 2 {
		t.Fatalf("got services %v, want [s t]", names)
	}
	// The registry returns with a different set. Its addition applies at
	// once; removing both restored instances crosses the panic floor (a
	// registry just back may not have its instances re-registered yet), so
	// they stay until the confirm delay.
	w2.steps <- batch(true, "s", "c")
	waitFor(t, "c added, a and b kept", func() bool {
		got, _ := rec.last()
		return equalStrings(ids(got), []string{"a", "b", "c"})
	})
	waitFor(t, "registry set replaces the restored one after the delay", func() bool {
		got, _ := rec.last()
		return len(got.Instances) == 1 && got.Instances[0].ID == "c"
	})
	// A restored service the registry no longer has is emptied at once: the
	// file is older than any registry read.
	if snap, _ := s2.Snapshot("t"); len(snap.Instances) != 0 {
		t.Fatalf("got %v for t, want [] after the registry's full list left it out", ids(snap))
	}
}

func TestSnapshotFileCorruptOrMissing(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		"missing":     filepath.Join(dir, "none.json"),
		"corrupt":     filepath.Join(dir, "corrupt.json"),
		"wrong shape": filepath.Join(dir, "shape.json"),
	}
	os.WriteFile(cases["corrupt"], []byte(`{"version":1,"services":{`), 0o600)
	os.WriteFile(cases["wrong shape"], []byte(`{"version":7}`), 0o600)
	for name, path := range cases {
		t.Run(name, func(t *testing.T) {
			s := NewSubject(newScript(), Options{SnapshotPath: path})
			if s.Ready() || len(s.Services()) != 0 {
				t.Fatalf("got ready %v services %v, want an empty, unready start", s.Ready(), s.Services())
			}
		})
	}
}

func TestSnapshotFileDropsInvalidRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "routes.json")
	os.WriteFile(path, []byte(`{"version":1,"services":{"s":[
		{"service":"s","id":"a","address":"http://127.0.0.1:1"},
		{"service":"s","id":"b","address":"ftp://nope"},
		{"service":"other","id":"c","address":"http://127.0.0.1:1"}]}}`), 0o600)
	s := NewSubject(newScript(), Options{SnapshotPath: path})
	snap, _ := s.Snapshot("s")
	if got := ids(snap); !equalStrings(got, []string{"a"}) {
		t.Fatalf("got %v, want [a]", got)
	}
}

// Instances that joined during the window count: a service that grew one
// by one and then loses most of them in one update is held.
func TestPanicFloorCountsRecentAdditions(t *testing.T) {
	w := newScript()
	s := startWith(t, w, Options{ConfirmDelay: time.Hour})
	w.steps <- batch(true, "s", "a")
	<-s.Synced()
	w.steps <- batch(false, "s", "a", "b")
	w.steps <- batch(false, "s", "a", "b", "c")
	w.steps <- batch(false, "s", "a", "b", "c", "d")
	w.steps <- batch(false, "s", "a", "b", "c", "d", "e")
	w.steps <- batch(false, "s", "e")
	w.steps <- batch(false, "marker", "m")
	waitFor(t, "steps applied", func() bool { _, ok := s.Snapshot("marker"); return ok })
	snap, _ := s.Snapshot("s")
	if got := ids(snap); !equalStrings(got, []string{"a", "b", "c", "d", "e"}) {
		t.Fatalf("got %v, want all five kept while 4 of 5 removals are held", got)
	}
}
