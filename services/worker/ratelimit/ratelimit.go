// Package ratelimit paces sends: per account (WORKER_ACCOUNT_RATE) and per
// provider configuration (WORKER_<KIND>_PROVIDER_RATE, else
// WORKER_PROVIDER_RATE), each a token bucket that lives as long as the worker.
package ratelimit

import (
	"context"
	"sync"

	"golang.org/x/time/rate"
)

// Limits are the worker's send rate limits.
type Limits struct {
	accountRate  float64
	providerRate func(kind string) float64

	mu        sync.Mutex
	accounts  map[string]*rate.Limiter
	providers map[string]*rate.Limiter
	// kindRates caches providerRate per kind (a lookup in the provider
	// registry, which is not free, on every send otherwise).
	kindRates map[string]float64
}

// New limits each account to accountRate sends per second and each provider
// configuration of a kind to providerRate(kind); 0 is unlimited.
func New(accountRate float64, providerRate func(kind string) float64) *Limits {
	return &Limits{
		accountRate: accountRate, providerRate: providerRate,
		accounts: map[string]*rate.Limiter{}, providers: map[string]*rate.Limiter{},
		kindRates: map[string]float64{},
	}
}

// Wait returns once accountID and the provider configuration configID of
// kind may send once more, or with ctx's error.
func (l *Limits) Wait(ctx context.Context, accountID, configID, kind string) error {
	if lim := l.limiter(l.accounts, accountID, l.accountRate); lim != nil {
		if err := lim.Wait(ctx); err != nil {
			return err
		}
	}
	if lim := l.limiter(l.providers, configID, l.kindRate(kind)); lim != nil {
		if err := lim.Wait(ctx); err != nil {
			return err
		}
	}
	return nil
}

// kindRate is providerRate(kind), asked once per kind.
func (l *Limits) kindRate(kind string) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.kindRates[kind]
	if !ok {
		r = l.providerRate(kind)
		l.kindRates[kind] = r
	}
	return r
}

func (l *Limits) limiter(m map[string]*rate.Limiter, key string, r float64) *rate.Limiter {
	if r <= 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := m[key]
	if lim == nil {
		burst := int(r)
		if burst < 1 {
			burst = 1
		}
		lim = rate.NewLimiter(rate.Limit(r), burst)
		m[key] = lim
	}
	return lim
}
