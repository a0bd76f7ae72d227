package gmailpoll

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// cursors are the pollers' historyIds in PostgreSQL (gmail_poll_cursors).
type cursors struct{ pool *pgxpool.Pool }

// target is a gmail configuration to poll.
type target struct{ id, accountID string }

// targets lists the healthy gmail configurations. A configuration whose
// credentials were refused is left until it is verified again.
func (c *cursors) targets(ctx context.Context) ([]target, error) {
	rows, err := c.pool.Query(ctx, `SELECT id::text, account_id::text FROM provider_configs WHERE kind = 'gmail' AND healthy ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list gmail configurations: %w", err)
	}
	var out []target
	var t target
	_, err = pgx.ForEachRow(rows, []any{&t.id, &t.accountID}, func() error {
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list gmail configurations: %w", err)
	}
	return out, nil
}

// get is the configuration's cursor; ok false when it has none yet.
func (c *cursors) get(ctx context.Context, providerID string) (id uint64, ok bool, err error) {
	var s string
	err = c.pool.QueryRow(ctx, `SELECT history_id::text FROM gmail_poll_cursors WHERE provider_id = $1`, providerID).Scan(&s)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read gmail poll cursor: %w", err)
	}
	id, err = strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("gmail poll cursor %q: %w", s, err)
	}
	return id, true, nil
}

// set moves the configuration's cursor from prev (ok: it had one) to next.
// A cursor another poller moved meanwhile (a lease lost) is left alone:
// false.
func (c *cursors) set(ctx context.Context, t target, prev uint64, had bool, next uint64, at time.Time) (bool, error) {
	var (
		tag interface{ RowsAffected() int64 }
		err error
	)
	if had {
		tag, err = c.pool.Exec(ctx, `UPDATE gmail_poll_cursors SET history_id = $2::numeric, updated_at = $3
			WHERE provider_id = $1 AND history_id = $4::numeric`,
			t.id, strconv.FormatUint(next, 10), at, strconv.FormatUint(prev, 10))
	} else {
		tag, err = c.pool.Exec(ctx, `INSERT INTO gmail_poll_cursors (provider_id, account_id, history_id, updated_at)
			VALUES ($1, $2, $3::numeric, $4) ON CONFLICT (provider_id) DO NOTHING`,
			t.id, t.accountID, strconv.FormatUint(next, 10), at)
	}
	if err != nil {
		return false, fmt.Errorf("store gmail poll cursor: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// drop removes the cursors of configurations that are gone.
func (c *cursors) drop(ctx context.Context) error {
	_, err := c.pool.Exec(ctx, `DELETE FROM gmail_poll_cursors g
		WHERE NOT EXISTS (SELECT 1 FROM provider_configs p WHERE p.id = g.provider_id AND p.kind = 'gmail')`)
	if err != nil {
		return fmt.Errorf("drop gmail poll cursors: %w", err)
	}
	return nil
}
