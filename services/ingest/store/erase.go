package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// EraseChunk is how many rows one statement of a chunked deletion removes.
const EraseChunk = 2000

// BeginErase is the first, short transaction of an account's deletion: under
// the account's exclusive lock (no Accept of it runs, none can start after:
// the account row is gone) it collects the account's API keys and its
// messages not yet final (their attempt records may still be written by a
// send in flight), deletes the rows of the tables that reference the
// account (small: keys, providers, senders, ...) and the account itself,
// records the audit row, and schedules the final sweep (account_sweeps) at
// sweepDue. The big tables are deleted afterwards in chunks (EraseTable).
// existed is false when the account had no row (nothing but the sweep is
// scheduled then).
func BeginErase(ctx context.Context, db Beginner, accountID, auditID string, now, sweepDue time.Time) (d Deletion, existed bool, err error) {
	d = Deletion{AuditID: auditID, Rows: map[string]int64{}}
	var pending []string
	err = withTx(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7261))`, accountID); err != nil {
			return fmt.Errorf("lock account: %w", err)
		}
		err := tx.QueryRow(ctx, `SELECT true FROM accounts WHERE id = $1 FOR UPDATE`, accountID).Scan(&existed)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("lock account: %w", err)
		}
		if d.KeyIDs, err = collectIDs(ctx, tx, `SELECT id::text FROM api_keys WHERE account_id = $1`, accountID); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT id::text FROM messages WHERE account_id = $1 AND status = ANY($2)`, accountID, openStatuses())
		if err != nil {
			return fmt.Errorf("collect open messages: %w", err)
		}
		if pending, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return fmt.Errorf("collect open messages: %w", err)
		}
		referencing, err := collectIDs(ctx, tx, `
			SELECT DISTINCT child.relname::text FROM pg_constraint k
			JOIN pg_class child ON child.oid = k.conrelid
			JOIN pg_attribute a ON a.attrelid = child.oid AND a.attname = 'account_id'
			WHERE k.contype = 'f' AND k.confrelid = 'accounts'::regclass AND $1::text IS NOT NULL`, accountID)
		if err != nil {
			return err
		}
		for _, t := range referencing {
			tag, err := tx.Exec(ctx, `DELETE FROM `+pgx.Identifier{t}.Sanitize()+` WHERE account_id = $1`, accountID)
			if err != nil {
				return fmt.Errorf("delete from %s: %w", t, err)
			}
			d.Rows[t] += tag.RowsAffected()
		}
		tag, err := tx.Exec(ctx, `DELETE FROM accounts WHERE id = $1`, accountID)
		if err != nil {
			return fmt.Errorf("delete account: %w", err)
		}
		d.Rows["accounts"] = tag.RowsAffected()
		b, _ := json.Marshal(d.Rows)
		if _, err := tx.Exec(ctx, `
			INSERT INTO account_deletions (id, account_hash, started_at, rows_deleted) VALUES ($1, $2, $3, $4)`,
			auditID, AccountHash(accountID), now, string(b)); err != nil {
			return fmt.Errorf("record account deletion: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO account_sweeps (account, audit_id, due_at, message_ids) VALUES ($1, $2, $3, $4)
			ON CONFLICT (account) DO UPDATE SET audit_id = $2, due_at = $3,
				message_ids = ARRAY(SELECT DISTINCT unnest(account_sweeps.message_ids || $4::text[]))`,
			accountID, auditID, sweepDue, pending); err != nil {
			return fmt.Errorf("schedule final sweep: %w", err)
		}
		return nil
	})
	if err != nil {
		return Deletion{}, false, err
	}
	d.MessageIDs = pending
	return d, existed, nil
}

// openStatuses are the message statuses after which a send may still come.
func openStatuses() []int16 {
	var out []int16
	for n := range v1.MessageStatus_Value_name {
		if s := msgstatus.Status(n); n != 0 && !msgstatus.Terminal(s) {
			out = append(out, int16(n))
		}
	}
	return out
}

// EraseTable deletes the account's rows of table in chunks of EraseChunk
// rows, each its own statement (no giant transaction), calling chunk with
// the ids of the messages removed when table is "messages". It returns the
// rows removed.
func EraseTable(ctx context.Context, db DBTX, table, accountID string, chunk func(messageIDs []string) error) (int64, error) {
	t := pgx.Identifier{table}.Sanitize()
	var total int64
	for {
		// (tableoid, ctid) names a row of a partitioned table too.
		q := `DELETE FROM ` + t + ` WHERE (tableoid, ctid) IN (SELECT tableoid, ctid FROM ` + t + ` WHERE account_id = $1 LIMIT $2)`
		var n int64
		if table == "messages" {
			rows, err := db.Query(ctx, q+` RETURNING id::text`, accountID, EraseChunk)
			if err != nil {
				return total, fmt.Errorf("delete from %s: %w", table, err)
			}
			ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return total, fmt.Errorf("delete from %s: %w", table, err)
			}
			n = int64(len(ids))
			if chunk != nil && n > 0 {
				if err := chunk(ids); err != nil {
					return total, err
				}
			}
		} else {
			tag, err := db.Exec(ctx, q, accountID, EraseChunk)
			if err != nil {
				return total, fmt.Errorf("delete from %s: %w", table, err)
			}
			n = tag.RowsAffected()
		}
		total += n
		if n < EraseChunk {
			return total, nil
		}
	}
}

// Sweep is a due final sweep of a deleted or terminated account.
type Sweep struct {
	Account    string
	AuditID    string
	MessageIDs []string
}

// WithDueSweep runs fn for one final sweep due at now, in a transaction that
// keeps other replicas off it (SKIP LOCKED); when fn succeeds the sweep's row
// is removed and the audit row gets what it found, else its error is noted
// and the sweep is retried later. false when none is due.
func WithDueSweep(ctx context.Context, db Beginner, now time.Time, fn func(Sweep) (map[string]int64, error)) (bool, error) {
	found := false
	err := withTx(ctx, db, func(tx pgx.Tx) error {
		var sw Sweep
		err := tx.QueryRow(ctx, `
			SELECT account::text, audit_id::text, message_ids FROM account_sweeps
			WHERE due_at <= $1 ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED`, now).Scan(&sw.Account, &sw.AuditID, &sw.MessageIDs)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("claim final sweep: %w", err)
		}
		found = true
		got, ferr := fn(sw)
		if ferr != nil {
			_, err := tx.Exec(ctx, `UPDATE account_sweeps SET attempts = attempts + 1, last_error = $2, due_at = $3 WHERE account = $1`,
				sw.Account, ferr.Error(), now.Add(30*time.Second))
			if err != nil {
				return fmt.Errorf("note failed final sweep: %w", err)
			}
			return nil
		}
		b, _ := json.Marshal(got)
		if _, err := tx.Exec(ctx, `UPDATE account_deletions SET final_sweep = $2, swept_at = $3 WHERE id = $1`, sw.AuditID, string(b), now); err != nil {
			return fmt.Errorf("record final sweep: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM account_sweeps WHERE account = $1`, sw.Account); err != nil {
			return fmt.Errorf("remove final sweep: %w", err)
		}
		return nil
	})
	return found, err
}

// PendingSweep reports whether the account has a final sweep still to run.
func PendingSweep(ctx context.Context, db DBTX, accountID string) (bool, error) {
	var ok bool
	err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM account_sweeps WHERE account = $1)`, accountID).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("look up final sweep: %w", err)
	}
	return ok, nil
}
