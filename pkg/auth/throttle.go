package auth

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrThrottled means the caller's address failed authentication too often
// lately; the token was not looked up.
var ErrThrottled = errors.New("too many failed authentications from this address")

// ThrottleConfig bounds failed authentications per client address.
type ThrottleConfig struct {
	// PerMinute is how many failures an address may have per minute,
	// sustained; Burst how many at once. 0 disables the throttle.
	PerMinute int `env:"AUTH_FAILURES_PER_MINUTE" default:"30" help:"failed authentications per client address per minute before its calls are refused without a lookup (0: no limit)"`
	Burst     int `env:"AUTH_FAILURES_BURST" default:"20" help:"failed authentications a client address may make at once"`
}

// Throttle wraps an Authenticator: an address that has used up its failures
// is refused (ErrThrottled) before the token is looked up, so guessing keys
// costs the guesser time and us nothing. Successful calls are never
// throttled and do not count.
type Throttle struct {
	next     Authenticator
	clientIP func(context.Context) string
	rate     float64 // failures per second
	burst    float64
	now      func() time.Time

	mu    sync.Mutex
	peers map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// maxThrottled bounds the addresses tracked; when full, the fullest buckets
// (addresses without recent failures) are dropped first.
const maxThrottled = 100_000

// NewThrottle wraps next; clientIP names the caller's address (the usage
// recorder's ClientIP, which believes x-forwarded-for only from trusted
// proxies). A zero PerMinute returns next unchanged.
func NewThrottle(next Authenticator, cfg ThrottleConfig, clientIP func(context.Context) string) Authenticator {
	if cfg.PerMinute <= 0 {
		return next
	}
	burst := cfg.Burst
	if burst < 1 {
		burst = 1
	}
	return &Throttle{next: next, clientIP: clientIP, rate: float64(cfg.PerMinute) / 60, burst: float64(burst), now: time.Now, peers: map[string]*bucket{}}
}

// Authenticate implements Authenticator.
func (t *Throttle) Authenticate(ctx context.Context, token string) (Principal, error) {
	ip := t.clientIP(ctx)
	now := t.now()
	t.mu.Lock()
	if b, ok := t.peers[ip]; ok && t.refill(b, now) < 1 {
		t.mu.Unlock()
		return Principal{}, ErrThrottled
	}
	t.mu.Unlock()

	p, err := t.next.Authenticate(ctx, token)
	if !errors.Is(err, ErrUnauthenticated) {
		return p, err
	}
	t.mu.Lock()
	b, ok := t.peers[ip]
	if !ok {
		if len(t.peers) >= maxThrottled {
			t.evict(now)
		}
		b = &bucket{tokens: t.burst, at: now}
		t.peers[ip] = b
	}
	t.refill(b, now)
	b.tokens--
	t.mu.Unlock()
	return p, err
}

// refill brings b up to date and returns its tokens.
func (t *Throttle) refill(b *bucket, now time.Time) float64 {
	if d := now.Sub(b.at).Seconds(); d > 0 {
		b.tokens = min(t.burst, b.tokens+d*t.rate)
		b.at = now
	}
	return b.tokens
}

// evict drops addresses whose buckets are full again (no failure they could
// be refused for); if none is, it drops everything but the throttled ones.
func (t *Throttle) evict(now time.Time) {
	for ip, b := range t.peers {
		if t.refill(b, now) >= t.burst {
			delete(t.peers, ip)
		}
	}
	if len(t.peers) < maxThrottled {
		return
	}
	for ip, b := range t.peers {
		if b.tokens >= 1 {
			delete(t.peers, ip)
		}
	}
}
