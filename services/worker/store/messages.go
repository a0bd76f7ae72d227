package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/namirasoft/email-sender/pkg/lifecycle"
)

// Messages reads the status of messages.
type Messages struct {
	pool *pgxpool.Pool
}

// NewMessages reads from pool.
func NewMessages(pool *pgxpool.Pool) *Messages { return &Messages{pool: pool} }

// Canceled reports whether the message was canceled (CancelScheduled).
// A message that no longer exists (its account's data was deleted) counts as
// canceled: there is nobody left to send it for.
func (m *Messages) Canceled(ctx context.Context, accountID, messageID string) (bool, error) {
	var st int16
	err := m.pool.QueryRow(ctx, `SELECT status FROM messages WHERE id = $1 AND account_id = $2`, messageID, accountID).Scan(&st)
	if errors.Is(err, pgx.ErrNoRows) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("read status of message %s: %w", messageID, err)
	}
	return lifecycle.Status(st) == lifecycle.Canceled, nil
}
