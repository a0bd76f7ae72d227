package client

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestBackoffGrowsToTheCap(t *testing.T) {
	p := RetryPolicy{MaxAttempts: 10, InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, Multiplier: 2}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := p.backoff(i + 1); got != w*time.Millisecond {
			t.Errorf("backoff(%d) = %s, want %s", i+1, got, w*time.Millisecond)
		}
	}
	for range 100 {
		if j := jitter(time.Second); j < 500*time.Millisecond || j > time.Second {
			t.Fatalf("jitter(1s) = %s, want within [500ms, 1s]", j)
		}
	}
}

func withRetryInfo(t *testing.T, d time.Duration) error {
	t.Helper()
	st, err := status.New(codes.ResourceExhausted, "rate").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

func TestRetryDelayClassifiesErrors(t *testing.T) {
	p := DefaultRetryPolicy()
	for _, tc := range []struct {
		name       string
		err        error
		s          safety
		ok, server bool
		delay      time.Duration
	}{
		{"unavailable, idempotent", status.Error(codes.Unavailable, "x"), idempotent, true, false, 0},
		{"deadline, idempotent", status.Error(codes.DeadlineExceeded, "x"), idempotent, true, false, 0},
		{"unavailable, once", status.Error(codes.Unavailable, "x"), once, false, false, 0},
		{"invalid argument", status.Error(codes.InvalidArgument, "x"), idempotent, false, false, 0},
		{"exhausted without RetryInfo (a size limit)", status.Error(codes.ResourceExhausted, "x"), idempotent, false, false, 0},
		{"rate limit, once", withRetryInfo(t, 300*time.Millisecond), once, true, true, 300 * time.Millisecond},
		{"daily quota: too long to wait", withRetryInfo(t, 5*time.Hour), idempotent, false, true, 5 * time.Hour},
		{"not a status", errors.New("x"), idempotent, false, false, 0},
		{"wrapped", wrap("SendEmail", 1, status.Error(codes.Unavailable, "x")), idempotent, true, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			delay, server, ok := p.retryDelay(tc.err, tc.s)
			if ok != tc.ok || server != tc.server || delay != tc.delay {
				t.Errorf("retryDelay = %s, %v, %v; want %s, %v, %v", delay, server, ok, tc.delay, tc.server, tc.ok)
			}
		})
	}
}

func TestErrorKeepsTheStatus(t *testing.T) {
	err := wrap("GetMessage", 3, status.Error(codes.NotFound, "no such message"))
	if status.Code(err) != codes.NotFound || status.Convert(err).Message() != "no such message" {
		t.Fatalf("status of %v: %v", err, status.Convert(err))
	}
	if want := "GetMessage (after 3 attempts): rpc error: code = NotFound desc = no such message"; err.Error() != want {
		t.Fatalf("Error() = %q, want %q", err.Error(), want)
	}
}

func TestPolicyValidation(t *testing.T) {
	for _, p := range []RetryPolicy{
		{MaxAttempts: 0},
		{MaxAttempts: 2, InitialBackoff: time.Second, MaxBackoff: time.Millisecond},
		{MaxAttempts: 2, Multiplier: 0.5},
	} {
		if p.validate() == nil {
			t.Errorf("%+v: valid, want invalid", p)
		}
	}
	if err := DefaultRetryPolicy().validate(); err != nil {
		t.Fatal(err)
	}
}

func TestIdempotencyKeysAreFreshAndShort(t *testing.T) {
	a, err := newIdempotencyKey()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newIdempotencyKey()
	if a == b || len(a) > 255 || len(a) < 30 {
		t.Fatalf("keys %q, %q", a, b)
	}
}
