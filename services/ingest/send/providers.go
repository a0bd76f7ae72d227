package send

import (
	"context"
	"sync"
	"time"

	"github.com/namirasoft/email-sender/services/ingest/store"
)

// providers resolves provider configurations with a short cache of found ones:
// a busy account costs one query per TTL, and a change (deleted, unhealthy)
// takes effect within it. Misses are not cached, so a configuration created a
// moment ago is usable at once.
type providers struct {
	db  store.DBTX
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	cache map[providerKey]cachedProvider
}

type providerKey struct{ account, id string }

type cachedProvider struct {
	p       store.Provider
	expires time.Time
}

func (c *providers) resolve(ctx context.Context, accountID, id string) (store.Provider, error) {
	key := providerKey{accountID, id}
	now := c.now()
	if c.ttl > 0 {
		c.mu.Lock()
		e, ok := c.cache[key]
		c.mu.Unlock()
		if ok && now.Before(e.expires) {
			return checkHealthy(e.p)
		}
	}
	p, err := store.ResolveProvider(ctx, c.db, accountID, id)
	if err != nil {
		return store.Provider{}, err
	}
	if c.ttl > 0 {
		c.mu.Lock()
		if len(c.cache) > 10_000 {
			clear(c.cache)
		}
		c.cache[key] = cachedProvider{p: p, expires: now.Add(c.ttl)}
		c.mu.Unlock()
	}
	return checkHealthy(p)
}

func checkHealthy(p store.Provider) (store.Provider, error) {
	if !p.Healthy {
		return store.Provider{}, &store.UnhealthyProviderError{ID: p.ID}
	}
	return p, nil
}
