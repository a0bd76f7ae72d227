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
// whole number of hours) is cut into pieces at those boundaries, and the
// messages of the cheaper side are read (hourPlan): either the pieces within
// the range, counted, or every piece but the largest within the range, whose
// count is the hour's rollup count less theirs. A start at 15:53 with hour
// buckets reads the 7 minutes after :53 of each hour, not every hour whole;
// a start at half past reads half of each hour. A request whose start is on a
// whole hour with buckets of whole hours (the default request, day buckets
// from midnight) reads at most the part of one hour after end: none, when end
// is now.

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

// hourPlan is how the hours that one bucket of [start, end) does not hold
// whole are counted.
type hourPlan struct {
	// counted are split hours whose part within [start, end) is counted
	// from the messages; the rollup's count of them is not read.
	counted []time.Time
	// derived are split hours whose count is the rollup's, given to the
	// bucket of their largest piece within [start, end) (derivedAt, a time
	// in that piece), less the messages of their other pieces, which are
	// read and counted in their own bucket when within [start, end).
	derived, derivedAt []time.Time
	// spans are the creation times read from the messages, oldest first,
	// adjacent ones joined.
	spans []span
}

// planHours plans the split hours (splitHours) of [start, end): each is read
// by the cheaper of counting its pieces within [start, end) and deriving
// its largest one from the rollup.
func planHours(start, end time.Time, bucket time.Duration) hourPlan {
	p := hourPlan{counted: []time.Time{}, derived: []time.Time{}, derivedAt: []time.Time{}} // not nil: empty arrays in SQL
	read := func(lo, hi time.Time) {
		if !lo.Before(hi) {
			return
		}
		if n := len(p.spans); n > 0 && p.spans[n-1].hi.Equal(lo) {
			p.spans[n-1].hi = hi
			return
		}
		p.spans = append(p.spans, span{lo, hi})
	}
	for _, h := range splitHours(start, end, bucket) {
		next := h.Add(time.Hour)
		// The cuts within the hour: start, end and the bucket boundaries.
		cuts := []time.Time{h}
		if h.Before(start) {
			cuts = append(cuts, start)
		}
		k := int64(0)
		if h.After(start) {
			k = int64((h.Sub(start) + bucket - 1) / bucket)
		}
		for b := start.Add(time.Duration(k) * bucket); b.Before(next) && b.Before(end); b = b.Add(bucket) {
			if b.After(cuts[len(cuts)-1]) {
				cuts = append(cuts, b)
			}
		}
		if end.Before(next) && end.After(cuts[len(cuts)-1]) {
			cuts = append(cuts, end)
		}
		cuts = append(cuts, next)
		var inRange time.Duration
		largest := -1
		for i := range len(cuts) - 1 {
			lo, hi := cuts[i], cuts[i+1]
			if lo.Before(start) || hi.After(end) {
				continue
			}
			inRange += hi.Sub(lo)
			if largest < 0 || hi.Sub(lo) > cuts[largest+1].Sub(cuts[largest]) {
				largest = i
			}
		}
		if largest >= 0 && time.Hour-cuts[largest+1].Sub(cuts[largest]) < inRange {
			p.derived = append(p.derived, h)
			p.derivedAt = append(p.derivedAt, cuts[largest])
			read(h, cuts[largest])
			read(cuts[largest+1], next)
			continue
		}
		p.counted = append(p.counted, h)
		read(maxTime(h, start), minTime(next, end))
	}
	return p
}

// maxPieceScans is the most pieces stats reads in scans of their own.
const maxPieceScans = 64

// pieces cuts spans at whole hours, at the bucket boundaries from start and
// at start and end, so that each piece lies in one hour and one bucket, and
// wholly within [start, end) or outside it.
func pieces(spans []span, start, end time.Time, bucket time.Duration) []span {
	var out []span
	for _, sp := range spans {
		for lo := sp.lo; lo.Before(sp.hi); {
			hi := minTime(sp.hi, lo.Truncate(time.Hour).Add(time.Hour))
			switch {
			case lo.Before(start):
				hi = minTime(hi, start)
			case lo.Before(end):
				hi = minTime(minTime(hi, end), start.Add((lo.Sub(start)/bucket+1)*bucket))
			}
			out = append(out, span{lo, hi})
			if len(out) > maxPieceScans {
				return out
			}
			lo = hi
		}
	}
	return out
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
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
	plan := planHours(start, end, bucket)
	// The rollup's hours: every hour [start, end) touches, but the counted ones.
	from, to := start.Truncate(time.Hour), end.Truncate(time.Hour)
	if to.Before(end) {
		to = to.Add(time.Hour)
	}
	// Planned with its arguments (QueryExecModeCacheDescribe): an account
	// with millions of messages and one with a few need different plans.
	args := []any{pgx.QueryExecModeCacheDescribe, accountID, providerID, from, to, plan.counted}
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args)-1)
	}
	// A derived hour's rollup rows, and the messages of its other pieces
	// (negated), are given to a time in its largest piece (derivedAt).
	// A derived hour's rollup rows are given to a time in its largest piece
	// (derivedAt); the messages of its other pieces are taken off that
	// bucket below (derivedAt by hour).
	rollupAt, derivedJoin := "s.hour", ""
	derivedAt := make(map[int64]time.Time, len(plan.derived)) // by the hour's Unix second
	if len(plan.derived) > 0 {
		rollupAt = "coalesce(d.at, s.hour)"
		derivedJoin = " LEFT JOIN unnest(" + arg(plan.derived) + "::timestamptz[], " + arg(plan.derivedAt) +
			"::timestamptz[]) AS d(hour, at) ON d.hour = s.hour"
		for i, h := range plan.derived {
			derivedAt[h.Unix()] = plan.derivedAt[i]
		}
	}
	var messages string
	where := func(r span) string {
		// Bounds of constants, so that the planner knows how many rows
		// each range holds, with their id bounds, so that it reads their
		// partitions only (partition.IDsFrom).
		return `
			FROM messages m
			WHERE m.account_id = $1 AND ($2 = '' OR m.provider_id = NULLIF($2, '')::uuid)
				AND m.created_at >= ` + arg(r.lo) + " AND m.created_at < " + arg(r.hi) +
			" AND m.id >= " + arg(partition.IDsFrom(r.lo)) + " AND m.id < " + arg(partition.IDsBefore(r.hi))
	}
	// One scan per range (UNION ALL, not OR: each is planned, pruned and
	// estimated on its own; ORed ranges made one bitmap of them all and a
	// parallel sort). Each piece lies in one bucket and one hour, on one
	// side of start and end, so its scan counts by provider and status
	// only; many pieces (sub-hour buckets over a long range) are read as
	// their spans, grouped by bucket, hour and range membership. A
	// derived hour's messages are counted in their bucket when within the
	// range, and taken off its derived bucket (below).
	if ps := pieces(plan.spans, start, end, bucket); len(ps) > 0 && len(ps) <= maxPieceScans {
		arms := make([]string, len(ps))
		for i, r := range ps {
			at := start.Add(r.lo.Sub(start) / bucket * bucket)
			in := !r.lo.Before(start) && !r.hi.After(end)
			arms[i] = `
		UNION ALL
		SELECT ` + arg(at) + `::timestamptz, ` + arg(r.lo.Truncate(time.Hour)) + `::timestamptz, ` + arg(in) + `::boolean,
			m.provider_id, m.status, count(*)::integer` + where(r) + `
		GROUP BY 4, 5`
		}
		messages = strings.Join(arms, "")
	} else if len(plan.spans) > 0 {
		ranges := make([]string, len(plan.spans))
		for i, r := range plan.spans {
			ranges[i] = `
			SELECT m.created_at, m.provider_id, m.status` + where(r)
		}
		messages = `
		UNION ALL
		SELECT date_bin(make_interval(secs => ` + arg(bucket.Seconds()) + `::double precision), m.created_at, ` + arg(start) + `),
			date_bin('1 hour', m.created_at, '1970-01-01 00:00:00+00'), m.created_at >= ` + arg(start) + ` AND m.created_at < ` + arg(end) + `,
			m.provider_id, m.status, count(*)::integer
		FROM (` + strings.Join(ranges, `
			UNION ALL`) + `
		) m
		GROUP BY 1, 2, 3, 4, 5`
	}
	// Rows of hour buckets are numbered in Go (by their time from start,
	// which no rollup row is before: an hour start is within is split).
	atSQL, sum, group := "c.at", "c.n", ""
	if bucket > time.Hour {
		atSQL = "date_bin(make_interval(secs => " + arg(bucket.Seconds()) + "::double precision), c.at, " + arg(start) + ")"
		sum, group = "sum(c.n)", "GROUP BY 1, 4, 5"
	}
	// The scans of messages are small (at most half of each split hour):
	// run in one process. Parallel workers cost more than they save on
	// them (EXPLAIN at 10M: 65 ms in the leader for 26 ms in each of
	// three processes), so a statement that reads an hour of messages or
	// more runs in a read-only transaction that turns them off (three
	// more round trips, not worth it for the part of an hour after end).
	var read time.Duration
	for _, sp := range plan.spans {
		read += sp.hi.Sub(sp.lo)
	}
	var q querier = s.pool
	if read >= time.Hour {
		tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
		if err != nil {
			return nil, fmt.Errorf("stats: %w", err)
		}
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		if _, err := tx.Exec(ctx, `SET LOCAL max_parallel_workers_per_gather = 0`); err != nil {
			return nil, fmt.Errorf("stats: %w", err)
		}
		q = tx
	}
	rows, err := q.Query(ctx, `
		SELECT `+atSQL+`, NULL::timestamptz, true,
			c.provider_id, c.status, `+sum+`
		FROM (
			SELECT `+rollupAt+` AS at, s.provider_id, s.status, s.n
			FROM (
				SELECT s.hour, s.provider_id, s.status, s.count::integer AS n
				FROM message_stats s
				WHERE s.account_id = $1 AND ($2 = '' OR s.provider_id = NULLIF($2, '')::uuid)
					AND s.hour >= $3 AND s.hour < $4 AND s.hour <> ALL($5::timestamptz[])
				UNION ALL
				SELECT p.hour, p.provider_id, p.status, p.delta::integer
				FROM message_stats_pending p
				WHERE p.account_id = $1 AND ($2 = '' OR p.provider_id = NULLIF($2, '')::uuid)
					AND p.hour >= $3 AND p.hour < $4 AND p.hour <> ALL($5::timestamptz[])
			) s`+derivedJoin+`
		) c
		`+group+messages, args...)
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	// Each row's key is one integer, so that sorting compares integers:
	// the bucket's number from start, the provider's rank among the
	// account's (by uuid), the status.
	var (
		got       = make([]countRow, 0, 1024)
		providers [][16]byte
		rank      = map[[16]byte]int{}
		at        time.Time
		hour      *time.Time
		inRange   bool
		provider  [16]byte
		status    int16
		n         int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&at, &hour, &inRange, &provider, &status, &n}, func() error {
		p, ok := rank[provider]
		if !ok {
			p = len(providers)
			rank[provider] = p
			providers = append(providers, provider)
		}
		if inRange {
			got = append(got, countRow{bucket: int64(at.Sub(start) / bucket), provider: p, status: status, count: n})
		}
		if hour != nil {
			if d, ok := derivedAt[hour.Unix()]; ok {
				got = append(got, countRow{bucket: int64(d.Sub(start) / bucket), provider: p, status: status, count: -n})
			}
		}
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
	ids := make([]string, len(providers))
	for r, i := range byID {
		ids[r] = uuid.UUID(providers[i]).String()
	}
	// Few enough buckets, providers and statuses: summed into a dense
	// array in key order, which needs no sort (30 days of hour buckets of
	// five providers: 58,000 cells for 32,000 rows).
	nb := int64((end.Sub(start) + bucket - 1) / bucket)
	if cells := nb * int64(len(providers)) * statusSlots; cells <= maxDenseCells {
		if out, ok := denseStats(got, order, ids, nb, start, bucket); ok {
			return out, nil
		}
	}
	return sortStats(got, order, ids, start, bucket), nil
}

// sortStats sums rows by bucket, provider (its rank by uuid: order) and
// status by sorting them by one integer key, and returns the non-zero sums
// in key order.
func sortStats(got []countRow, order []int, ids []string, start time.Time, bucket time.Duration) []statsRow {
	type keyed struct {
		key   uint64
		count int64
	}
	keys := make([]keyed, len(got))
	for i, r := range got {
		keys[i] = keyed{uint64(r.bucket)<<32 | uint64(order[r.provider])<<16 | uint64(uint16(r.status)), r.count}
	}
	slices.SortFunc(keys, func(a, b keyed) int { return cmp.Compare(a.key, b.key) })
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
	return out
}

// querier runs a query: the pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// countRow is one count read by stats: its bucket's number from start, its
// provider (the index of the first seen), status and count.
type countRow struct {
	bucket   int64
	provider int
	status   int16
	count    int64
}

const (
	// statusSlots is the room for statuses (0 to 15) in denseStats.
	statusSlots = 16
	// maxDenseCells bounds denseStats' array (8 bytes a cell).
	maxDenseCells = 1 << 18
)

// denseStats sums rows into an array indexed by bucket, provider (its rank
// by uuid: order) and status, and returns its non-zero cells in that order;
// false when a row does not fit (a status beyond the slots).
func denseStats(rows []countRow, order []int, ids []string, nb int64, start time.Time, bucket time.Duration) ([]statsRow, bool) {
	np := int64(len(ids))
	cells := make([]int64, nb*np*statusSlots)
	for _, r := range rows {
		if r.status < 0 || r.status >= statusSlots || r.bucket < 0 || r.bucket >= nb {
			return nil, false
		}
		cells[(r.bucket*np+int64(order[r.provider]))*statusSlots+int64(r.status)] += r.count
	}
	out := make([]statsRow, 0, len(rows))
	for i, n := range cells {
		if n == 0 {
			continue
		}
		k := int64(i)
		out = append(out, statsRow{
			bucket:     start.Add(time.Duration(k/statusSlots/np) * bucket).UTC(),
			providerID: ids[k/statusSlots%np],
			status:     emailsenderv1.MessageStatus_Value(k % statusSlots),
			count:      n,
		})
	}
	return out, true
}

// foldBatch is the most pending changes one fold transaction moves.
const foldBatch = 10_000

// runStatsFold folds pending changes into message_stats every interval
// until ctx ends. One replica folds at a time.
func (s *Service) runStatsFold(ctx context.Context) error {
	return every(ctx, s.cfg.StatsFoldInterval, false, func(ctx context.Context) {
		for {
			n, err := s.store.foldStats(ctx, foldBatch)
			if err != nil {
				if ctx.Err() == nil {
					s.log.WarnContext(ctx, "fold message stats", "error", err)
				}
				return
			}
			if n < foldBatch {
				return
			}
		}
	})
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
	return every(ctx, s.cfg.AnalyzeInterval, false, func(ctx context.Context) {
		analyzed, err := pgstats.Refresh(ctx, s.deps.Pool, keyedTables...)
		if err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "refresh planner statistics", "error", err)
		}
		if len(analyzed) > 0 {
			s.log.DebugContext(ctx, "analyzed tables whose statistics undercounted them", "tables", analyzed)
		}
	})
}
