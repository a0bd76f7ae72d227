// Package invalidate tells every replica's cache to forget what changed in
// PostgreSQL, and confirms that they did: API key revocations (pkg/auth) and
// account configuration changes (verified senders, provider configurations:
// ingest's send path) travel this way.
//
// A Feed is a JetStream key-value bucket whose puts are announcements: the
// key names what changed (a key id, an account id), the value is the time.
// Every cache that runs a Watcher reads the bucket's stream through a
// consumer of its own (named Prefix + a UUID, explicit acks, in memory) and
// forgets the announced key before acknowledging it. Announce returns only
// once every such consumer has acknowledged the announcement, so when it
// returns no replica still serves the old value from its cache. Further:
//   - a Watcher is Current only while its consumer is established and its
//     NATS connection is up; a cache that is not current must not be used
//     (the caller reads PostgreSQL, the source of truth);
//   - a reconnect makes the cache forget everything and stops using it until
//     the watch is established anew, with a new consumer (announcements made
//     meanwhile may be missed, but the database reflects them; and the
//     consumer may be gone: a restarted server loses consumers kept in
//     memory, and Announce would not wait for a replica without one);
//   - a replica that does not acknowledge within Confirm (it died, or is cut
//     off) makes Announce fail after that time; its consumer disappears 5 s
//     after it stopped asking for messages.
//
// Caches must also not store a lookup that raced an announcement: they count
// their forgets (a generation) and store a value read from the database only
// when no forget happened since the read began.
package invalidate

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

// Config names a feed.
type Config struct {
	// Bucket is the key-value bucket.
	Bucket string
	// Prefix names the consumers of its Watchers.
	Prefix string
	// Description is the bucket's, and its watchers' consumers'.
	Description string
	// Replicas sizes the bucket (1 on a single server, 3 in a cluster).
	Replicas int
	// TTL is how long an announcement is kept (only watchers catching up need
	// old ones; the database is the record). Default 24h.
	TTL time.Duration
	// Confirm bounds how long Announce waits for every watcher (default 3s).
	Confirm time.Duration
}

// Feed announces changes to every Watcher of its bucket.
type Feed struct {
	js  jetstream.JetStream
	cfg Config
}

// New returns the feed of cfg.Bucket on js.
func New(js jetstream.JetStream, cfg Config) *Feed {
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 24 * time.Hour
	}
	if cfg.Confirm <= 0 {
		cfg.Confirm = 3 * time.Second
	}
	return &Feed{js: js, cfg: cfg}
}

// Bucket is the feed's bucket name.
func (f *Feed) Bucket() string { return f.cfg.Bucket }

func (f *Feed) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := f.js.KeyValue(ctx, f.cfg.Bucket)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("open %s: %w", f.cfg.Bucket, err)
	}
	kv, err = f.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      f.cfg.Bucket,
		Description: f.cfg.Description,
		History:     1,
		TTL:         f.cfg.TTL,
		Replicas:    f.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", f.cfg.Bucket, err)
	}
	return kv, nil
}

// Announce announces that keys changed and returns once every Watcher has
// forgotten them.
func (f *Feed) Announce(ctx context.Context, keys ...string) error {
	seq, err := f.put(ctx, keys)
	if err != nil || seq == 0 {
		return err
	}
	return f.confirm(ctx, seq)
}

// Post announces that keys changed without waiting for the watchers: for
// writers that cannot wait (a worker marking a configuration unhealthy),
// whose readers bound their caches' age otherwise too.
func (f *Feed) Post(ctx context.Context, keys ...string) error {
	_, err := f.put(ctx, keys)
	return err
}

// put puts keys and returns the stream sequence of the last one (0 when
// there is none).
func (f *Feed) put(ctx context.Context, keys []string) (uint64, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	kv, err := f.bucket(ctx)
	if err != nil {
		return 0, err
	}
	now := []byte(time.Now().UTC().Format(time.RFC3339Nano))
	var last uint64
	for _, k := range keys {
		if last, err = kv.Put(ctx, k, now); err != nil {
			return 0, fmt.Errorf("announce %s on %s: %w", k, f.cfg.Bucket, err)
		}
	}
	return last, nil
}

// confirm waits until every watcher's consumer acknowledged stream sequence seq.
func (f *Feed) confirm(ctx context.Context, seq uint64) error {
	stream, err := f.js.Stream(ctx, "KV_"+f.cfg.Bucket)
	if err != nil {
		return fmt.Errorf("open %s stream: %w", f.cfg.Bucket, err)
	}
	deadline := time.Now().Add(f.cfg.Confirm)
	wait := time.Millisecond
	for {
		lagging := 0
		lister := stream.ListConsumers(ctx)
		for info := range lister.Info() {
			if strings.HasPrefix(info.Name, f.cfg.Prefix) && info.AckFloor.Stream < seq {
				lagging++
			}
		}
		if err := lister.Err(); err != nil {
			return fmt.Errorf("list %s watchers: %w", f.cfg.Bucket, err)
		}
		if lagging == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d replica(s) did not confirm within %s", lagging, f.cfg.Confirm)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 20*time.Millisecond)
	}
}

// Watcher keeps one cache in step with a feed: forget is called with each
// announced key, and with "" (everything) when the watch is (re)established,
// lost, or the NATS connection reconnected.
type Watcher struct {
	feed   *Feed
	forget func(key string)
	nc     *nats.Conn
	// restart asks the watch to start over with a new consumer.
	restart chan struct{}

	ready      atomic.Bool
	reconnects atomic.Uint64
}

// Watcher returns a watcher of f calling forget; Run runs it.
func (f *Feed) Watcher(forget func(key string)) *Watcher {
	return &Watcher{feed: f, forget: forget, nc: f.js.Conn(), restart: make(chan struct{}, 1)}
}

// Current reports whether the cache may be used now: the watch is
// established and the connection up, and has not reconnected since the
// watch began (a reconnect makes the cache forget everything and the watch
// start over).
func (w *Watcher) Current() bool {
	if w == nil || !w.ready.Load() || w.nc == nil || !w.nc.IsConnected() {
		return false
	}
	if w.nc.Stats().Reconnects != w.reconnects.Load() {
		w.ready.Store(false)
		w.forget("")
		select {
		case w.restart <- struct{}{}:
		default:
		}
		return false
	}
	return true
}

// Run follows the feed until ctx ends (then it returns nil), retrying while
// NATS is unavailable. Until the watch is established, and whenever it is
// lost, the watcher is not Current.
func (w *Watcher) Run(ctx context.Context) error {
	w.forget("")
	const first = 100 * time.Millisecond
	backoff := first
	for ctx.Err() == nil {
		established, err := w.runOnce(ctx)
		w.ready.Store(false)
		w.forget("")
		if ctx.Err() != nil {
			break
		}
		_ = err // not current until the next attempt succeeds
		if established {
			backoff = first
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	return nil
}

// runOnce watches with a consumer of its own until the watch is lost, ctx
// ends or a restart is asked for; established says whether it got as far as
// watching.
func (w *Watcher) runOnce(ctx context.Context) (established bool, err error) {
	f := w.feed
	// Read before the consumer is made: a reconnect from now on is noticed
	// by Current (the consumer may have been made on the server that left).
	reconnects := w.nc.Stats().Reconnects
	if _, err := f.bucket(ctx); err != nil {
		return false, err
	}
	stream, err := f.js.Stream(ctx, "KV_"+f.cfg.Bucket)
	if err != nil {
		return false, fmt.Errorf("open %s stream: %w", f.cfg.Bucket, err)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Name:              f.cfg.Prefix + uuid.NewString(),
		Description:       f.cfg.Description,
		DeliverPolicy:     jetstream.DeliverNewPolicy,
		AckPolicy:         jetstream.AckExplicitPolicy,
		InactiveThreshold: 5 * time.Second,
		MemoryStorage:     true,
		Replicas:          1,
	})
	if err != nil {
		return false, fmt.Errorf("watch %s: %w", f.cfg.Bucket, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_ = stream.DeleteConsumer(dctx, cons.CachedInfo().Name)
		cancel()
	}()
	it, err := cons.Messages(jetstream.PullHeartbeat(time.Second))
	if err != nil {
		return false, fmt.Errorf("watch %s: %w", f.cfg.Bucket, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	select { // a restart asked for before this watch began is done
	case <-w.restart:
	default:
	}
	ended := make(chan struct{})
	defer close(ended)
	go func() {
		select {
		case <-w.restart:
			it.Stop()
		case <-ended:
		}
	}()
	w.reconnects.Store(reconnects)
	w.forget("")
	w.ready.Store(true)
	prefix := "$KV." + f.cfg.Bucket + "."
	for {
		msg, err := it.Next()
		if err != nil {
			return true, fmt.Errorf("watch %s: %w", f.cfg.Bucket, err)
		}
		key := strings.TrimPrefix(msg.Subject(), prefix)
		if key == "" {
			key = "?" // never "": that is everything
		}
		w.forget(key)
		// Acknowledged after the cache forgot: Announce waits for it.
		_ = msg.Ack()
	}
}
