package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
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
	return msgstatus.Status(st) == msgstatus.Canceled, nil
}

// Stored is what the database says of a job's message, for Check.
type Stored int

const (
	// StoredOK: the message exists, belongs to the job's account, and the
	// job's provider configuration belongs to that account too.
	StoredOK Stored = iota
	// StoredMissing: no such message (its account's data was deleted, or the
	// job names a message that never was stored).
	StoredMissing
	// StoredOtherAccount: the message belongs to another account than the job says.
	StoredOtherAccount
	// StoredForeignConfig: the job's provider configuration does not belong
	// to the message's account (or no longer exists).
	StoredForeignConfig
)

func (s Stored) String() string {
	switch s {
	case StoredOK:
		return "ok"
	case StoredMissing:
		return "message not stored"
	case StoredOtherAccount:
		return "message belongs to another account"
	case StoredForeignConfig:
		return "provider configuration does not belong to the message's account"
	}
	return "unknown"
}

// Check compares a job with its stored message in one query: the message
// must exist under the job's account, and the job's provider configuration
// must belong to that account. The same query returns which of recipients
// (lower-cased addresses) the account suppresses: nothing is sent to them,
// they are marked SUPPRESSED.
func (m *Messages) Check(ctx context.Context, accountID, messageID, providerID string, recipients []string) (Stored, []string, error) {
	if _, err := uuid.Parse(messageID); err != nil {
		return StoredMissing, nil, nil // never a stored message's id
	}
	var (
		sameAccount, configOK bool
		suppressed            []string
	)
	err := m.pool.QueryRow(ctx, `
		SELECT m.account_id::text = $2,
			EXISTS (SELECT 1 FROM provider_configs pc WHERE pc.account_id = m.account_id AND pc.id::text = $3),
			ARRAY(SELECT s.address FROM suppressions s WHERE s.account_id = m.account_id AND s.address = ANY($4::text[]))
		FROM messages m WHERE m.id = $1::uuid`, messageID, accountID, providerID, recipients).Scan(&sameAccount, &configOK, &suppressed)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return StoredMissing, nil, nil
	case err != nil:
		return 0, nil, fmt.Errorf("check message %s against its job: %w", messageID, err)
	case !sameAccount:
		return StoredOtherAccount, nil, nil
	case !configOK:
		return StoredForeignConfig, nil, nil
	}
	return StoredOK, suppressed, nil
}
