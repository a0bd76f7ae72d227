package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/queue"
)

// CancelScheduled cancels a SCHEDULED message of accountID whose job is not yet
// published: its outbox row is locked first, so it cannot race the relay (which
// skips locked rows, and whose publish commits with the row's deletion). It
// returns ErrNotFound for a message that is not in the account and
// *NotCancelableError when it is no longer SCHEDULED.
func CancelScheduled(ctx context.Context, db Beginner, accountID, messageID string, now time.Time) error {
	if _, err := uuid.Parse(messageID); err != nil {
		return ErrNotFound
	}
	return withTx(ctx, db, func(tx pgx.Tx) error {
		var inOutbox bool
		err := tx.QueryRow(ctx, `
			SELECT true FROM outbox WHERE message_id = $1 AND account_id = $2 FOR UPDATE`,
			messageID, accountID).Scan(&inOutbox)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("lock outbox row %s: %w", messageID, err)
		}
		var status int16
		err = tx.QueryRow(ctx, `
			SELECT status FROM messages WHERE id = $1 AND account_id = $2 FOR UPDATE`,
			messageID, accountID).Scan(&status)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("read message %s: %w", messageID, err)
		}
		if s := msgstatus.Status(status); s != msgstatus.Scheduled || !inOutbox {
			return &NotCancelableError{Status: s}
		}
		canceled := int16(msgstatus.Canceled)
		b := &pgx.Batch{}
		b.Queue(`DELETE FROM outbox WHERE message_id = $1 AND account_id = $2`, messageID, accountID)
		b.Queue(`UPDATE messages SET status = $3, updated_at = $4 WHERE id = $1 AND account_id = $2`,
			messageID, accountID, canceled, now)
		b.Queue(`UPDATE recipients SET status = $3, status_key = $4, updated_at = $5
			WHERE message_id = $1 AND account_id = $2`,
			messageID, accountID, canceled, msgstatus.Key(msgstatus.Canceled, 0), now)
		b.Queue(`INSERT INTO events (id, message_id, account_id, type, status, occurred_at, attempt)
			VALUES ($1, $2, $3, $4, $5, $6, 0) ON CONFLICT (message_id, id) DO NOTHING`,
			queue.EventID(messageID, 0, queue.EventCanceled, ""), messageID, accountID, queue.EventCanceled, canceled, now)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("cancel message %s: %w", messageID, err)
		}
		return nil
	})
}
