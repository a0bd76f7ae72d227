package auth

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/namirasoft/email-sender/pkg/invalidate"
)

// RevocationBucket is the JetStream key-value bucket API key revocations are
// announced on (pkg/invalidate): key = API key id, value = revocation time.
//
// Every KeyStore that runs Watch empties its cache on each announcement
// before acknowledging it, and Revocations.Publish returns only once every
// watching KeyStore has, so when RevokeApiKey answers no replica still holds
// the key in its cache: the next call fails on any replica. A KeyStore whose
// watch is not established, or whose NATS connection is down, does not use
// its cache (every call reads PostgreSQL); a reconnect empties it; a lookup
// that raced a revocation is not cached (generation check). A replica that
// does not acknowledge within the confirmation timeout (it died, or is cut
// off) makes Publish fail after the timeout, and the revoking call says so.
//
// A KeyStore that does not run Watch keeps the plain TTL behaviour.
const RevocationBucket = "EMAIL_KEY_REVOCATIONS"

// Revocations announces revoked keys to every KeyStore watching the bucket.
type Revocations struct {
	feed *invalidate.Feed
}

// NewRevocations returns the announcer on js; replicas sizes the bucket (1 on a
// single server, 3 in a cluster).
func NewRevocations(js jetstream.JetStream, replicas int) *Revocations {
	return &Revocations{feed: invalidate.New(js, invalidate.Config{
		Bucket:      RevocationBucket,
		Prefix:      "keystore-",
		Description: "API key revocations; every replica empties its key cache on each",
		Replicas:    replicas,
		Confirm:     3 * time.Second,
	})}
}

// Publish announces that keyIDs are revoked (or deleted) and returns once
// every watching KeyStore has emptied its cache of them.
func (r *Revocations) Publish(ctx context.Context, keyIDs ...string) error {
	return r.feed.Announce(ctx, keyIDs...)
}

type feedRef struct {
	p atomic.Pointer[invalidate.Watcher]
}

// Forget empties the cache: the next call of every key reads PostgreSQL.
// Revoking replicas call it for their own cache at once.
func (s *KeyStore) Forget() {
	s.mu.Lock()
	clear(s.valid)
	clear(s.refused)
	s.gen++
	s.mu.Unlock()
}

// generation changes whenever the cache is emptied.
func (s *KeyStore) generation() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

// cacheable reports whether the cache may be used now.
func (s *KeyStore) cacheable() bool {
	if s.ttl <= 0 {
		return false
	}
	w := s.feed.p.Load()
	return w == nil || w.Current()
}

// Watch follows the revocation bucket until ctx ends, emptying the cache on
// every announcement. From the moment it is called until the watch is
// established (and whenever it is lost) the cache is not used. It retries
// while NATS is unavailable and returns nil when ctx ends.
func (s *KeyStore) Watch(ctx context.Context, r *Revocations) error {
	w := r.feed.Watcher(func(string) { s.Forget() })
	s.feed.p.Store(w)
	return w.Run(ctx)
}
