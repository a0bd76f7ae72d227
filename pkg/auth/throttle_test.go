package auth

import (
	"context"
	"errors"
	"testing"
	"time"
)

type fakeAuth struct {
	calls int
	valid string
}

func (f *fakeAuth) Authenticate(_ context.Context, token string) (Principal, error) {
	f.calls++
	if token == f.valid {
		return Principal{AccountID: "a"}, nil
	}
	return Principal{}, ErrUnauthenticated
}

type ipKey struct{}

func fromIP(ip string) context.Context { return context.WithValue(context.Background(), ipKey{}, ip) }

func TestThrottleFailedAuthPerAddress(t *testing.T) {
	next := &fakeAuth{valid: "good"}
	a := NewThrottle(next, ThrottleConfig{PerMinute: 60, Burst: 3}, func(ctx context.Context) string { return ctx.Value(ipKey{}).(string) }).(*Throttle)
	now := time.Unix(1_000_000, 0)
	a.now = func() time.Time { return now }

	attacker, user := fromIP("203.0.113.9"), fromIP("198.51.100.7")
	for i := 0; i < 3; i++ {
		if _, err := a.Authenticate(attacker, "guess"); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	lookups := next.calls
	for i := 0; i < 100; i++ {
		if _, err := a.Authenticate(attacker, "guess"); !errors.Is(err, ErrThrottled) {
			t.Fatalf("after the burst: %v, want ErrThrottled", err)
		}
	}
	if next.calls != lookups {
		t.Fatalf("throttled calls reached the key store: %d lookups", next.calls-lookups)
	}
	// Even the right key waits: the address is throttled, not the token.
	if _, err := a.Authenticate(attacker, "good"); !errors.Is(err, ErrThrottled) {
		t.Fatalf("throttled address with a valid key: %v", err)
	}
	// Another address is not affected, and successes never count.
	for i := 0; i < 10; i++ {
		if _, err := a.Authenticate(user, "good"); err != nil {
			t.Fatalf("other address: %v", err)
		}
	}
	// One failure per second refills.
	now = now.Add(time.Second)
	if _, err := a.Authenticate(attacker, "good"); err != nil {
		t.Fatalf("after a second: %v", err)
	}
}

func TestThrottleDisabled(t *testing.T) {
	next := &fakeAuth{}
	if got := NewThrottle(next, ThrottleConfig{}, nil); got != Authenticator(next) {
		t.Fatal("PerMinute 0 must return the authenticator unchanged")
	}
}
