package registry

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCodecRoundTrip(t *testing.T) {
	in := Instance{Service: "echo", ID: "a1", Address: "http://127.0.0.1:9001", Weight: 3,
		Metadata: map[string]string{MetaVersion: "1.2.0", MetaZone: "z1"}}
	b, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"v":1`) {
		t.Fatalf("got %s, want a schema version field", b)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(in) {
		t.Fatalf("got %+v, want %+v", got, in)
	}
}

func TestDecodeRejects(t *testing.T) {
	cases := []struct{ name, data string }{
		{"not json", `{"v":1,`},
		{"no version", `{"service":"s","id":"i","address":"http://h:1"}`},
		{"future version", `{"v":99,"service":"s","id":"i","address":"http://h:1"}`},
		{"bad scheme", `{"v":1,"service":"s","id":"i","address":"ftp://h:1"}`},
		{"no host", `{"v":1,"service":"s","id":"i","address":"http://"}`},
		{"bad service", `{"v":1,"service":"a/b","id":"i","address":"http://h:1"}`},
		{"negative weight", `{"v":1,"service":"s","id":"i","address":"http://h:1","weight":-1}`},
		{"huge weight", `{"v":1,"service":"s","id":"i","address":"http://h:1","weight":100000}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode([]byte(c.data))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want an ErrInvalid", err)
			}
		})
	}
}

func TestLayout(t *testing.T) {
	l, err := NewLayout("")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := l.Key("echo", "a"), "/gatehouse/services/echo/a"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	s, id, err := l.Parse("/gatehouse/services/echo/a")
	if err != nil || s != "echo" || id != "a" {
		t.Fatalf("got %q %q %v, want echo a nil", s, id, err)
	}
	for _, bad := range []string{"/other/echo/a", "/gatehouse/services/echo", "/gatehouse/services/echo/a/b", "/gatehouse/services//a"} {
		if _, _, err := l.Parse(bad); err == nil {
			t.Errorf("Parse(%q): got nil error, want one", bad)
		}
	}
	for _, bad := range []string{"rel", "/", "/a//b", "/a/../b"} {
		if _, err := NewLayout(bad); err == nil {
			t.Errorf("NewLayout(%q): got nil error, want one", bad)
		}
	}
	if l2, _ := NewLayout("/x/y/"); l2.Root != "/x/y" {
		t.Fatalf("got %q, want /x/y", l2.Root)
	}
}

func TestDecodeAtChecksKey(t *testing.T) {
	l, _ := NewLayout("")
	b, _ := Encode(Instance{Service: "echo", ID: "a", Address: "http://h:1"})
	if _, err := l.DecodeAt("/gatehouse/services/echo/a", b); err != nil {
		t.Fatalf("got %v, want nil", err)
	}
	if _, err := l.DecodeAt("/gatehouse/services/other/a", b); !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v, want ErrInvalid for a record under the wrong key", err)
	}
}

func TestBackoffBounds(t *testing.T) {
	b := Backoff{Base: 10 * time.Millisecond, Max: 80 * time.Millisecond}
	for attempt := 0; attempt < 10; attempt++ {
		want := min(10*time.Millisecond<<attempt, 80*time.Millisecond)
		for i := 0; i < 50; i++ {
			d := b.Delay(attempt)
			if d < want/2 || d > want {
				t.Fatalf("attempt %d: got %v, want within [%v, %v]", attempt, d, want/2, want)
			}
		}
	}
}

// flakyRegistrar fails the first registrations and lets the test cut the session.
type flakyRegistrar struct {
	mu           sync.Mutex
	failFirst    int
	registers    int
	deregisters  int
	lost         chan struct{}
	registeredCh chan struct{}
}

func (f *flakyRegistrar) Register(ctx context.Context, in Instance) (<-chan struct{}, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.registers++
	if f.registers <= f.failFirst {
		return nil, errors.New("registry down")
	}
	f.lost = make(chan struct{})
	f.registeredCh <- struct{}{}
	return f.lost, nil
}

func (f *flakyRegistrar) Deregister(ctx context.Context, in Instance) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deregisters++
	return nil
}

func TestKeepReregistersAndDeregisters(t *testing.T) {
	f := &flakyRegistrar{failFirst: 2, registeredCh: make(chan struct{}, 4)}
	ctx, cancel := context.WithCancel(context.Background())
	in := Instance{Service: "echo", ID: "a", Address: "http://h:1"}
	done := make(chan error, 1)
	var lostCount int
	var mu sync.Mutex
	go func() {
		done <- Keep(ctx, f, in, Backoff{Base: time.Millisecond, Max: 4 * time.Millisecond},
			KeepEvents{Lost: func(Instance) { mu.Lock(); lostCount++; mu.Unlock() }})
	}()
	wait := func() {
		select {
		case <-f.registeredCh:
		case <-time.After(5 * time.Second):
			t.Fatal("no registration within 5s")
		}
	}
	wait()
	f.mu.Lock()
	close(f.lost)
	f.mu.Unlock()
	wait()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Keep did not return")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.registers != 4 || f.deregisters != 1 {
		t.Fatalf("got %d registers, %d deregisters; want 4, 1", f.registers, f.deregisters)
	}
	mu.Lock()
	defer mu.Unlock()
	if lostCount != 1 {
		t.Fatalf("got %d losses, want 1", lostCount)
	}
}

func TestDefaultID(t *testing.T) {
	if got, want := DefaultID("http://127.0.0.1:9001"), "127.0.0.1_9001"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if err := ValidateName(DefaultID("http://[::1]:80/x")); err != nil {
		t.Fatalf("DefaultID gave an invalid name: %v", err)
	}
}
