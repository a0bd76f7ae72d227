package report

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/namirasoft/email-sender/pkg/partition"
	"github.com/namirasoft/email-sender/pkg/pgstats"

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

// span is a range [lo, hi) of creation times counted from the messages.
type span struct{ lo, hi time.Time }

// spans are the parts of the split hours within [start, end), adjacent ones
// joined: one range for all of them when every hour is split.
func spans(split []time.Time, start, end time.Time) []span {
	var out []span
	for _, h := range split {
		lo, hi := h, h.Add(time.Hour)
		if lo.Before(start) {
			lo = start
		}
		if hi.After(end) {
			hi = end
		}
		if n := len(out); n > 0 && out[n-1].hi.Equal(lo) {
			out[n-1].hi = hi
			continue
		}
		out = append(out, span{lo, hi})
	}
	return out
}

// stats counts the account's messages created in [start, end) by bucket
// (of width bucket from start), provider and current status, oldest bucket
// first.
//
// The counts are summed as integers (an hour of one account's messages fits):
// sum(integer) adds in a bigint, sum(bigint) in a numeric. Buckets wider than
// an hour are summed in SQL, which returns far fewer rows then; hour buckets
// (30 days of the big account: 32,000 rows of the rollup, nearly each its own
// bucket) would only pay for a hash aggregate there. The rows are sorted and
// merged here, by the provider's uuid: in SQL, ordering by its text compares
// by collation, which cost more than the rest of the query.
func (s *store) stats(ctx context.Context, accountID string, start, end time.Time, bucket time.Duration, providerID string) ([]statsRow, error) {
	split := splitHours(start, end, bucket)
	// The hours wholly inside [start, end): from the rollup, but for split ones.
	from, to := start.Truncate(time.Hour), end.Truncate(time.Hour)
	if from.Before(start) {
		from = from.Add(time.Hour)
	}
	// Planned with its arguments (QueryExecModeCacheDescribe): an account
	// with millions of messages and one with a few need different plans.
	args := []any{pgx.QueryExecModeCacheDescribe, accountID, providerID, from, to, split, start, bucket.Seconds()}
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args)-1)
	}
	var messages string
	if sp := spans(split, start, end); len(sp) > 0 {
		// Ranges of constants, so that the planner knows how many rows
		// each holds, with their id bounds, so that it reads their
		// partitions only (partition.IDsFrom).
		ranges := make([]string, len(sp))
		for i, r := range sp {
			ranges[i] = "m.created_at >= " + arg(r.lo) + " AND m.created_at < " + arg(r.hi) +
				" AND m.id >= " + arg(partition.IDsFrom(r.lo)) + " AND m.id < " + arg(partition.IDsBefore(r.hi))
		}
		messages = `
			UNION ALL
			SELECT date_bin(make_interval(secs => $7::double precision), m.created_at, $6), m.provider_id, m.status,
				count(*)::integer
			FROM messages m
			WHERE m.account_id = $1 AND ($2 = '' OR m.provider_id = NULLIF($2, '')::uuid)
				AND (` + strings.Join(ranges, " OR ") + `)
			GROUP BY 1, 2, 3`
	}
	sum, group := "c.n", ""
	if bucket > time.Hour {
		sum, group = "sum(c.n)", "GROUP BY 1, 2, 3"
	}
	rows, err := s.pool.Query(ctx, `
		SELECT date_bin(make_interval(secs => $7::double precision), c.at, $6), c.provider_id, c.status, `+sum+`
		FROM (
			SELECT s.hour AS at, s.provider_id, s.status, s.count::integer AS n
			FROM message_stats s
			WHERE s.account_id = $1 AND ($2 = '' OR s.provider_id = NULLIF($2, '')::uuid)
				AND s.hour >= $3 AND s.hour < $4 AND s.hour <> ALL($5::timestamptz[])
			UNION ALL
			SELECT p.hour, p.provider_id, p.status, p.delta::integer
			FROM message_stats_pending p
			WHERE p.account_id = $1 AND ($2 = '' OR p.provider_id = NULLIF($2, '')::uuid)
				AND p.hour >= $3 AND p.hour < $4 AND p.hour <> ALL($5::timestamptz[])`+messages+`
		) c
		`+group, args...)
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	// Each row's key is one integer, so that sorting compares integers:
	// the bucket's number from start, the provider's rank among the
	// account's (by uuid), the status.
	type row struct {
		bucket   int64
		provider int
		status   int16
		count    int64
	}
	var (
		got       []row
		providers [][16]byte
		rank      = map[[16]byte]int{}
		at        time.Time
		provider  [16]byte
		status    int16
		n         int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&at, &provider, &status, &n}, func() error {
		p, ok := rank[provider]
		if !ok {
			p = len(providers)
			rank[provider] = p
			providers = append(providers, provider)
		}
		got = append(got, row{bucket: int64(at.Sub(start) / bucket), provider: p, status: status, count: n})
		return nil
	}); err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	if len(providers) > 1<<16 {
		return nil, fmt.Errorf("stats: %d provider configurations: at most %d fit the sort key", len(providers), 1<<16)
	}
	order := make([]int, len(providers)) // rank by uuid of the provider first seen i-th
	byID := make([]int, len(providers))
	for i := range byID {
		byID[i] = i
	}
	slices.SortFunc(byID, func(a, b int) int { return bytes.Compare(providers[a][:], providers[b][:]) })
	for r, i := range byID {
		order[i] = r
	}
	type keyed struct {
		key   uint64
		count int64
	}
	keys := make([]keyed, len(got))
	for i, r := range got {
		keys[i] = keyed{uint64(r.bucket)<<32 | uint64(order[r.provider])<<16 | uint64(uint16(r.status)), r.count}
	}
	slices.SortFunc(keys, func(a, b keyed) int { return cmp.Compare(a.key, b.key) })
	ids := make([]string, len(providers))
	for r, i := range byID {
		ids[r] = uuid.UUID(providers[i]).String()
	}
	out := make([]statsRow, 0, len(keys))
	for i, k := range keys {
		if i+1 < len(keys) && keys[i+1].key == k.key {
			keys[i+1].count += k.count // the same count from the rollup and pending changes
			continue
		}
		if k.count == 0 {
			continue
		}
		out = append(out, statsRow{
			bucket:     start.Add(time.Duration(k.key>>32) * bucket).UTC(),
			providerID: ids[k.key>>16&0xffff],
			status:     emailsenderv1.MessageStatus_Value(int16(uint16(k.key))),
			count:      k.count,
		})
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
// another replica is folding. Counts that reach zero are deleted, and so
// are the changes of accounts that no longer exist (DeleteAccountData).
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
				SELECT account_id, hour, provider_id, status, delta FROM sums
				-- A deleted account's changes are dropped: its counts went with it.
				WHERE EXISTS (SELECT 1 FROM accounts a WHERE a.id = sums.account_id)
				ORDER BY 1, 2, 3, 4
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

// keyedTables are the tables the report reads and writes by key as events
// arrive, and the stats fold's: pgstats.Refresh keeps their statistics from
// undercounting them (a plan made when they said empty scans a whole index
// per batch).
var keyedTables = []string{"messages", "recipients", "events", "message_stats", "message_stats_pending", "reputation_counts"}

// runAnalyze analyzes the keyed tables whose statistics undercount their
// rows every AnalyzeInterval until ctx ends.
func (s *Service) runAnalyze(ctx context.Context) error {
	t := time.NewTicker(s.cfg.AnalyzeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		analyzed, err := pgstats.Refresh(ctx, s.deps.Pool, keyedTables...)
		if err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "refresh planner statistics", "error", err)
		}
		if len(analyzed) > 0 {
			s.log.DebugContext(ctx, "analyzed tables whose statistics undercounted them", "tables", analyzed)
		}
	}
}
