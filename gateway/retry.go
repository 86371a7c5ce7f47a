package gateway

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// RetryConfig says when a failed request is tried again on another instance.
//
// A request that never reached a backend (the connection could not be made)
// is retried whatever its method. One that was sent is retried only if its
// method is in Methods and it had no body, or its body was not yet read; a
// timeout is never retried (the backend may still be working on it).
type RetryConfig struct {
	// Attempts counts every try, the first included; 0 means 3 and 1 turns
	// retries off.
	Attempts int `mapstructure:"attempts"`
	// Methods may be retried after being sent; empty means the idempotent
	// ones: GET, HEAD, OPTIONS, TRACE, PUT, DELETE.
	Methods []string `mapstructure:"methods"`
}

// RetryBudget bounds retries gateway-wide so that a failing backend cannot
// multiply the load on the rest: retries may add Ratio of the requests seen,
// plus MinPerSecond.
type RetryBudget struct {
	Ratio        float64 `mapstructure:"ratio"`          // 0 means 0.2; negative: no ratio part
	MinPerSecond int     `mapstructure:"min_per_second"` // 0 means 10
}

const defaultAttempts = 3

var defaultRetryMethods = []string{"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}

func (rc RetryConfig) validate() error {
	if rc.Attempts < 0 || rc.Attempts > 10 {
		return fmt.Errorf("retry attempts: %d not in 0..10", rc.Attempts)
	}
	for _, m := range rc.Methods {
		if m == "" || strings.ContainsAny(m, " \t/") {
			return fmt.Errorf("retry methods: %q is not a method", m)
		}
	}
	return nil
}

// retryPolicy is a compiled RetryConfig.
type retryPolicy struct {
	attempts int
	methods  []string
}

func compileRetry(rc RetryConfig) *retryPolicy {
	p := &retryPolicy{attempts: rc.Attempts, methods: methodsUpper(rc.Methods)}
	if p.attempts == 0 {
		p.attempts = defaultAttempts
	}
	if len(p.methods) == 0 {
		p.methods = defaultRetryMethods
	}
	return p
}

// retryable reports whether a failed attempt may be tried again.
func (p *retryPolicy) retryable(r *http.Request, body *replayBody, err error) bool {
	switch {
	case clientGone(r), body.used():
		return false
	case dialFailed(err):
		return true
	case isTimeout(err), errors.Is(err, errCutOff):
		return false
	}
	return slices.Contains(p.methods, r.Method)
}

// dialFailed reports an error from connecting: the request never left.
func dialFailed(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// replayBody stands in for a request body and records whether any of it
// was read, since only an untouched body can be sent again. It lives in the
// pooled exchange, so wrapping allocates nothing.
type replayBody struct {
	rc   io.ReadCloser
	read atomic.Bool // touched from the engine's goroutine and the handler's
}

func (b *replayBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.rc.Read(p)
}

// Close is left to the server, which closes the request body itself; an
// engine closing it must not spoil a retry.
func (b *replayBody) Close() error { return nil }

func (b *replayBody) used() bool { return b.rc != nil && b.read.Load() }

// budget is the gateway-wide retry budget, lock-free.
type budget struct {
	perRequest int64 // milli-tokens deposited per request
	minPerSec  int64
	tokens     atomic.Int64 // milli-tokens
	second     atomic.Int64 // unix second of minUsed
	minUsed    atomic.Int64
}

const budgetCap = 1000 * 1000 // at most 1000 banked retries

func newBudget(b RetryBudget) *budget {
	ratio, minPS := b.Ratio, b.MinPerSecond
	if ratio == 0 {
		ratio = 0.2
	}
	if ratio < 0 {
		ratio = 0
	}
	if minPS == 0 {
		minPS = 10
	}
	return &budget{perRequest: int64(ratio * 1000), minPerSec: int64(max(minPS, 0))}
}

// deposit is called once per request.
func (b *budget) deposit() {
	if b.perRequest > 0 && b.tokens.Load() < budgetCap {
		b.tokens.Add(b.perRequest)
	}
}

// withdraw takes one retry from the budget if there is one.
func (b *budget) withdraw(now time.Time) bool {
	for {
		t := b.tokens.Load()
		if t < 1000 {
			break
		}
		if b.tokens.CompareAndSwap(t, t-1000) {
			return true
		}
	}
	sec := now.Unix()
	if old := b.second.Load(); old != sec && b.second.CompareAndSwap(old, sec) {
		b.minUsed.Store(0)
	}
	return b.minUsed.Add(1) <= b.minPerSec
}
