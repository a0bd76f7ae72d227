// Package erase deletes an account's data, for DeleteAccountData (the
// tenant) and TerminateAccount (the operator):
//
//  1. the tombstone first (pkg/accountstate: deleted or terminated), which
//     every worker, report and ingest replica has applied when it returns:
//     workers cancel the account's sends in flight and send nothing more for
//     it, the report drops its late events, ingest refuses its calls;
//  2. a short transaction removes the account row and the small tables that
//     reference it, records the audit row, and schedules the final sweep
//     (account_sweeps: durable, it survives a restart);
//  3. the API keys are announced as revoked;
//  4. the big tables are deleted in chunks, each chunk's attempt records
//     purged with it, and the account's jobs and events purged from
//     JetStream;
//  5. after the longest send (SweepAfter), the final sweep (RunSweeps, in
//     every ingest replica, one sweep at a time each) purges again the
//     account's jobs, events, attempt records of the messages that were open,
//     its consumers and any late rows, records what it found in the audit
//     row, and removes a "deleted" tombstone (a terminated one stays).
package erase

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/namirasoft/email-sender/pkg/accountstate"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/services/ingest/store"
)

// Revoker makes API keys stop working on every replica.
type Revoker interface {
	Revoke(ctx context.Context, keyIDs ...string) error
}

// Config tunes erasure.
type Config struct {
	// SweepAfter is when the final sweep runs after a deletion: longer than
	// the longest send (WORKER_SEND_TIMEOUT) and its reporting.
	SweepAfter time.Duration
	// SweepPoll is how often due sweeps are looked for (default 5s).
	SweepPoll time.Duration
}

// Eraser deletes accounts' data.
type Eraser struct {
	cfg     Config
	pool    *pgxpool.Pool
	js      jetstream.JetStream
	states  *accountstate.Store
	revoker Revoker
	log     *slog.Logger
	now     func() time.Time
}

// New returns an Eraser.
func New(cfg Config, pool *pgxpool.Pool, js jetstream.JetStream, states *accountstate.Store, revoker Revoker, log *slog.Logger) *Eraser {
	if cfg.SweepPoll <= 0 {
		cfg.SweepPoll = 5 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Eraser{cfg: cfg, pool: pool, js: js, states: states, revoker: revoker, log: log, now: time.Now}
}

// Result is what Erase removed.
type Result struct {
	AuditID string
	// Existed is false when the account had no row.
	Existed bool
	Rows    map[string]int64
	Purged  map[string]int64
}

// ErrNotFound means the account does not exist (Erase with mustExist).
var ErrNotFound = errors.New("account not found")

// Erase tombstones the account with tomb (accountstate.Deleted or
// Terminated) and deletes its data (see the package documentation). With
// mustExist, an account without a row is ErrNotFound and nothing is done.
func (e *Eraser) Erase(ctx context.Context, accountID string, tomb accountstate.Entry, mustExist bool) (Result, error) {
	if mustExist {
		var ok bool
		if err := e.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1)`, accountID).Scan(&ok); err != nil {
			return Result{}, fmt.Errorf("look up account: %w", err)
		}
		if !ok {
			return Result{}, ErrNotFound
		}
	}
	tomb.Account = accountID
	if _, err := e.states.Set(ctx, tomb); err != nil {
		if _, lerr := accountstate.Lookup(ctx, e.pool, accountID); lerr != nil {
			return Result{}, fmt.Errorf("tombstone: %w", err)
		}
		// Stored, not confirmed by every replica: those read PostgreSQL.
		e.log.WarnContext(ctx, "tombstone not confirmed by every replica", "account_id", accountID, "error", err)
	}
	auditID := uuid.NewString()
	now := e.now()
	d, existed, err := store.BeginErase(ctx, e.pool, accountID, auditID, now, now.Add(e.cfg.SweepAfter))
	if err != nil {
		return Result{}, err
	}
	// The rows are going; finish even if the caller goes away.
	ctx = context.WithoutCancel(ctx)
	if err := e.revoker.Revoke(ctx, d.KeyIDs...); err != nil {
		e.log.WarnContext(ctx, "announce revocation of the deleted account's keys", "account_id", accountID, "error", err)
	}
	purged := map[string]int64{}
	kv, err := e.attempts(ctx)
	if err != nil {
		return Result{}, err
	}
	tables, err := store.AccountTables(ctx, e.pool)
	if err != nil {
		return Result{}, err
	}
	for _, t := range tables {
		n, err := store.EraseTable(ctx, e.pool, t, accountID, func(ids []string) error {
			return purgeAttempts(ctx, kv, ids, purged)
		})
		if n > 0 || d.Rows[t] == 0 {
			d.Rows[t] += n
		}
		if err != nil {
			return Result{}, err
		}
	}
	if err := e.purgeStreams(ctx, accountID, purged); err != nil {
		return Result{}, fmt.Errorf("purge account from jetstream: %w", err)
	}
	if err := store.FinishDeletion(ctx, e.pool, auditID, d.Rows, purged, e.now()); err != nil {
		return Result{}, err
	}
	e.log.InfoContext(ctx, "account data deleted; final sweep scheduled", "account_id", accountID, "audit_id", auditID,
		"state", tomb.State, "rows", d.Rows, "purged", purged, "sweep_at", now.Add(e.cfg.SweepAfter))
	return Result{AuditID: auditID, Existed: existed, Rows: d.Rows, Purged: purged}, nil
}

func (e *Eraser) attempts(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := e.js.KeyValue(ctx, queue.AttemptsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", queue.AttemptsBucket, err)
	}
	return kv, nil
}

// purgeAttempts purges the attempt records of ids, counting them.
func purgeAttempts(ctx context.Context, kv jetstream.KeyValue, ids []string, purged map[string]int64) error {
	if kv == nil {
		return nil
	}
	for _, id := range ids {
		if _, err := kv.Get(ctx, id); errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		} else if err != nil {
			return fmt.Errorf("read attempt record %s: %w", id, err)
		}
		if err := kv.Purge(ctx, id); err != nil {
			return fmt.Errorf("purge attempt record %s: %w", id, err)
		}
		purged["KV_"+queue.AttemptsBucket]++
	}
	return nil
}

// purgeStreams removes the account's jobs and events, counting them.
func (e *Eraser) purgeStreams(ctx context.Context, accountID string, purged map[string]int64) error {
	for _, sp := range []struct{ stream, filter string }{
		{queue.SendStream, queue.SendAccountFilter(accountID)},
		{queue.EventStream, queue.EventAccountFilter(accountID)},
	} {
		st, err := e.js.Stream(ctx, sp.stream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(sp.filter))
		if err != nil {
			return err
		}
		var n uint64
		for _, c := range info.State.Subjects {
			n += c
		}
		if n > 0 {
			if err := st.Purge(ctx, jetstream.WithPurgeSubject(sp.filter)); err != nil {
				return err
			}
		}
		purged[sp.stream] += int64(n)
	}
	return nil
}

// deleteConsumers removes the account's per-account consumers (named with
// its id) of the send stream.
func (e *Eraser) deleteConsumers(ctx context.Context, accountID string, found map[string]int64) error {
	st, err := e.js.Stream(ctx, queue.SendStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	names := st.ConsumerNames(ctx)
	var mine []string
	for n := range names.Name() {
		if strings.HasSuffix(n, "-"+accountID) {
			mine = append(mine, n)
		}
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("list consumers: %w", err)
	}
	for _, n := range mine {
		if err := st.DeleteConsumer(ctx, n); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("delete consumer %s: %w", n, err)
		}
		found["consumers"]++
	}
	return nil
}

// SweepDue runs the final sweeps that are due, one after the other; it
// returns how many ran.
func (e *Eraser) SweepDue(ctx context.Context) (int, error) {
	n := 0
	for {
		found, err := store.WithDueSweep(ctx, e.pool, e.now(), func(sw store.Sweep) (map[string]int64, error) {
			return e.sweep(ctx, sw)
		})
		if err != nil || !found {
			return n, err
		}
		n++
	}
}

// sweep is one final sweep.
func (e *Eraser) sweep(ctx context.Context, sw store.Sweep) (map[string]int64, error) {
	found := map[string]int64{}
	if err := e.purgeStreams(ctx, sw.Account, found); err != nil {
		return nil, err
	}
	kv, err := e.attempts(ctx)
	if err != nil {
		return nil, err
	}
	if err := purgeAttempts(ctx, kv, sw.MessageIDs, found); err != nil {
		return nil, err
	}
	if err := e.deleteConsumers(ctx, sw.Account, found); err != nil {
		return nil, err
	}
	tables, err := store.AccountTables(ctx, e.pool)
	if err != nil {
		return nil, err
	}
	for _, t := range tables {
		n, err := store.EraseTable(ctx, e.pool, t, sw.Account, func(ids []string) error { return purgeAttempts(ctx, kv, ids, found) })
		if err != nil {
			return nil, err
		}
		if n > 0 {
			found[t] += n
		}
	}
	st, err := accountstate.Lookup(ctx, e.pool, sw.Account)
	if err != nil {
		return nil, err
	}
	if st.State == accountstate.Deleted {
		// The tombstone's work is done: no send of the account can be under
		// way any more. The account may come back (a new token) from now on.
		if _, err := e.states.Set(ctx, accountstate.Entry{Account: sw.Account, State: accountstate.Active, Actor: "final-sweep"}); err != nil {
			e.log.WarnContext(ctx, "remove tombstone after the final sweep", "audit_id", sw.AuditID, "error", err)
		}
	}
	e.log.InfoContext(ctx, "final sweep of a deleted account done", "audit_id", sw.AuditID, "found", found)
	return found, nil
}

// RunSweeps runs due final sweeps every SweepPoll until ctx ends.
func (e *Eraser) RunSweeps(ctx context.Context) error {
	t := time.NewTicker(e.cfg.SweepPoll)
	defer t.Stop()
	for {
		if _, err := e.SweepDue(ctx); err != nil && ctx.Err() == nil {
			e.log.WarnContext(ctx, "final sweeps of deleted accounts", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
