package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
)

// MessageKey names a message within its account.
type MessageKey struct {
	AccountID string
	MessageID string
}

// OutboxRow is a due job claimed by the relay.
type OutboxRow struct {
	MessageKey
	Subject     string
	Traceparent string
	// Content is the encoded SendJob; nil when the message row is gone (the
	// account's data was deleted), and the row is then simply dropped, or
	// when the content is gone (Stored): the message is then failed.
	Content []byte
	// Stored is whether the message row exists.
	Stored bool
	Status msgstatus.Status
	// CreatedAt is the message's acceptance time (its ACCEPTED/SCHEDULED event's).
	CreatedAt time.Time
	// Tags are the message's tags (nil when its row is gone): a templated
	// message's name its template for the ACCEPTED event's detail.
	Tags map[string]string
}

// ClaimDue locks up to limit outbox rows that are due (not_before passed) and
// older than grace, skipping rows another relay or a CancelScheduled holds. The
// grace keeps the relay off rows whose accepting call is still publishing them
// itself. Rows stay locked until tx ends.
func ClaimDue(ctx context.Context, tx pgx.Tx, grace time.Duration, limit int) ([]OutboxRow, error) {
	rows, err := tx.Query(ctx, `
		SELECT o.message_id::text, o.account_id::text, o.subject, o.traceparent, c.content, m.id IS NOT NULL,
			COALESCE(m.status, 0), COALESCE(m.created_at, o.created_at), m.tags
		FROM outbox o
		LEFT JOIN messages m ON m.id = o.message_id AND m.account_id = o.account_id
		LEFT JOIN message_contents c ON c.message_id = o.message_id AND c.account_id = o.account_id
		WHERE o.not_before <= now() AND o.created_at <= now() - $1::interval
		ORDER BY o.not_before
		LIMIT $2
		FOR UPDATE OF o SKIP LOCKED`, grace, limit)
	if err != nil {
		return nil, fmt.Errorf("claim outbox rows: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (OutboxRow, error) {
		var (
			o      OutboxRow
			status int16
		)
		err := r.Scan(&o.MessageID, &o.AccountID, &o.Subject, &o.Traceparent, &o.Content, &o.Stored, &status, &o.CreatedAt, &o.Tags)
		o.Status = msgstatus.Status(status)
		return o, err
	})
	if err != nil {
		return nil, fmt.Errorf("claim outbox rows: %w", err)
	}
	return out, nil
}

// split parses keys into uuids (pgtype.UUID: sent in binary at once; see
// messageIDs). A key that is not a uuid names no row: it is left out.
func split(keys []MessageKey) (accounts, messages []pgtype.UUID) {
	accounts = make([]pgtype.UUID, 0, len(keys))
	messages = make([]pgtype.UUID, 0, len(keys))
	for _, k := range keys {
		a, errA := uuid.Parse(k.AccountID)
		m, errM := uuid.Parse(k.MessageID)
		if errA == nil && errM == nil {
			accounts, messages = append(accounts, pgUUID(a)), append(messages, pgUUID(m))
		}
	}
	return accounts, messages
}

// deleteOutboxSQL deletes by the primary key alone (a message id names one
// row whatever its account): a join with the keys' accounts was planned,
// under statistics that said the queue was empty (it is emptied as fast as
// it fills), as a walk of the whole account index per batch (44 ms a batch
// of 10 in make bench's end-to-end run); `= ANY` on the key is an index
// condition whatever the statistics say.
const deleteOutboxSQL = `DELETE FROM outbox WHERE message_id = ANY($1::uuid[])`

// DeleteOutbox removes the outbox rows of published messages.
func DeleteOutbox(ctx context.Context, db DBTX, keys []MessageKey) error {
	if len(keys) == 0 {
		return nil
	}
	_, messages := split(keys)
	if _, err := db.Exec(ctx, deleteOutboxSQL, messages); err != nil {
		return fmt.Errorf("delete outbox rows: %w", err)
	}
	return nil
}

// DeletePublished removes the outbox rows of jobs the accepting calls
// published (the outbox Deleter's batches), in a transaction that commits
// without waiting for its WAL flush (synchronous_commit off, for it alone):
// a delete lost in a crash of PostgreSQL leaves rows the relay publishes
// again, as JetStream duplicates, which is what the rows still queued in a
// Deleter that stops unexpectedly come to anyway. Waiting for the flush took
// a second WAL flush per batch next to the accepts', whose callers wait for
// theirs.
func DeletePublished(ctx context.Context, db DBTX, keys []MessageKey) error {
	if len(keys) == 0 {
		return nil
	}
	_, messages := split(keys)
	b := &pgx.Batch{}
	b.Queue(`SELECT set_config('synchronous_commit', 'off', true)`)
	b.Queue(deleteOutboxSQL, messages)
	if err := db.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("delete outbox rows: %w", err)
	}
	return nil
}

// MarkQueued moves published SCHEDULED messages and their recipients to QUEUED.
// Messages a worker has already moved on are left alone.
func MarkQueued(ctx context.Context, db DBTX, keys []MessageKey) error {
	if len(keys) == 0 {
		return nil
	}
	accounts, messages := split(keys)
	queued, scheduled := int16(msgstatus.Queued), int16(msgstatus.Scheduled)
	b := &pgx.Batch{}
	b.Queue(`
		UPDATE messages m SET status = $3, updated_at = now()
		FROM unnest($1::uuid[], $2::uuid[]) AS k(account_id, message_id)
		WHERE m.account_id = k.account_id AND m.id = k.message_id AND m.status = $4
			AND m.id = ANY($2::uuid[]) -- only their partitions (pkg/partition)`,
		accounts, messages, queued, scheduled)
	b.Queue(`
		UPDATE recipients r SET status = $3, status_key = $5, updated_at = now()
		FROM unnest($1::uuid[], $2::uuid[]) AS k(account_id, message_id)
		WHERE r.account_id = k.account_id AND r.message_id = k.message_id AND r.status = $4
			AND r.message_id = ANY($2::uuid[])`,
		accounts, messages, queued, scheduled, msgstatus.Key(msgstatus.Queued, 0))
	if err := db.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("mark messages queued: %w", err)
	}
	return nil
}

// RecordOutboxFailure counts a failed publish on the rows.
func RecordOutboxFailure(ctx context.Context, db DBTX, keys []MessageKey, reason string) error {
	if len(keys) == 0 {
		return nil
	}
	accounts, messages := split(keys)
	_, err := db.Exec(ctx, `
		UPDATE outbox o SET attempts = o.attempts + 1, last_error = $3
		FROM unnest($1::uuid[], $2::uuid[]) AS k(account_id, message_id)
		WHERE o.account_id = k.account_id AND o.message_id = k.message_id`, accounts, messages, reason)
	if err != nil {
		return fmt.Errorf("record outbox failure: %w", err)
	}
	return nil
}
