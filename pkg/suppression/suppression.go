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
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
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
	out, err := r.ApplyAll(ctx, []Report{{AccountID: accountID, MessageID: messageID, Marks: marks, At: at}})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// Report is one message's report for ApplyAll.
type Report struct {
	AccountID, MessageID string
	Marks                []Mark
	// At is when the report happened.
	At time.Time
}

// ApplyAll applies several reports as Apply does each, in order, in one
// transaction and one round trip to the database (every mark is one
// statement, sent as one pipelined batch): all of them or none. out[i] is
// what Apply returns for reports[i].
func (r *Rules) ApplyAll(ctx context.Context, reports []Report) ([]map[string]string, error) {
	out := make([]map[string]string, len(reports))
	window := r.cfg.SoftBounceWindow.Seconds()
	if window <= 0 {
		window = (100 * 365 * 24 * time.Hour).Seconds() // no window
	}
	type pending struct {
		report int
		addr   string
		kind   string // "reset", "suppress", "soft"
	}
	type item struct {
		report int
		mark   Mark
	}
	var items []item
	for i, rep := range reports {
		out[i] = map[string]string{}
		for _, m := range rep.Marks {
			items = append(items, item{i, m})
		}
	}
	// In (account, address) order, so that concurrent batches take their
	// row locks in the same order (no deadlock); an address's marks keep
	// their order.
	slices.SortStableFunc(items, func(a, b item) int {
		return cmp.Or(strings.Compare(reports[a.report].AccountID, reports[b.report].AccountID),
			strings.Compare(a.mark.Address, b.mark.Address))
	})
	var (
		batch pgx.Batch
		queue []pending
	)
	for _, it := range items {
		i, rep, m := it.report, reports[it.report], it.mark
		switch {
		case m.Type == "DELIVERED":
			batch.Queue(`DELETE FROM bounce_streaks WHERE account_id = $1 AND address = $2`, rep.AccountID, m.Address)
			queue = append(queue, pending{i, m.Address, "reset"})
		case m.Class.Suppress() != "":
			batch.Queue(`
				WITH ins AS (
					INSERT INTO suppressions (account_id, address, reason, created_at) VALUES ($1, $2, $3, $4)
					ON CONFLICT (account_id, address) DO NOTHING RETURNING reason)
				SELECT reason FROM ins
				UNION ALL SELECT reason FROM suppressions WHERE account_id = $1 AND address = $2
				LIMIT 1`, rep.AccountID, m.Address, m.Class.Suppress(), rep.At)
			queue = append(queue, pending{i, m.Address, "suppress"})
		case m.Class == bounce.Soft:
			// The streak and, when it reaches SoftBounces, the
			// suppression, in one statement: "" when the address is not
			// suppressed by this report.
			batch.Queue(`
				WITH streak AS (
					INSERT INTO bounce_streaks AS s (account_id, address, soft_bounces, last_message_id, updated_at)
					VALUES ($1, $2, 1, $3, $4)
					ON CONFLICT (account_id, address) DO UPDATE SET
						soft_bounces = CASE
							WHEN s.last_message_id = EXCLUDED.last_message_id THEN s.soft_bounces
							WHEN s.updated_at < EXCLUDED.updated_at - make_interval(secs => $5) THEN 1
							ELSE s.soft_bounces + 1 END,
						last_message_id = EXCLUDED.last_message_id,
						updated_at = GREATEST(s.updated_at, EXCLUDED.updated_at)
					RETURNING soft_bounces),
				reached AS (SELECT 1 FROM streak WHERE $6::int > 0 AND streak.soft_bounces >= $6::int),
				ins AS (
					INSERT INTO suppressions (account_id, address, reason, created_at)
					SELECT $1, $2, 'bounce', $4 FROM reached
					ON CONFLICT (account_id, address) DO NOTHING RETURNING reason)
				SELECT COALESCE(
					(SELECT reason FROM ins),
					(SELECT reason FROM suppressions WHERE account_id = $1 AND address = $2 AND EXISTS (SELECT 1 FROM reached)),
					'')`,
				rep.AccountID, m.Address, rep.MessageID, rep.At, window, r.cfg.SoftBounces)
			queue = append(queue, pending{i, m.Address, "soft"})
		}
	}
	if len(queue) == 0 {
		return out, nil
	}
	// Outside a transaction a batch runs in one implicit transaction.
	res := r.pool.SendBatch(ctx, &batch)
	for _, p := range queue {
		if p.kind == "reset" {
			if _, err := res.Exec(); err != nil {
				_ = res.Close()
				return nil, fmt.Errorf("suppression: reset streak: %w", err)
			}
			continue
		}
		var stored string
		if err := res.QueryRow().Scan(&stored); err != nil {
			_ = res.Close()
			return nil, fmt.Errorf("suppression: apply %s mark: %w", p.kind, err)
		}
		if stored != "" {
			out[p.report][p.addr] = stored
		}
	}
	if err := res.Close(); err != nil {
		return nil, fmt.Errorf("suppression: commit: %w", err)
	}
	return out, nil
}
