package report

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// GetStats counts messages from the rollup of migration 0014: message_stats
// holds the count of each account's messages per hour of creation, provider
// configuration and current status; message_stats_pending the changes that
// the triggers on messages appended since the last fold. The two together
// are exact at every moment.
//
// A bucket made of whole hours is summed from the rollup. An hour the rollup
// cannot split (the partial hours at the ends of the range, and an hour that
// a bucket boundary falls inside, when the start or the bucket width is not a
// whole number of hours) is counted from the messages themselves. A request
// whose start is on a whole hour with buckets of whole hours (the default
// request, day buckets from midnight) reads at most one hour of messages.

// statsRow is the count of one status in one bucket for one provider.
type statsRow struct {
	bucket     time.Time
	providerID string
	status     emailsenderv1.MessageStatus_Value
	count      int64
}

// splitHours returns the hours (their starts) of [start, end) that do not lie
// within one bucket of [start, end) as a whole, oldest first.
func splitHours(start, end time.Time, bucket time.Duration) []time.Time {
	out := []time.Time{} // not nil: an empty array, not NULL, in SQL
	add := func(t time.Time) {
		if t.Truncate(time.Hour).Equal(t) {
			return // on a whole hour: it splits nothing
		}
		h := t.Truncate(time.Hour)
		if n := len(out); n == 0 || !out[n-1].Equal(h) {
			out = append(out, h)
		}
	}
	for b := start; b.Before(end); b = b.Add(bucket) {
		add(b)
	}
	add(end)
	return out
}

// stats counts the account's messages created in [start, end) by bucket
// (of width bucket from start), provider and current status, oldest bucket
// first.
func (s *store) stats(ctx context.Context, accountID string, start, end time.Time, bucket time.Duration, providerID string) ([]statsRow, error) {
	split := splitHours(start, end, bucket)
	// The hours wholly inside [start, end): from the rollup, but for split ones.
	from, to := start.Truncate(time.Hour), end.Truncate(time.Hour)
	if from.Before(start) {
		from = from.Add(time.Hour)
	}
	// Each statement is planned with its arguments (QueryExecModeCacheDescribe):
	// an account with millions of messages and one with a few need different
	// plans of the same statement.
	rows, err := s.pool.Query(ctx, `
		SELECT date_bin(make_interval(secs => $4::double precision), c.at, $2) AS bucket,
			c.provider_id::text, c.status, sum(c.n)::bigint
		FROM (
			SELECT s.hour AS at, s.provider_id, s.status, s.count AS n
			FROM message_stats s
			WHERE s.account_id = $1 AND s.hour >= $6 AND s.hour < $7 AND s.hour <> ALL($8::timestamptz[])
				AND ($5 = '' OR s.provider_id = NULLIF($5, '')::uuid)
			UNION ALL
			SELECT p.hour, p.provider_id, p.status, p.delta
			FROM message_stats_pending p
			WHERE p.account_id = $1 AND p.hour >= $6 AND p.hour < $7 AND p.hour <> ALL($8::timestamptz[])
				AND ($5 = '' OR p.provider_id = NULLIF($5, '')::uuid)
			UNION ALL
			SELECT m.created_at, m.provider_id, m.status, 1
			FROM unnest($8::timestamptz[]) AS h(hour)
			JOIN messages m ON m.account_id = $1
				AND m.created_at >= greatest(h.hour, $2) AND m.created_at < least(h.hour + interval '1 hour', $3)
			WHERE ($5 = '' OR m.provider_id = NULLIF($5, '')::uuid)
		) c
		GROUP BY 1, 2, 3
		HAVING sum(c.n) <> 0
		ORDER BY 1, 2, 3`,
		pgx.QueryExecModeCacheDescribe, accountID, start, end, bucket.Seconds(), providerID, from, to, split)
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	var (
		out []statsRow
		r   statsRow
		st  int16
	)
	if _, err := pgx.ForEachRow(rows, []any{&r.bucket, &r.providerID, &st, &r.count}, func() error {
		r.status = emailsenderv1.MessageStatus_Value(st)
		out = append(out, r)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	return out, nil
}

// foldBatch is the most pending changes one fold transaction moves.
const foldBatch = 10_000

// runStatsFold folds pending changes into message_stats every interval
// until ctx ends. One replica folds at a time.
func (s *Service) runStatsFold(ctx context.Context) error {
	t := time.NewTicker(s.cfg.StatsFoldInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for {
			n, err := s.store.foldStats(ctx, foldBatch)
			if err != nil {
				if ctx.Err() == nil {
					s.log.WarnContext(ctx, "fold message stats", "error", err)
				}
				break
			}
			if n < foldBatch {
				break
			}
		}
	}
}

// foldStats moves up to limit pending changes, oldest first, into
// message_stats in one transaction and returns how many it moved; 0 when
// another replica is folding. Counts that reach zero are deleted.
func (s *store) foldStats(ctx context.Context, limit int) (int, error) {
	var moved int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var locked bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(hashtextextended('emailsender-message-stats:' || current_schema(), 0))`).
			Scan(&locked); err != nil {
			return fmt.Errorf("fold lock: %w", err)
		}
		if !locked {
			return nil
		}
		var (
			accounts, providers []string
			hours               []time.Time
			statuses            []int16
		)
		if err := tx.QueryRow(ctx, `
			WITH moved AS (
				DELETE FROM message_stats_pending
				WHERE id IN (SELECT id FROM message_stats_pending ORDER BY id LIMIT $1)
				RETURNING account_id, hour, provider_id, status, delta
			), sums AS (
				SELECT account_id, hour, provider_id, status, sum(delta)::bigint AS delta
				FROM moved GROUP BY 1, 2, 3, 4 HAVING sum(delta) <> 0
			), folded AS (
				INSERT INTO message_stats AS s (account_id, hour, provider_id, status, count)
				SELECT account_id, hour, provider_id, status, delta FROM sums ORDER BY 1, 2, 3, 4
				ON CONFLICT (account_id, hour, provider_id, status) DO UPDATE SET count = s.count + excluded.count
				RETURNING s.account_id, s.hour, s.provider_id, s.status, s.count
			)
			SELECT (SELECT count(*) FROM moved)::integer,
				coalesce(array_agg(account_id::text), '{}'), coalesce(array_agg(hour), '{}'),
				coalesce(array_agg(provider_id::text), '{}'), coalesce(array_agg(status), '{}')
			FROM folded WHERE count = 0`, limit).Scan(&moved, &accounts, &hours, &providers, &statuses); err != nil {
			return fmt.Errorf("fold message stats: %w", err)
		}
		if len(accounts) == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, `
			DELETE FROM message_stats s
			USING unnest($1::uuid[], $2::timestamptz[], $3::uuid[], $4::smallint[]) AS z(account_id, hour, provider_id, status)
			WHERE s.account_id = z.account_id AND s.hour = z.hour AND s.provider_id = z.provider_id
				AND s.status = z.status AND s.count = 0`, accounts, hours, providers, statuses); err != nil {
			return fmt.Errorf("delete zero message stats: %w", err)
		}
		return nil
	})
	return moved, err
}
