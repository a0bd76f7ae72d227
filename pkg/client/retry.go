package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// RetryPolicy says when and how often a failed call is tried again.
//
// A call is retried when
//   - it is safe to repeat (sends carry an idempotency key, reads, and the
//     calls that are idempotent on the server, such as RevokeApiKey) and it
//     failed with UNAVAILABLE or DEADLINE_EXCEEDED, the answers that do not say
//     whether the server acted; or
//   - any call was refused with RESOURCE_EXHAUSTED carrying a RetryInfo delay
//     (the account's request rate): nothing was done, and the delay is waited
//     when it is at most MaxRetryInfoDelay and fits the context's deadline.
//
// Between attempts it waits InitialBackoff, then Multiplier times longer each
// time up to MaxBackoff, with jitter (each wait is between half and all of
// it). The caller's context bounds everything.
type RetryPolicy struct {
	// MaxAttempts is the number of attempts, the first included (1: no retries).
	MaxAttempts    int
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	Multiplier     float64
	// PerAttemptTimeout, when set, bounds each attempt, so that a hung server
	// costs one attempt (DEADLINE_EXCEEDED, retried) rather than the whole call.
	PerAttemptTimeout time.Duration
	// MaxRetryInfoDelay is the longest RetryInfo delay waited (default 30 s);
	// a longer one (a daily quota) is returned at once.
	MaxRetryInfoDelay time.Duration
}

// DefaultRetryPolicy: 5 attempts, 100 ms doubling to 5 s, 10 s per attempt.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{
		MaxAttempts: 5, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second, Multiplier: 2,
		PerAttemptTimeout: 10 * time.Second, MaxRetryInfoDelay: 30 * time.Second,
	}
}

func (p RetryPolicy) validate() error {
	switch {
	case p.MaxAttempts < 1:
		return fmt.Errorf("MaxAttempts %d: want at least 1", p.MaxAttempts)
	case p.InitialBackoff < 0 || p.MaxBackoff < p.InitialBackoff:
		return fmt.Errorf("backoff %s..%s: want 0 <= InitialBackoff <= MaxBackoff", p.InitialBackoff, p.MaxBackoff)
	case p.Multiplier != 0 && p.Multiplier < 1:
		return fmt.Errorf("Multiplier %g: want at least 1", p.Multiplier)
	case p.PerAttemptTimeout < 0 || p.MaxRetryInfoDelay < 0:
		return errors.New("negative PerAttemptTimeout or MaxRetryInfoDelay")
	}
	return nil
}

// backoff is the wait before attempt n+1 (n >= 1 attempts made), without jitter.
func (p RetryPolicy) backoff(n int) time.Duration {
	d := float64(p.InitialBackoff)
	m := p.Multiplier
	if m == 0 {
		m = 2
	}
	for i := 1; i < n && d < float64(p.MaxBackoff); i++ {
		d *= m
	}
	return min(time.Duration(d), p.MaxBackoff)
}

func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// safety says whether a method may be repeated after an answer that leaves
// open whether the server acted.
type safety bool

const (
	idempotent safety = true  // retried on UNAVAILABLE and DEADLINE_EXCEEDED
	once       safety = false // retried only on RESOURCE_EXHAUSTED with RetryInfo
)

// retryDelay says whether err is retried for a call of safety s, and after how
// long (before jitter) when it is a RetryInfo delay; ok false means not retried.
func (p RetryPolicy) retryDelay(err error, s safety) (delay time.Duration, fromServer, ok bool) {
	st, isStatus := status.FromError(err)
	if !isStatus {
		return 0, false, false
	}
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded:
		return 0, false, bool(s)
	case codes.ResourceExhausted:
		for _, d := range st.Details() {
			if ri, isRI := d.(*errdetails.RetryInfo); isRI && ri.GetRetryDelay() != nil {
				max := p.MaxRetryInfoDelay
				if max == 0 {
					max = 30 * time.Second
				}
				delay := ri.GetRetryDelay().AsDuration()
				return delay, true, delay <= max
			}
		}
	}
	return 0, false, false
}

// call runs f under the client's deadline and retry policy. method names the
// call in errors.
func call[T any](ctx context.Context, c *Client, method string, s safety, f func(context.Context) (T, error)) (T, error) {
	if _, has := ctx.Deadline(); !has && c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	p := c.retry
	for attempt := 1; ; attempt++ {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if p.PerAttemptTimeout > 0 {
			actx, cancel = context.WithTimeout(ctx, p.PerAttemptTimeout)
		}
		resp, err := f(actx)
		cancel()
		if err == nil {
			return resp, nil
		}
		var zero T
		if attempt >= p.MaxAttempts || ctx.Err() != nil {
			return zero, wrap(method, attempt, err)
		}
		delay, fromServer, ok := p.retryDelay(err, s)
		if !ok {
			return zero, wrap(method, attempt, err)
		}
		if fromServer {
			delay += jitter(delay / 10)
		} else {
			delay = jitter(p.backoff(attempt))
		}
		if dl, has := ctx.Deadline(); has && time.Until(dl) < delay {
			return zero, wrap(method, attempt, err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return zero, wrap(method, attempt, err)
		case <-t.C:
		}
	}
}

// Error is a failed call: the last attempt's gRPC status error, the method and
// the number of attempts. status.Code and status.FromError see the status.
type Error struct {
	Method   string
	Attempts int
	Err      error
}

func (e *Error) Error() string {
	if e.Attempts > 1 {
		return fmt.Sprintf("%s (after %d attempts): %v", e.Method, e.Attempts, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Method, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// GRPCStatus lets status.FromError and status.Code find the status.
func (e *Error) GRPCStatus() *status.Status {
	st, _ := status.FromError(e.Err)
	return st
}

func wrap(method string, attempts int, err error) error {
	return &Error{Method: method, Attempts: attempts, Err: err}
}
