package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrAccountGone means the account was deleted (DeleteAccountData) while the
// call was under way.
var ErrAccountGone = errors.New("the account no longer exists")

// AccountHash is how the deletion audit names an account.
func AccountHash(accountID string) string {
	h := sha256.Sum256([]byte(accountID))
	return hex.EncodeToString(h[:])
}

// AccountTables lists the tables of the current schema that have an account_id
// column, discovered from the catalog so that tables added by later migrations
// are covered without code changes. A table that references another in the
// list (foreign key) comes before it, so deleting in this order never violates
// a constraint. Partitions are left out (their parent covers them).
func AccountTables(ctx context.Context, db DBTX) ([]string, error) {
	rows, err := db.Query(ctx, `
		SELECT c.relname FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid
		WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
		  AND a.attname = 'account_id' AND NOT a.attisdropped
		ORDER BY c.relname`)
	if err != nil {
		return nil, fmt.Errorf("discover account tables: %w", err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("discover account tables: %w", err)
	}
	rows, err = db.Query(ctx, `
		SELECT child.relname, parent.relname FROM pg_constraint k
		JOIN pg_class child ON child.oid = k.conrelid
		JOIN pg_class parent ON parent.oid = k.confrelid
		JOIN pg_namespace n ON n.oid = child.relnamespace
		WHERE k.contype = 'f' AND n.nspname = current_schema() AND child.oid <> parent.oid`)
	if err != nil {
		return nil, fmt.Errorf("discover foreign keys: %w", err)
	}
	type edge struct{ child, parent string }
	edges, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (edge, error) {
		var e edge
		return e, r.Scan(&e.child, &e.parent)
	})
	if err != nil {
		return nil, fmt.Errorf("discover foreign keys: %w", err)
	}
	return referencingFirst(tables, edges2map(edges, func(e edge) (string, string) { return e.child, e.parent })), nil
}

func edges2map[E any](es []E, f func(E) (string, string)) map[string][]string {
	m := map[string][]string{}
	for _, e := range es {
		c, p := f(e)
		m[p] = append(m[p], c)
	}
	return m
}

// referencingFirst orders tables so that a table referencing another (a child
// of a foreign key) comes before it.
func referencingFirst(tables []string, children map[string][]string) []string {
	in := map[string]bool{}
	for _, t := range tables {
		in[t] = true
	}
	var out []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(t string)
	visit = func(t string) {
		if state[t] != 0 {
			return // done, or a cycle (left in the order found)
		}
		state[t] = 1
		kids := append([]string(nil), children[t]...)
		sort.Strings(kids)
		for _, c := range kids {
			if in[c] {
				visit(c)
			}
		}
		state[t] = 2
		out = append(out, t)
	}
	for _, t := range tables {
		visit(t)
	}
	return out
}

// Deletion is what DeleteAccount removed.
type Deletion struct {
	AuditID string
	// Rows removed per table (every table with an account_id column, and
	// "accounts").
	Rows map[string]int64
	// KeyIDs are the account's API keys (to announce as revoked).
	KeyIDs []string
	// MessageIDs are the account's messages (their attempt records are in
	// JetStream KV, keyed by message id).
	MessageIDs []string
}

// DeleteAccount removes every row of accountID, in one transaction: it locks
// the account first (Accept holds its shared advisory lock, so no message of
// the account is being stored meanwhile and none can be after), deletes from every
// table AccountTables finds, then the account itself, and records the audit
// row auditID. ErrNotFound when the account does not exist.
func DeleteAccount(ctx context.Context, db Beginner, accountID, auditID string, now time.Time) (Deletion, error) {
	d := Deletion{AuditID: auditID, Rows: map[string]int64{}}
	err := withTx(ctx, db, func(tx pgx.Tx) error {
		// Exclusive against every Accept of the account (lockAccountsSQL).
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7261))`, accountID); err != nil {
			return fmt.Errorf("lock account: %w", err)
		}
		var ok bool
		err := tx.QueryRow(ctx, `SELECT true FROM accounts WHERE id = $1 FOR UPDATE`, accountID).Scan(&ok)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("lock account: %w", err)
		}
		if d.KeyIDs, err = collectIDs(ctx, tx, `SELECT id::text FROM api_keys WHERE account_id = $1`, accountID); err != nil {
			return err
		}
		if d.MessageIDs, err = collectIDs(ctx, tx, `SELECT id::text FROM messages WHERE account_id = $1`, accountID); err != nil {
			return err
		}
		tables, err := AccountTables(ctx, tx)
		if err != nil {
			return err
		}
		for _, t := range tables {
			tag, err := tx.Exec(ctx, `DELETE FROM `+pgx.Identifier{t}.Sanitize()+` WHERE account_id = $1`, accountID)
			if err != nil {
				return fmt.Errorf("delete from %s: %w", t, err)
			}
			d.Rows[t] = tag.RowsAffected()
		}
		tag, err := tx.Exec(ctx, `DELETE FROM accounts WHERE id = $1`, accountID)
		if err != nil {
			return fmt.Errorf("delete account: %w", err)
		}
		d.Rows["accounts"] = tag.RowsAffected()
		rows, err := json.Marshal(d.Rows)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO account_deletions (id, account_hash, started_at, rows_deleted) VALUES ($1, $2, $3, $4)`,
			auditID, AccountHash(accountID), now, string(rows))
		if err != nil {
			return fmt.Errorf("record account deletion: %w", err)
		}
		return nil
	})
	if err != nil {
		return Deletion{}, err
	}
	return d, nil
}

func collectIDs(ctx context.Context, tx pgx.Tx, sql, accountID string) ([]string, error) {
	rows, err := tx.Query(ctx, sql, accountID)
	if err != nil {
		return nil, fmt.Errorf("collect ids: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("collect ids: %w", err)
	}
	return ids, nil
}

// SweepAccount deletes rows of a deleted account that calls under way during
// DeleteAccount wrote after it (usage records of calls that were running),
// adding the counts to rows.
func SweepAccount(ctx context.Context, db DBTX, accountID string, rows map[string]int64) error {
	tables, err := AccountTables(ctx, db)
	if err != nil {
		return err
	}
	for _, t := range tables {
		tag, err := db.Exec(ctx, `DELETE FROM `+pgx.Identifier{t}.Sanitize()+` WHERE account_id = $1`, accountID)
		if err != nil {
			return fmt.Errorf("sweep %s: %w", t, err)
		}
		if n := tag.RowsAffected(); n > 0 {
			rows[t] += n
		}
	}
	return nil
}

// FinishDeletion records the final counts of a deletion.
func FinishDeletion(ctx context.Context, db DBTX, auditID string, rows, purged map[string]int64, now time.Time) error {
	r, err := json.Marshal(rows)
	if err != nil {
		return err
	}
	b, err := json.Marshal(purged)
	if err != nil {
		return err
	}
	_, err = db.Exec(ctx, `UPDATE account_deletions SET rows_deleted = $2, stream_messages_purged = $3, completed_at = $4 WHERE id = $1`,
		auditID, string(r), string(b), now)
	if err != nil {
		return fmt.Errorf("record account deletion purge: %w", err)
	}
	return nil
}
