// Package attempt keeps each message's attempt record in the EMAIL_ATTEMPTS
// key-value bucket: which attempt of which configuration's job is under way,
// leased until when, or how it ended. The record is what keeps a message from
// being sent twice: a delivery claims it before calling the provider (Begin),
// renews the claim by compare-and-set right before the call (Renew: fencing),
// and records the outcome (Finish) before the job is acked.
package attempt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/namirasoft/email-sender/pkg/queue"
)

// Record states.
const (
	Started = "started" // the provider is (or was) being called
	Retry   = "retry"   // the attempt ended transiently; a retry is scheduled
	Done    = "done"    // the outcome is final and its events are recorded
	Moved   = "moved"   // the message moved to a fallback configuration (MovedTo)
)

// Record is what the bucket holds per message.
type Record struct {
	State   string `json:"state"`
	Attempt int    `json:"attempt"`
	// Events are the encoded DeliveryEvents of a done outcome, re-published when
	// the job comes back after the outcome was recorded.
	Events [][]byte `json:"events,omitempty"`
	// Until, on a started record, is the attempt's lease: its worker may be
	// calling the provider, or recording the outcome, until then. A delivery of
	// the same job that finds the record started before Until (JetStream
	// redelivered the job while its worker was cut off from NATS, or after a
	// NATS crash lost the consumer's state) leaves it alone until then instead
	// of sending a second copy. Zero (records of older workers): no lease.
	Until time.Time `json:"until,omitempty"`
	// Provider is the configuration of the job that wrote the record ("" in
	// records of older workers: the job's own). A message has one job per
	// configuration it was handed to (its primary and, after a failover, its
	// fallback); a job finding another configuration's record is stale.
	Provider string `json:"provider,omitempty"`
	// MovedTo and MovedKind, on a moved record, name the fallback configuration
	// the message was republished to; Attempt is then the number of attempts
	// made before, and Events the FAILOVER event (and those before it).
	MovedTo   string `json:"moved_to,omitempty"`
	MovedKind string `json:"moved_kind,omitempty"`
	// Unreported, on a retry record, is an interrupted attempt whose
	// ATTEMPT_INTERRUPTED event the delivery that found it could not publish
	// (it ended early: the database or NATS failed). The next delivery
	// reports it, so that the timeline never hides a possible duplicate.
	Unreported int `json:"unreported,omitempty"`
}

// Foreign reports whether the record belongs to another configuration's job
// than provider's.
func (r *Record) Foreign(provider string) bool {
	return r.Provider != "" && r.Provider != provider
}

// InFlightError is Begin's answer when the message's attempt is still leased
// to another delivery.
type InFlightError struct {
	Attempt int
	Until   time.Time
}

func (e *InFlightError) Error() string {
	return fmt.Sprintf("attempt %d is in flight elsewhere until %s", e.Attempt, e.Until.Format(time.RFC3339Nano))
}

// Store keeps attempt records in JetStream KV.
type Store struct {
	kv jetstream.KeyValue
}

// Ensure creates (or updates) the bucket, retrying while JetStream
// cannot do it yet (NATS unreachable, a cluster still electing its leaders):
// like the consumers, a worker that starts before NATS is ready waits for it.
func Ensure(ctx context.Context, js jetstream.JetStream, ttl time.Duration, replicas int, log *slog.Logger) (*Store, error) {
	if replicas <= 0 {
		replicas = 1
	}
	cfg := jetstream.KeyValueConfig{
		Bucket:      queue.AttemptsBucket,
		Description: "delivery attempts per message",
		TTL:         ttl,
		History:     1,
		Replicas:    replicas,
	}
	delay := 200 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		kv, err := openOrCreateBucket(cctx, js, cfg)
		cancel()
		if err == nil {
			return &Store{kv: kv}, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("ensure attempts bucket: %w", err)
		}
		log.WarnContext(ctx, "ensure attempts bucket; retrying", "error", err, "retry_in", delay.String())
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("ensure attempts bucket: %w", ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// openOrCreateBucket opens the bucket when it exists with the wanted TTL and
// replicas, and creates or updates it otherwise. Every worker opens it at
// start; an update that changes nothing would still be work for the server
// (and races with consumers being created in nats-server 2.15).
func openOrCreateBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if err == nil {
		st, serr := kv.Status(ctx)
		if serr == nil && st.TTL() == cfg.TTL {
			if info, ok := st.(*jetstream.KeyValueBucketStatus); ok && info.StreamInfo().Config.Replicas == cfg.Replicas {
				return kv, nil
			}
		}
	} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, err
	}
	return js.CreateOrUpdateKeyValue(ctx, cfg)
}

// Begin records attempt of provider's job as started, leased until until. It
// returns the previous record when there was one (nil for a message seen for
// the first time, or handed over to provider by a failover), and an
// *InFlightError, recording nothing, when the previous attempt is started and
// its lease has not ended at now. A previous record that is done, moved, or
// another configuration's is returned as it is, recording nothing.
//
// rev is the revision of the started record written: the attempt's claim,
// which Renew checks before the provider is called.
func (a *Store) Begin(ctx context.Context, messageID, provider string, attempt int, now, until time.Time) (prev *Record, rev uint64, err error) {
	started, err := json.Marshal(Record{State: Started, Attempt: attempt, Until: until, Provider: provider})
	if err != nil {
		return nil, 0, err
	}
	if rev, err := a.kv.Create(ctx, messageID, started); err == nil {
		return nil, rev, nil
	} else if !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, 0, fmt.Errorf("record attempt %d: %w", attempt, err)
	}
	entry, err := a.kv.Get(ctx, messageID)
	if err != nil {
		return nil, 0, fmt.Errorf("read attempt record: %w", err)
	}
	var p Record
	if err := json.Unmarshal(entry.Value(), &p); err != nil {
		return nil, 0, fmt.Errorf("decode attempt record: %w", err)
	}
	handedOver := p.State == Moved && p.MovedTo == provider
	if !handedOver && (p.State == Done || p.State == Moved || p.Foreign(provider)) {
		return &p, 0, nil
	}
	if p.State == Started && now.Before(p.Until) {
		return &p, 0, &InFlightError{Attempt: p.Attempt, Until: p.Until}
	}
	if rev, err = a.kv.Update(ctx, messageID, started, entry.Revision()); err != nil {
		return nil, 0, fmt.Errorf("record attempt %d: %w", attempt, err)
	}
	if handedOver {
		// The fallback's first delivery: nothing of this job happened before.
		return nil, rev, nil
	}
	return &p, rev, nil
}

// ErrLeaseLost: another delivery took the message over (its record changed
// since this attempt's claim).
var ErrLeaseLost = errors.New("attempt lease lost to another delivery")

// Renew extends the claim of revision rev to until, only if the record is
// still that claim; ErrLeaseLost when another delivery has taken the message
// over since. Called right before the provider call, it fences an attempt
// that stalled past its lease (database or NATS outage) from sending beside
// the delivery that took over.
func (a *Store) Renew(ctx context.Context, messageID, provider string, attempt int, until time.Time, rev uint64) (uint64, error) {
	started, err := json.Marshal(Record{State: Started, Attempt: attempt, Until: until, Provider: provider})
	if err != nil {
		return 0, err
	}
	next, err := a.kv.Update(ctx, messageID, started, rev)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, ErrLeaseLost
	}
	if err != nil {
		return 0, fmt.Errorf("renew attempt %d: %w", attempt, err)
	}
	return next, nil
}

// Get reads the message's attempt record.
func (a *Store) Get(ctx context.Context, messageID string) (*Record, error) {
	entry, err := a.kv.Get(ctx, messageID)
	if err != nil {
		return nil, fmt.Errorf("read attempt record: %w", err)
	}
	var rec Record
	if err := json.Unmarshal(entry.Value(), &rec); err != nil {
		return nil, fmt.Errorf("decode attempt record: %w", err)
	}
	return &rec, nil
}

// Finish records the attempt's end.
func (a *Store) Finish(ctx context.Context, messageID string, rec Record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := a.kv.Put(ctx, messageID, b); err != nil {
		return fmt.Errorf("record attempt outcome: %w", err)
	}
	return nil
}
