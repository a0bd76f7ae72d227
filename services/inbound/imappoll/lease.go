package imappoll

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// LeaseBucket is the key-value bucket of the poller's mailbox leases: one
// key per provider configuration, which expires after the lease.
const LeaseBucket = "EMAIL_IMAP_POLL_LEASES"

type leases struct{ kv jetstream.KeyValue }

func ensureLeases(ctx context.Context, js jetstream.JetStream, ttl time.Duration) (*leases, error) {
	cfg := jetstream.KeyValueConfig{Bucket: LeaseBucket, Description: "IMAP bounce mailbox leases (inbound)", TTL: ttl, History: 1}
	kv, err := js.KeyValue(ctx, LeaseBucket)
	if err == nil {
		if st, serr := kv.Status(ctx); serr == nil && st.TTL() == ttl {
			return &leases{kv: kv}, nil
		}
	} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("lease bucket: %w", err)
	}
	if kv, err = js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
		return nil, fmt.Errorf("lease bucket: %w", err)
	}
	return &leases{kv: kv}, nil
}

// acquire takes the lease of key for holder: ok false when another holds
// it. release gives it back (it expires by itself otherwise).
func (l *leases) acquire(ctx context.Context, key, holder string) (release func(), ok bool, err error) {
	rev, err := l.kv.Create(ctx, key, []byte(holder))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("take lease: %w", err)
	}
	return func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = l.kv.Delete(dctx, key, jetstream.LastRevision(rev))
	}, true, nil
}
