package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// AttemptsBucket is the key-value bucket that records delivery attempts.
const AttemptsBucket = "EMAIL_ATTEMPTS"

// Attempt record states.
const (
	stateStarted = "started" // the provider is (or was) being called
	stateRetry   = "retry"   // the attempt ended transiently; a retry is scheduled
	stateDone    = "done"    // the outcome is final and its events are recorded
)

// attemptRecord is what the bucket holds per message.
type attemptRecord struct {
	State   string `json:"state"`
	Attempt int    `json:"attempt"`
	// Events are the encoded DeliveryEvents of a done outcome, re-published when
	// the job comes back after the outcome was recorded.
	Events [][]byte `json:"events,omitempty"`
}

// attempts stores attempt records in JetStream KV.
type attempts struct {
	kv jetstream.KeyValue
}

func ensureAttempts(ctx context.Context, js jetstream.JetStream, ttl time.Duration, replicas int) (*attempts, error) {
	if replicas <= 0 {
		replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      AttemptsBucket,
		Description: "delivery attempts per message",
		TTL:         ttl,
		History:     1,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("ensure attempts bucket: %w", err)
	}
	return &attempts{kv: kv}, nil
}

// begin records attempt as started. It returns the previous record when there was
// one (nil for a message seen for the first time).
func (a *attempts) begin(ctx context.Context, messageID string, attempt int) (*attemptRecord, error) {
	started, err := json.Marshal(attemptRecord{State: stateStarted, Attempt: attempt})
	if err != nil {
		return nil, err
	}
	if _, err := a.kv.Create(ctx, messageID, started); err == nil {
		return nil, nil
	} else if !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, fmt.Errorf("record attempt %d: %w", attempt, err)
	}
	entry, err := a.kv.Get(ctx, messageID)
	if err != nil {
		return nil, fmt.Errorf("read attempt record: %w", err)
	}
	var prev attemptRecord
	if err := json.Unmarshal(entry.Value(), &prev); err != nil {
		return nil, fmt.Errorf("decode attempt record: %w", err)
	}
	if prev.State == stateDone {
		return &prev, nil
	}
	if _, err := a.kv.Update(ctx, messageID, started, entry.Revision()); err != nil {
		return nil, fmt.Errorf("record attempt %d: %w", attempt, err)
	}
	return &prev, nil
}

// finish records the attempt's end.
func (a *attempts) finish(ctx context.Context, messageID string, rec attemptRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := a.kv.Put(ctx, messageID, b); err != nil {
		return fmt.Errorf("record attempt outcome: %w", err)
	}
	return nil
}
