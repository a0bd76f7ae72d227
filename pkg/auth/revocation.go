package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// RevocationBucket is the JetStream key-value bucket API key revocations are
// announced on: key = API key id, value = revocation time.
//
// Every KeyStore that runs Watch reads the bucket's stream through a consumer
// of its own (named "keystore-…", explicit acks) and empties its cache on each
// announcement before acknowledging it. Revocations.Publish returns only once
// every such consumer has acknowledged the announcement, so when RevokeApiKey
// answers, no replica still holds the key in its cache: the next call fails on
// any replica. Further:
//   - a KeyStore uses its cache only while its consumer is established and its
//     NATS connection is up; otherwise every call reads PostgreSQL, the source
//     of truth;
//   - a reconnect empties the cache (announcements made meanwhile may be
//     missed, but the database reflects them);
//   - a lookup that raced a revocation is not cached (generation check);
//   - a replica that does not acknowledge within the confirmation timeout (it
//     died, or is cut off) makes Publish fail after the timeout, and the
//     revoking call says so; its consumer disappears 5 s after it stopped
//     asking for messages.
//
// A KeyStore that does not run Watch keeps the plain TTL behaviour.
const RevocationBucket = "EMAIL_KEY_REVOCATIONS"

// watcherPrefix names the consumers of watching KeyStores.
const watcherPrefix = "keystore-"

// Revocations announces revoked keys to every KeyStore watching the bucket.
type Revocations struct {
	js       jetstream.JetStream
	replicas int
	// Confirm bounds how long Publish waits for every watching KeyStore
	// (default 3s).
	Confirm time.Duration
}

// NewRevocations returns the announcer on js; replicas sizes the bucket (1 on a
// single server, 3 in a cluster).
func NewRevocations(js jetstream.JetStream, replicas int) *Revocations {
	if replicas <= 0 {
		replicas = 1
	}
	return &Revocations{js: js, replicas: replicas, Confirm: 3 * time.Second}
}

func (r *Revocations) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := r.js.KeyValue(ctx, RevocationBucket)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("open %s: %w", RevocationBucket, err)
	}
	kv, err = r.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      RevocationBucket,
		Description: "API key revocations; every replica empties its key cache on each",
		History:     1,
		// Only replicas catching up need old entries; the database is the record.
		TTL:      24 * time.Hour,
		Replicas: r.replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", RevocationBucket, err)
	}
	return kv, nil
}

// Publish announces that keyIDs are revoked (or deleted) and returns once
// every watching KeyStore has emptied its cache of them.
func (r *Revocations) Publish(ctx context.Context, keyIDs ...string) error {
	if len(keyIDs) == 0 {
		return nil
	}
	kv, err := r.bucket(ctx)
	if err != nil {
		return err
	}
	now := []byte(time.Now().UTC().Format(time.RFC3339Nano))
	var last uint64
	for _, id := range keyIDs {
		if last, err = kv.Put(ctx, id, now); err != nil {
			return fmt.Errorf("announce revocation of key %s: %w", id, err)
		}
	}
	return r.confirm(ctx, last)
}

// confirm waits until every watcher's consumer acknowledged stream sequence seq.
func (r *Revocations) confirm(ctx context.Context, seq uint64) error {
	stream, err := r.js.Stream(ctx, "KV_"+RevocationBucket)
	if err != nil {
		return fmt.Errorf("open %s stream: %w", RevocationBucket, err)
	}
	deadline := time.Now().Add(r.Confirm)
	wait := time.Millisecond
	for {
		lagging := 0
		lister := stream.ListConsumers(ctx)
		for info := range lister.Info() {
			if strings.HasPrefix(info.Name, watcherPrefix) && info.AckFloor.Stream < seq {
				lagging++
			}
		}
		if err := lister.Err(); err != nil {
			return fmt.Errorf("list %s watchers: %w", RevocationBucket, err)
		}
		if lagging == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d replica(s) did not confirm the revocation within %s", lagging, r.Confirm)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 20*time.Millisecond)
	}
}

// revocationFeed is the state of a KeyStore's watch.
type revocationFeed struct {
	nc         *nats.Conn
	ready      atomic.Bool
	reconnects atomic.Uint64
}

type feedRef struct {
	p atomic.Pointer[revocationFeed]
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
	f := s.feed.p.Load()
	if f == nil {
		return true
	}
	if !f.ready.Load() || !f.nc.IsConnected() {
		return false
	}
	if n := f.nc.Stats().Reconnects; n != f.reconnects.Load() {
		f.reconnects.Store(n)
		s.Forget()
	}
	return true
}

// Watch follows the revocation bucket until ctx ends, emptying the cache on
// every announcement. From the moment it is called until the watch is
// established (and whenever it is lost) the cache is not used. It retries
// while NATS is unavailable and returns nil when ctx ends.
func (s *KeyStore) Watch(ctx context.Context, r *Revocations) error {
	f := &revocationFeed{nc: r.js.Conn()}
	s.feed.p.Store(f)
	s.Forget()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.watchOnce(ctx, r, f)
		f.ready.Store(false)
		s.Forget()
		if ctx.Err() != nil {
			break
		}
		_ = err // the cache stays off until the next attempt succeeds
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	return nil
}

func (s *KeyStore) watchOnce(ctx context.Context, r *Revocations, f *revocationFeed) error {
	if _, err := r.bucket(ctx); err != nil {
		return err
	}
	stream, err := r.js.Stream(ctx, "KV_"+RevocationBucket)
	if err != nil {
		return fmt.Errorf("open %s stream: %w", RevocationBucket, err)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Name:              watcherPrefix + uuid.NewString(),
		Description:       "an API key cache following revocations",
		DeliverPolicy:     jetstream.DeliverNewPolicy,
		AckPolicy:         jetstream.AckExplicitPolicy,
		InactiveThreshold: 5 * time.Second,
		MemoryStorage:     true,
		Replicas:          1,
	})
	if err != nil {
		return fmt.Errorf("watch %s: %w", RevocationBucket, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_ = stream.DeleteConsumer(dctx, cons.CachedInfo().Name)
		cancel()
	}()
	it, err := cons.Messages(jetstream.PullHeartbeat(time.Second))
	if err != nil {
		return fmt.Errorf("watch %s: %w", RevocationBucket, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	f.reconnects.Store(f.nc.Stats().Reconnects)
	s.Forget()
	f.ready.Store(true)
	for {
		msg, err := it.Next()
		if err != nil {
			return fmt.Errorf("watch %s: %w", RevocationBucket, err)
		}
		s.Forget()
		// Acknowledged after the cache is emptied: Publish waits for it.
		_ = msg.Ack()
	}
}
