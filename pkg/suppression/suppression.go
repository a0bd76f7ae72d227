// Package suppression holds the one rule of which bounce and complaint
// reports suppress an address in its account, whichever path reports them
// (the report's SES feedback, the inbound service's DSNs and ARF reports):
//
//   - a hard bounce or a complaint suppresses at once (reason "bounce",
//     "complaint"; pkg/bounce's Class.Suppress);
//   - soft bounces suppress after SoftBounces of them in a row (reason
//     "bounce"): each soft bounce of another message than the last one
//     counted adds one, a DELIVERED report starts over, and so does a soft
//     bounce more than SoftBounceWindow after the previous one;
//   - policy blocks, rejected messages and auto-replies never do.
//
// An address already suppressed keeps its first reason and time.
package suppression

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/namirasoft/email-sender/pkg/bounce"
)

// Config is the operator's suppression rule; every service that applies
// reports embeds it.
type Config struct {
	// SoftBounces is how many soft bounces in a row suppress an address; 0
	// never.
	SoftBounces int `env:"SUPPRESS_SOFT_BOUNCES" default:"3" help:"soft bounces (mailbox full, deferred) in a row, of distinct messages, that suppress an address (0: never)"`
	// SoftBounceWindow: a soft bounce longer than this after the previous
	// one starts a new streak.
	SoftBounceWindow time.Duration `env:"SUPPRESS_SOFT_BOUNCE_WINDOW" default:"720h" help:"a soft bounce this long after the previous one of the address starts a new streak"`
}

// Mark is one report about one recipient of a message.
type Mark struct {
	// Address is the canonical (lower-case) address.
	Address string
	// Type is the event type: "BOUNCED", "COMPLAINED" or "DELIVERED".
	Type string
	// Class is the bounce class of a BOUNCED or COMPLAINED report.
	Class bounce.Class
}

// Rules applies Config to an account's suppressions in PostgreSQL.
type Rules struct {
	pool *pgxpool.Pool
	cfg  Config
}

// New returns the rules of cfg on pool.
func New(pool *pgxpool.Pool, cfg Config) *Rules { return &Rules{pool: pool, cfg: cfg} }

// Config returns the rules' configuration.
func (r *Rules) Config() Config { return r.cfg }

// Apply applies the marks of one message's report, which happened at at, and
// returns the reason each address is suppressed for now (newly or already),
// by address; addresses it leaves alone are absent. Applying the same report
// twice changes nothing more than once.
func (r *Rules) Apply(ctx context.Context, accountID, messageID string, marks []Mark, at time.Time) (map[string]string, error) {
	out := map[string]string{}
	// One report is usually about one recipient: one statement, no
	// transaction around it. Several marks share one transaction.
	var db querier = r.pool
	if len(marks) > 1 {
		tx, err := r.pool.Begin(ctx)
		if err != nil {
			return nil, fmt.Errorf("suppression: begin: %w", err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		db = tx
	}
	window := r.cfg.SoftBounceWindow.Seconds()
	if window <= 0 {
		window = (100 * 365 * 24 * time.Hour).Seconds() // no window
	}
	for _, m := range marks {
		reason := ""
		switch {
		case m.Type == "DELIVERED":
			if _, err := db.Exec(ctx, `DELETE FROM bounce_streaks WHERE account_id = $1 AND address = $2`, accountID, m.Address); err != nil {
				return nil, fmt.Errorf("suppression: reset streak: %w", err)
			}
			continue
		case m.Class.Suppress() != "":
			reason = m.Class.Suppress()
		case m.Class == bounce.Soft:
			var n int
			err := db.QueryRow(ctx, `
				INSERT INTO bounce_streaks AS s (account_id, address, soft_bounces, last_message_id, updated_at)
				VALUES ($1, $2, 1, $3, $4)
				ON CONFLICT (account_id, address) DO UPDATE SET
					soft_bounces = CASE
						WHEN s.last_message_id = EXCLUDED.last_message_id THEN s.soft_bounces
						WHEN s.updated_at < EXCLUDED.updated_at - make_interval(secs => $5) THEN 1
						ELSE s.soft_bounces + 1 END,
					last_message_id = EXCLUDED.last_message_id,
					updated_at = GREATEST(s.updated_at, EXCLUDED.updated_at)
				RETURNING soft_bounces`,
				accountID, m.Address, messageID, at, window).Scan(&n)
			if err != nil {
				return nil, fmt.Errorf("suppression: count soft bounce: %w", err)
			}
			if r.cfg.SoftBounces > 0 && n >= r.cfg.SoftBounces {
				reason = "bounce"
			}
		}
		if reason == "" {
			continue
		}
		var stored string
		err := db.QueryRow(ctx, `
			WITH ins AS (
				INSERT INTO suppressions (account_id, address, reason, created_at) VALUES ($1, $2, $3, $4)
				ON CONFLICT (account_id, address) DO NOTHING RETURNING reason)
			SELECT reason FROM ins
			UNION ALL SELECT reason FROM suppressions WHERE account_id = $1 AND address = $2
			LIMIT 1`, accountID, m.Address, reason, at).Scan(&stored)
		if err != nil {
			return nil, fmt.Errorf("suppression: add %s suppression: %w", reason, err)
		}
		out[m.Address] = stored
	}
	if tx, ok := db.(pgx.Tx); ok {
		if err := tx.Commit(ctx); err != nil {
			return nil, fmt.Errorf("suppression: commit: %w", err)
		}
	}
	return out, nil
}

// querier is a pool or a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}
