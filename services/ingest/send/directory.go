package send

import (
	"context"
	"sync"
	"time"

	"github.com/namirasoft/email-sender/pkg/invalidate"
	"github.com/namirasoft/email-sender/services/ingest/store"
)

// directory answers what accepting a message needs to know of its account's
// configuration: which from addresses are verified senders (and through which
// providers), and which provider configuration a message goes through. It
// caches the answers per account on this replica, so that a busy account's
// calls cost no query for them, for up to ttl, and forgets an account's
// entries when a change of them is announced on the account configuration
// feed (queue.AccountConfigFeed): AccountService announces every change of a
// sender or a provider configuration and waits for every replica to forget
// it; the worker posts the configurations it marks unhealthy. While this
// replica's watch of the feed is not established (starting, NATS down) the
// cache is not used and every call reads PostgreSQL.
//
// Only what was found is cached: an unverified from address, an unknown
// provider id are read again on the next call, so what was added a moment ago
// is usable at once.
type directory struct {
	db    store.DBTX
	ttl   time.Duration
	now   func() time.Time
	watch *invalidate.Watcher // nil: no feed, no cache

	mu       sync.Mutex
	gen      uint64 // changes whenever something is forgotten
	accounts map[string]*accountCache
	entries  int
}

// maxEntries bounds the cache; past it, it starts over.
const maxEntries = 100_000

type accountCache struct {
	senders   map[string]cachedGrant    // from address → verified grant
	providers map[string]cachedProvider // requested provider id ("": default) → configuration
}

type cachedGrant struct {
	g       store.SenderGrant
	expires time.Time
}

type cachedProvider struct {
	p       store.Provider
	expires time.Time
}

func newDirectory(db store.DBTX, ttl time.Duration, now func() time.Time, feed *invalidate.Feed) *directory {
	d := &directory{db: db, ttl: ttl, now: now, accounts: map[string]*accountCache{}}
	if feed != nil && ttl > 0 {
		d.watch = feed.Watcher(d.forget)
	}
	return d
}

// run follows the feed until ctx ends.
func (d *directory) run(ctx context.Context) error {
	if d.watch == nil {
		return nil
	}
	return d.watch.Run(ctx)
}

// forget drops what is cached of the account ("": of every account).
func (d *directory) forget(account string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if account == "" {
		clear(d.accounts)
		d.entries = 0
		return
	}
	if a := d.accounts[account]; a != nil {
		d.entries -= len(a.senders) + len(a.providers)
		delete(d.accounts, account)
	}
}

// cached reports whether the cache may be used now.
func (d *directory) cached() bool { return d.watch != nil && d.watch.Current() }

// account returns the account's entries, made if missing; d.mu is held.
func (d *directory) account(id string) *accountCache {
	a := d.accounts[id]
	if a == nil {
		if d.entries >= maxEntries {
			clear(d.accounts)
			d.entries = 0
		}
		a = &accountCache{senders: map[string]cachedGrant{}, providers: map[string]cachedProvider{}}
		d.accounts[id] = a
	}
	return a
}

// senders returns the grant of each of froms (lower-cased canonical
// addresses) in the account; the zero grant for one that is not verified.
func (d *directory) senders(ctx context.Context, accountID string, froms []string) (map[string]store.SenderGrant, error) {
	out := make(map[string]store.SenderGrant, len(froms))
	cache := d.cached()
	now := d.now()
	missing := froms
	var gen uint64
	if cache {
		missing = nil
		d.mu.Lock()
		a := d.accounts[accountID]
		for _, f := range froms {
			if c, ok := a.grant(f); ok && now.Before(c.expires) {
				out[f] = c.g
			} else {
				missing = append(missing, f)
			}
		}
		gen = d.gen
		d.mu.Unlock()
		if len(missing) == 0 {
			return out, nil
		}
	}
	found, err := store.VerifiedSenders(ctx, d.db, accountID, missing)
	if err != nil {
		return nil, err
	}
	for f, g := range found {
		out[f] = g
	}
	if cache {
		d.storeGrants(accountID, gen, now, found)
	}
	return out, nil
}

func (a *accountCache) grant(from string) (cachedGrant, bool) {
	if a == nil {
		return cachedGrant{}, false
	}
	c, ok := a.senders[from]
	return c, ok
}

// storeGrants caches the verified grants of found, unless something was
// forgotten since gen (the lookup may have raced a change).
func (d *directory) storeGrants(accountID string, gen uint64, now time.Time, found map[string]store.SenderGrant) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gen != gen {
		return
	}
	a := d.account(accountID)
	for f, g := range found {
		if g.Verified() {
			if _, ok := a.senders[f]; !ok {
				d.entries++
			}
			a.senders[f] = cachedGrant{g: g, expires: now.Add(d.ttl)}
		}
	}
}

// provider resolves the provider configuration id of the account (its
// default one when id is empty) and refuses an unhealthy one.
func (d *directory) provider(ctx context.Context, accountID, id string) (store.Provider, error) {
	cache := d.cached()
	now := d.now()
	var gen uint64
	if cache {
		d.mu.Lock()
		var (
			c  cachedProvider
			ok bool
		)
		if a := d.accounts[accountID]; a != nil {
			c, ok = a.providers[id]
		}
		gen = d.gen
		d.mu.Unlock()
		if ok && now.Before(c.expires) {
			return checkHealthy(c.p)
		}
	}
	p, err := store.ResolveProvider(ctx, d.db, accountID, id)
	if err != nil {
		return store.Provider{}, err
	}
	if cache {
		d.mu.Lock()
		if d.gen == gen {
			a := d.account(accountID)
			if _, ok := a.providers[id]; !ok {
				d.entries++
			}
			a.providers[id] = cachedProvider{p: p, expires: now.Add(d.ttl)}
		}
		d.mu.Unlock()
	}
	return checkHealthy(p)
}

func checkHealthy(p store.Provider) (store.Provider, error) {
	if !p.Healthy {
		return store.Provider{}, &store.UnhealthyProviderError{ID: p.ID}
	}
	return p, nil
}
