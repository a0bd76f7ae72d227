// Package accountstate owns the one account-state mechanism: whether an
// account is active, suspended (sends refused, queued mail held), terminated
// (data deleted, no re-provisioning) or deleted (DeleteAccountData under way,
// a tombstone until its final sweep).
//
// The source of truth is PostgreSQL (table account_states, no row = active).
// Every change is mirrored into the JetStream key-value bucket
// queue.AccountStatesBucket, and Store.Set returns only once every View
// watching the bucket has applied it (as auth.Revocations does for API keys):
// when an operator action or DeleteAccountData answers, no worker, report or
// ingest replica still acts on the old state. A View whose watch is not
// established reads PostgreSQL on every lookup.
//
// The same mechanism carries provider pauses (Pause): one provider
// configuration of an account paused by the reputation guard, its sends
// refused and its queued mail held until the owner resumes it (table
// provider_pauses, bucket key "<account>.<provider>").
package accountstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/namirasoft/email-sender/pkg/queue"
)

// State is an account's state.
type State string

const (
	Active     State = "active"
	Suspended  State = "suspended"
	Terminated State = "terminated"
	Deleted    State = "deleted"
)

// Valid reports whether s is one of the states.
func (s State) Valid() bool {
	switch s {
	case Active, Suspended, Terminated, Deleted:
		return true
	}
	return false
}

// Tombstone reports whether nothing more may be done for the account: its
// jobs are ended unsent, its events dropped.
func (s State) Tombstone() bool { return s == Terminated || s == Deleted }

// Held reports whether the account's mail is held (not sent, not lost).
func (s State) Held() bool { return s == Suspended }

// Entry is an account's state with why, by whom and when it was set.
type Entry struct {
	Account   string    `json:"account"`
	State     State     `json:"state"`
	Reason    string    `json:"reason,omitempty"`
	Actor     string    `json:"actor,omitempty"`
	ChangedAt time.Time `json:"changed_at"`
	Version   int64     `json:"version"`
}

// DB is what the package needs of PostgreSQL (a *pgxpool.Pool or a pgx.Tx).
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// watcherPrefix names the consumers of watching Views.
const watcherPrefix = "accountstate-"

// Lookup reads an account's state from PostgreSQL (Active when it has no row).
func Lookup(ctx context.Context, db DB, account string) (Entry, error) {
	e := Entry{Account: account}
	err := db.QueryRow(ctx, `SELECT state, reason, actor, changed_at, version FROM account_states WHERE account = $1`, account).
		Scan(&e.State, &e.Reason, &e.Actor, &e.ChangedAt, &e.Version)
	if errors.Is(err, pgx.ErrNoRows) {
		e.State = Active
		return e, nil
	}
	if err != nil {
		return Entry{}, fmt.Errorf("read state of account %s: %w", account, err)
	}
	return e, nil
}

// all reads every state row.
func all(ctx context.Context, db DB) (map[string]Entry, error) {
	out := map[string]Entry{}
	rows, err := db.Query(ctx, `SELECT account::text, state, reason, actor, changed_at, version FROM account_states`)
	if err != nil {
		return nil, fmt.Errorf("read account states: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e Entry
		if err := rows.Scan(&e.Account, &e.State, &e.Reason, &e.Actor, &e.ChangedAt, &e.Version); err != nil {
			return nil, fmt.Errorf("read account states: %w", err)
		}
		out[e.Account] = e
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read account states: %w", err)
	}
	return out, nil
}

// Write stores e in PostgreSQL through db (a transaction of the caller, or a
// pool) and returns it with its version; Active removes the row. Announce it
// with Store.Announce once the transaction is committed.
func Write(ctx context.Context, db DB, e Entry) (Entry, error) {
	if !e.State.Valid() {
		return Entry{}, fmt.Errorf("unknown account state %q", e.State)
	}
	if e.ChangedAt.IsZero() {
		e.ChangedAt = time.Now()
	}
	e.ChangedAt = e.ChangedAt.UTC()
	if err := db.QueryRow(ctx, `SELECT nextval('account_states_version')`).Scan(&e.Version); err != nil {
		return Entry{}, fmt.Errorf("account state version: %w", err)
	}
	var err error
	if e.State == Active {
		_, err = db.Exec(ctx, `DELETE FROM account_states WHERE account = $1`, e.Account)
	} else {
		_, err = db.Exec(ctx, `
			INSERT INTO account_states (account, state, reason, actor, changed_at, version) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (account) DO UPDATE SET state = $2, reason = $3, actor = $4, changed_at = $5, version = $6`,
			e.Account, string(e.State), e.Reason, e.Actor, e.ChangedAt, e.Version)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("write state of account %s: %w", e.Account, err)
	}
	return e, nil
}

// Store writes states (PostgreSQL, then the bucket) and waits for watchers.
type Store struct {
	db       DB
	js       jetstream.JetStream
	replicas int
	// Confirm bounds how long Announce waits for every watching View
	// (default 5s).
	Confirm time.Duration
}

// NewStore returns the writer over db and js; replicas sizes the bucket.
func NewStore(db DB, js jetstream.JetStream, replicas int) *Store {
	if replicas <= 0 {
		replicas = 1
	}
	return &Store{db: db, js: js, replicas: replicas, Confirm: 5 * time.Second}
}

// Set writes the state of an account and announces it: it returns once every
// watching View applied it (or fails after Confirm, saying so; the state is
// stored either way and Views falling back to PostgreSQL see it).
func (s *Store) Set(ctx context.Context, e Entry) (Entry, error) {
	e, err := Write(ctx, s.db, e)
	if err != nil {
		return Entry{}, err
	}
	return e, s.Announce(ctx, e)
}

// Announce mirrors e into the bucket and waits until every watching View
// applied it. Active removes the account's key.
func (s *Store) Announce(ctx context.Context, e Entry) error {
	kv, err := Bucket(ctx, s.js, s.replicas)
	if err != nil {
		return err
	}
	if e.State == Active {
		err = kv.Purge(ctx, e.Account)
	} else {
		var b []byte
		if b, err = json.Marshal(e); err == nil {
			_, err = kv.Put(ctx, e.Account, b)
		}
	}
	if err != nil {
		return fmt.Errorf("announce state of account %s: %w", e.Account, err)
	}
	return s.confirm(ctx)
}

// Forget removes an account's key from the bucket (its final sweep), and
// waits for the watchers.
func (s *Store) Forget(ctx context.Context, account string) error {
	return s.Announce(ctx, Entry{Account: account, State: Active})
}

// confirm waits until every watcher's consumer acknowledged the stream's
// last message.
func (s *Store) confirm(ctx context.Context) error {
	stream, err := s.js.Stream(ctx, "KV_"+queue.AccountStatesBucket)
	if err != nil {
		return fmt.Errorf("open %s stream: %w", queue.AccountStatesBucket, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("read %s stream: %w", queue.AccountStatesBucket, err)
	}
	seq := info.State.LastSeq
	deadline := time.Now().Add(s.Confirm)
	wait := time.Millisecond
	for {
		lagging := 0
		lister := stream.ListConsumers(ctx)
		for ci := range lister.Info() {
			if strings.HasPrefix(ci.Name, watcherPrefix) && ci.AckFloor.Stream < seq {
				lagging++
			}
		}
		if err := lister.Err(); err != nil {
			return fmt.Errorf("list %s watchers: %w", queue.AccountStatesBucket, err)
		}
		if lagging == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d replica(s) did not confirm the account state within %s", lagging, s.Confirm)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 20*time.Millisecond)
	}
}

// Bucket opens (creating it when missing) the account states bucket.
func Bucket(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, queue.AccountStatesBucket)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("open %s: %w", queue.AccountStatesBucket, err)
	}
	kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      queue.AccountStatesBucket,
		Description: "account states (suspended, terminated, deleted); PostgreSQL account_states is the record",
		History:     1,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", queue.AccountStatesBucket, err)
	}
	return kv, nil
}
