package gmailpoll

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// LeaseBucket is the JetStream KV bucket of the pollers' leases: one key per
// gmail configuration, held by the replica that polls its mailbox.
const LeaseBucket = "EMAIL_GMAIL_POLL"

// errLeaseHeld: another replica polls the configuration.
var errLeaseHeld = errors.New("the configuration's poll lease is held by another replica")

// errLeaseLost: the lease was taken over since it was granted.
var errLeaseLost = errors.New("the configuration's poll lease was lost")

// leaseRecord is a lease's value.
type leaseRecord struct {
	Owner string    `json:"owner"`
	Until time.Time `json:"until"`
}

// leases grants one replica at a time the right to poll a configuration:
// compare-and-set on the key's revision, like the attempt records
// (services/worker/attempt), with an expiry so that a replica that died
// leaves it to another after Lease.
type leases struct {
	kv    jetstream.KeyValue
	owner string
}

func ensureLeases(ctx context.Context, js jetstream.JetStream, replicas int, owner string) (*leases, error) {
	if replicas <= 0 {
		replicas = 1
	}
	kv, err := js.KeyValue(ctx, LeaseBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: LeaseBucket, Description: "Gmail bounce poller leases per gmail configuration", History: 1, Replicas: replicas,
		})
	}
	if err != nil {
		return nil, fmt.Errorf("gmail poll lease bucket: %w", err)
	}
	return &leases{kv: kv, owner: owner}, nil
}

// acquire takes the lease of key until until, or renews the one this owner
// holds at revision rev (0: none held). It returns the new revision;
// errLeaseHeld when another owner's lease has not expired at now,
// errLeaseLost when rev is no longer the key's revision.
func (l *leases) acquire(ctx context.Context, key string, rev uint64, now, until time.Time) (uint64, error) {
	val, err := json.Marshal(leaseRecord{Owner: l.owner, Until: until})
	if err != nil {
		return 0, err
	}
	if rev != 0 {
		next, err := l.kv.Update(ctx, key, val, rev)
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyNotFound) {
			return 0, errLeaseLost
		}
		if err != nil {
			return 0, fmt.Errorf("renew poll lease: %w", err)
		}
		return next, nil
	}
	next, err := l.kv.Create(ctx, key, val)
	if err == nil {
		return next, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return 0, fmt.Errorf("take poll lease: %w", err)
	}
	entry, err := l.kv.Get(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("read poll lease: %w", err)
	}
	var cur leaseRecord
	if err := json.Unmarshal(entry.Value(), &cur); err == nil && cur.Owner != l.owner && now.Before(cur.Until) {
		return 0, errLeaseHeld
	}
	next, err = l.kv.Update(ctx, key, val, entry.Revision())
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, errLeaseHeld // another replica took it meanwhile
	}
	if err != nil {
		return 0, fmt.Errorf("take poll lease: %w", err)
	}
	return next, nil
}

// release gives the lease of revision rev up, so another replica may poll
// at once; a lease already taken over is left alone.
func (l *leases) release(ctx context.Context, key string, rev uint64) {
	_ = l.kv.Delete(ctx, key, jetstream.LastRevision(rev))
}
