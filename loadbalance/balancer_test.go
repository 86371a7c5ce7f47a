package loadbalance

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gatehouse/gatehouse/discovery"
	"github.com/gatehouse/gatehouse/registry"
)

func inst(id string, weight int) registry.Instance {
	return registry.Instance{Service: "svc", ID: id, Address: "http://" + id + ".test:8080", Weight: weight}
}

func snap(ins ...registry.Instance) discovery.Snapshot {
	ins = slices.Clone(ins)
	registry.SortByID(ins)
	return discovery.Snapshot{Service: "svc", Instances: ins}
}

// instances returns n weight-1 instances i000, i001, ...
func instances(n int) []registry.Instance {
	ins := make([]registry.Instance, n)
	for i := range ins {
		ins[i] = inst(fmt.Sprintf("i%03d", i), 1)
	}
	return ins
}

// seeded is a deterministic, goroutine-safe, allocation-free splitmix64.
func seeded(seed uint64) func() uint64 {
	var s atomic.Uint64
	s.Store(seed)
	return func() uint64 {
		z := s.Add(0x9e3779b97f4a7c15)
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		return z ^ z>>31
	}
}

func mustNew(t testing.TB, policy string, opts Options) Balancer {
	t.Helper()
	b, err := New(policy, opts)
	if err != nil {
		t.Fatalf("New(%q): %v", policy, err)
	}
	return b
}

// pickID picks, releases at once and returns the instance ID.
func pickID(t testing.TB, b Balancer, key string) string {
	t.Helper()
	e, err := b.Pick(key)
	if err != nil {
		t.Fatalf("Pick(%q): %v", key, err)
	}
	e.Done(nil)
	return e.Instance.ID
}

func endpointByID(b Balancer) map[string]*Endpoint {
	m := make(map[string]*Endpoint)
	for _, e := range b.Endpoints() {
		m[e.Instance.ID] = e
	}
	return m
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		policy  string
		opts    Options
		wantErr error
		wantMsg string
	}{
		{name: "round robin", policy: "round_robin"},
		{name: "consistent hash custom vnodes", policy: "consistent_hash", opts: Options{VirtualNodes: 40}},
		{name: "unknown", policy: "fastest", wantErr: ErrUnknownPolicy, wantMsg: strings.Join(Policies(), ", ")},
		{name: "empty name", policy: "", wantErr: ErrUnknownPolicy},
		{name: "negative vnodes", policy: "consistent_hash", opts: Options{VirtualNodes: -1}, wantMsg: "virtual nodes"},
		{name: "too many vnodes", policy: "consistent_hash", opts: Options{VirtualNodes: maxVirtualNodes + 1}, wantMsg: "virtual nodes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := New(tt.policy, tt.opts)
			wantFail := tt.wantErr != nil || tt.wantMsg != ""
			if (err != nil) != wantFail {
				t.Fatalf("New(%q, %+v) error = %v, want error %v", tt.policy, tt.opts, err, wantFail)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("got %v, want it to wrap %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("got %q, want it to contain %q", err, tt.wantMsg)
			}
			if err == nil && b == nil {
				t.Errorf("got nil Balancer and nil error")
			}
		})
	}
}

func TestPoliciesAllConstruct(t *testing.T) {
	for _, p := range Policies() {
		if _, err := New(p, Options{}); err != nil {
			t.Errorf("New(%q): got %v, want nil", p, err)
		}
	}
}

func TestNoInstances(t *testing.T) {
	for _, p := range Policies() {
		t.Run(p, func(t *testing.T) {
			b := mustNew(t, p, Options{})
			steps := []struct {
				name    string
				update  []registry.Instance // nil: no Update
				wantErr error
				wantLen int
			}{
				{name: "fresh", wantErr: ErrNoInstances},
				{name: "one instance", update: []registry.Instance{inst("a", 1)}, wantLen: 1},
				{name: "emptied", update: []registry.Instance{}, wantErr: ErrNoInstances},
			}
			for _, s := range steps {
				if s.update != nil {
					b.Update(snap(s.update...))
				}
				for _, key := range []string{"k", ""} {
					e, err := b.Pick(key)
					if !errors.Is(err, s.wantErr) {
						t.Fatalf("%s: Pick(%q) error: got %v, want %v", s.name, key, err, s.wantErr)
					}
					if err == nil {
						e.Done(nil)
					}
				}
				if got := len(b.Endpoints()); got != s.wantLen {
					t.Errorf("%s: len(Endpoints()): got %d, want %d", s.name, got, s.wantLen)
				}
			}
		})
	}
}

// TestEndpointIdentity checks that per-instance live state survives updates
// that change other instances, and a reweight of the instance itself.
func TestEndpointIdentity(t *testing.T) {
	for _, p := range Policies() {
		t.Run(p, func(t *testing.T) {
			b := mustNew(t, p, Options{Rand: seeded(1)})
			b.Update(snap(inst("a", 1), inst("b", 1), inst("c", 1)))
			before := endpointByID(b)
			// Two requests in flight on a, one on b, one on c.
			before["a"].acquire()
			before["a"].acquire()
			before["b"].acquire()
			before["c"].acquire()

			moved := inst("c", 1)
			moved.Address = "http://elsewhere.test:8080"
			reweighted := inst("b", 3)
			reweighted.Metadata = map[string]string{registry.MetaZone: "z1"}
			b.Update(snap(inst("a", 1), reweighted, moved, inst("d", 1)))
			after := endpointByID(b)

			tests := []struct {
				id           string
				samePointer  bool
				wantInFlight int64
			}{
				{id: "a", samePointer: true, wantInFlight: 2},
				{id: "b", samePointer: false, wantInFlight: 1}, // successor shares the counter
				{id: "c", samePointer: false, wantInFlight: 0}, // new address, new backend
			}
			for _, tt := range tests {
				if got := after[tt.id] == before[tt.id]; got != tt.samePointer {
					t.Errorf("%s: same *Endpoint: got %v, want %v", tt.id, got, tt.samePointer)
				}
				if got := after[tt.id].InFlight(); got != tt.wantInFlight {
					t.Errorf("%s: InFlight: got %d, want %d", tt.id, got, tt.wantInFlight)
				}
			}
			if got, want := after["b"].Instance.Weight, 3; got != want {
				t.Errorf("b weight: got %d, want %d", got, want)
			}
			if got, want := after["b"].Instance.Metadata[registry.MetaZone], "z1"; got != want {
				t.Errorf("b zone: got %q, want %q", got, want)
			}
			// Done on the superseded Endpoint reaches the live counter.
			before["b"].Done(nil)
			if got := after["b"].InFlight(); got != 0 {
				t.Errorf("b InFlight after Done on old endpoint: got %d, want 0", got)
			}
			before["a"].Done(nil)
			before["a"].Done(nil)
			if got := after["a"].InFlight(); got != 0 {
				t.Errorf("a InFlight after Done: got %d, want 0", got)
			}
			// The request to c's old address ends on the old backend's state.
			before["c"].Done(nil)
			if got, want := before["c"].InFlight(), int64(0); got != want {
				t.Errorf("old c InFlight after Done: got %d, want %d", got, want)
			}
			if got, want := after["c"].InFlight(), int64(0); got != want {
				t.Errorf("new c InFlight after old Done: got %d, want %d", got, want)
			}
		})
	}
}

func TestZeroEndpointUsable(t *testing.T) {
	var e Endpoint
	e.acquire()
	if got := e.InFlight(); got != 1 {
		t.Errorf("InFlight: got %d, want 1", got)
	}
	e.Done(nil)
	if got := e.InFlight(); got != 0 {
		t.Errorf("InFlight: got %d, want 0", got)
	}
}

func TestPickAllocs(t *testing.T) {
	ins := []registry.Instance{inst("a", 5), inst("b", 1), inst("c", 3), inst("d", 1)}
	for _, p := range Policies() {
		for _, key := range []string{"user-42", ""} {
			t.Run(fmt.Sprintf("%s/key=%q", p, key), func(t *testing.T) {
				b := mustNew(t, p, Options{}) // default Rand included
				b.Update(snap(ins...))
				got := testing.AllocsPerRun(1000, func() {
					e, err := b.Pick(key)
					if err != nil {
						panic(err)
					}
					e.Done(nil)
				})
				if got != 0 {
					t.Errorf("allocs per Pick+Done: got %v, want 0", got)
				}
			})
		}
	}
}

// TestHammer runs Pick/Done on several goroutines while another one keeps
// updating membership, under -race; afterwards nothing may be in flight.
func TestHammer(t *testing.T) {
	sets := [][]registry.Instance{
		{inst("a", 1), inst("b", 2), inst("c", 3)},
		{inst("a", 1), inst("c", 3), inst("d", 1), inst("e", 7)},
		{},
		{inst("b", 5)},
		{inst("a", 2), inst("b", 2), inst("c", 1), inst("d", 1), inst("e", 1)},
	}
	const pickers, updates = 4, 300
	for _, p := range Policies() {
		t.Run(p, func(t *testing.T) {
			b := mustNew(t, p, Options{Rand: seeded(7)})
			seen := make(map[*Endpoint]bool)
			stop := make(chan struct{})
			var picks atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, pickers)
			b.Update(snap(sets[0]...))
			var ready sync.WaitGroup // every picker runs before updates start
			ready.Add(pickers)
			for g := range pickers {
				wg.Go(func() {
					key := fmt.Sprintf("key-%d", g)
					for i := 0; ; i++ {
						if i == 1 {
							ready.Done()
						}
						select {
						case <-stop:
							return
						default:
						}
						e, err := b.Pick(key)
						if errors.Is(err, ErrNoInstances) {
							continue
						}
						if err != nil {
							errs <- err
							return
						}
						picks.Add(1)
						if i%3 == 0 {
							_ = b.Endpoints()
						}
						e.Done(nil)
					}
				})
			}
			ready.Wait()
			for i := range updates {
				b.Update(snap(sets[i%len(sets)]...))
				for _, e := range b.Endpoints() {
					seen[e] = true
				}
			}
			close(stop)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("Pick: got %v, want nil or ErrNoInstances", err)
			}
			if picks.Load() == 0 {
				t.Errorf("picks: got 0, want some")
			}
			for e := range seen {
				if got := e.InFlight(); got != 0 {
					t.Errorf("%s InFlight after all Done: got %d, want 0", e.Instance.ID, got)
				}
			}
		})
	}
}

func TestDivisor(t *testing.T) {
	rnd := seeded(11)
	divisors := []int{1, 2, 3, 7, 10, 100, 1000, 4096, 65536, 65537, 1<<31 - 1, 1 << 32, 1<<32 + 15}
	numerators := []uint64{0, 1, 2, 1<<32 - 1, 1 << 32, 1<<63 - 1, 1 << 63, 1<<64 - 1, 1<<64 - 2}
	for range 2000 {
		numerators = append(numerators, rnd())
	}
	for _, d := range divisors {
		v := newDivisor(d)
		for _, a := range numerators {
			if got, want := v.mod(a), a%uint64(d); got != want {
				t.Fatalf("%d mod %d: got %d, want %d", a, d, got, want)
			}
		}
	}
}

func TestUpdateUnchangedKeepsPicker(t *testing.T) {
	tests := []struct {
		name     string
		next     []registry.Instance
		wantSame bool
	}{
		{name: "same records", next: []registry.Instance{inst("a", 1), inst("b", 2)}, wantSame: true},
		{name: "weight changed", next: []registry.Instance{inst("a", 1), inst("b", 3)}},
		{name: "member added", next: []registry.Instance{inst("a", 1), inst("b", 2), inst("c", 1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustNew(t, "consistent_hash", Options{}).(*balancer)
			b.Update(snap(inst("a", 1), inst("b", 2)))
			before := b.cur.Load()
			b.Update(snap(tt.next...))
			if got := b.cur.Load() == before; got != tt.wantSame {
				t.Errorf("same picker: got %v, want %v", got, tt.wantSame)
			}
		})
	}
}

func TestEndpointSetInput(t *testing.T) {
	bad := inst("bad", 1)
	bad.Address = "http://[::1"
	tests := []struct {
		name string
		ins  []registry.Instance
		want string // IDs in Endpoints() order, with weights
	}{
		{name: "unsorted", ins: []registry.Instance{inst("c", 1), inst("a", 2), inst("b", 3)}, want: "a:2 b:3 c:1"},
		{name: "duplicate ID, first wins", ins: []registry.Instance{inst("a", 2), inst("a", 5), inst("b", 1)}, want: "a:2 b:1"},
		{name: "unparsable address skipped", ins: []registry.Instance{inst("a", 1), bad}, want: "a:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustNew(t, "round_robin", Options{})
			b.Update(discovery.Snapshot{Service: "svc", Instances: tt.ins})
			var got []string
			for _, e := range b.Endpoints() {
				got = append(got, fmt.Sprintf("%s:%d", e.Instance.ID, e.Instance.Weight))
			}
			if strings.Join(got, " ") != tt.want {
				t.Errorf("got %s, want %s", strings.Join(got, " "), tt.want)
			}
		})
	}
}
