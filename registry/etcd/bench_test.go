package etcd_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/testenv"
)

// BenchmarkRegisterToWatch measures how long a registration takes to come out
// of a watcher that follows 1000 services of 10 instances each: Register's
// two round trips, the watch event, and the watcher's update of one service.
func BenchmarkRegisterToWatch(b *testing.B) {
	env := testenv.StartEtcd(b)
	putAll(b, raw(b, env.Endpoint), grid(1000, 10))
	c := dial(b, env.Endpoint, 10*time.Second)
	w := c.Watcher()
	defer w.Close()
	ctx := context.Background()
	if first, err := w.Next(ctx); err != nil || len(first.Services) != 1000 {
		b.Fatalf("got %d services, %v, want 1000", len(first.Services), err)
	}

	lat := make([]time.Duration, 0, b.N)   // Register called → Next returned
	watch := make([]time.Duration, 0, b.N) // Register returned → Next returned
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		in := inst(fmt.Sprintf("svc-%03d", i%1000), fmt.Sprintf("new%d", i))
		start := time.Now()
		if _, err := c.Register(ctx, in); err != nil {
			b.Fatalf("Register: %v", err)
		}
		registered := time.Now()
		batch, err := w.Next(ctx)
		if err != nil {
			b.Fatalf("Next: %v", err)
		}
		lat = append(lat, time.Since(start))
		watch = append(watch, time.Since(registered))
		if got := len(batch.Services[in.Service]); len(batch.Services) != 1 || got != 11 {
			b.Fatalf("got %d services, %d instances of %s, want 1 service with 11", len(batch.Services), got, in.Service)
		}

		b.StopTimer()
		if err := c.Deregister(ctx, in); err != nil {
			b.Fatalf("Deregister: %v", err)
		}
		if _, err := w.Next(ctx); err != nil {
			b.Fatalf("Next: %v", err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	ms := func(d []time.Duration, q int) float64 {
		slices.Sort(d)
		return float64(d[len(d)*q/100].Microseconds()) / 1000
	}
	b.ReportMetric(ms(lat, 50), "p50-ms")
	b.ReportMetric(ms(lat, 99), "p99-ms")
	b.ReportMetric(ms(watch, 99), "watch-p99-ms")
}
