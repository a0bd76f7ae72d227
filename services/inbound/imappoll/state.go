package imappoll

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// state is how far a mailbox was read (imap_poll_state).
type state struct {
	mailbox     string
	uidValidity uint32
	lastUID     uint32
}

type stateStore struct{ pool *pgxpool.Pool }

func (s *stateStore) load(ctx context.Context, providerID string) (state, error) {
	var (
		st       state
		validity int64
		last     int64
	)
	err := s.pool.QueryRow(ctx, `SELECT mailbox, uid_validity, last_uid FROM imap_poll_state WHERE provider_id = $1`, providerID).
		Scan(&st.mailbox, &validity, &last)
	if errors.Is(err, pgx.ErrNoRows) {
		return state{}, nil
	}
	if err != nil {
		return state{}, fmt.Errorf("load imap poll state: %w", err)
	}
	st.uidValidity, st.lastUID = uint32(validity), uint32(last)
	return st, nil
}

func (s *stateStore) save(ctx context.Context, b mailbox, validity, last uint32) error {
	_, err := s.pool.Exec(ctx, `
		INSERT INTO imap_poll_state (provider_id, account_id, mailbox, uid_validity, last_uid, last_error, updated_at)
		VALUES ($1, $2, $3, $4, $5, '', now())
		ON CONFLICT (provider_id) DO UPDATE SET mailbox = EXCLUDED.mailbox, uid_validity = EXCLUDED.uid_validity,
			last_uid = EXCLUDED.last_uid, last_error = '', updated_at = now()`,
		b.providerID, b.accountID, b.settings.BounceIMAPMailbox, int64(validity), int64(last))
	if err != nil {
		return fmt.Errorf("save imap poll state: %w", err)
	}
	return nil
}

// failed records a poll's error, keeping the position.
func (s *stateStore) failed(ctx context.Context, b mailbox, perr error) error {
	msg := perr.Error()
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	_, err := s.pool.Exec(ctx, `
		INSERT INTO imap_poll_state (provider_id, account_id, mailbox, uid_validity, last_uid, last_error, updated_at)
		VALUES ($1, $2, $3, 0, 0, $4, now())
		ON CONFLICT (provider_id) DO UPDATE SET last_error = EXCLUDED.last_error, updated_at = now()`,
		b.providerID, b.accountID, b.settings.BounceIMAPMailbox, msg)
	if err != nil {
		return fmt.Errorf("record imap poll error: %w", err)
	}
	return nil
}
