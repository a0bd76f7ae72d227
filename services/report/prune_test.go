package report

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/partition"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
)

// queryLog records the statements a pool runs.
type queryLog struct {
	mu      sync.Mutex
	queries []pgx.TraceQueryStartData
}

func (l *queryLog) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.queries = append(l.queries, d)
	return ctx
}

func (l *queryLog) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (l *queryLog) take() []pgx.TraceQueryStartData {
	l.mu.Lock()
	defer l.mu.Unlock()
	q := l.queries
	l.queries = nil
	return q
}

// scanned is the partitions the plan of q reads, by EXPLAIN with q's own
// arguments (a custom plan, as the report's queries get), on pool (not the
// traced one).
func scanned(t *testing.T, pool *pgxpool.Pool, q pgx.TraceQueryStartData) []string {
	t.Helper()
	var plan []map[string]any
	require.NoError(t, pool.QueryRow(t.Context(), "EXPLAIN (FORMAT JSON) "+q.SQL, q.Args...).Scan(&plan), q.SQL)
	var out []string
	var walk func(n map[string]any)
	walk = func(n map[string]any) {
		if r, ok := n["Relation Name"].(string); ok && !slices.Contains(out, r) {
			out = append(out, r)
		}
		kids, _ := n["Plans"].([]any)
		for _, k := range kids {
			walk(k.(map[string]any))
		}
	}
	walk(plan[0]["Plan"].(map[string]any))
	slices.Sort(out)
	if testing.Verbose() {
		b, _ := json.Marshal(out)
		t.Logf("%s\n  reads %s", strings.Join(strings.Fields(q.SQL), " "), b)
	}
	return out
}

// TestQueriesPrunePartitions: GetMessage reads one partition of messages,
// recipients and events; ListMessages and GetStats over a time range read
// the partitions of that range only (and a minute of each neighbour, the
// ids' allowed skew: partition.IDSkew), GetStats those of the hours it
// counts from the messages and those of message_stats of its hours, a recipient's list those of recipients too;
// applying an event touches its message's partitions only; ListMessages
// without a range reads the newest partitions first and stops at its limit.
func TestQueriesPrunePartitions(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	log := &queryLog{}
	cfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(t, err)
	cfg.ConnConfig.Tracer = log
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	ctx := t.Context()

	// Day partitions up to day 8 (made by a manager whose clock is five days
	// ahead), a message at noon of each day.
	now := time.Now().UTC()
	d0 := now.Truncate(24 * time.Hour)
	mgr, err := partition.New(partition.Config{Period: 24 * time.Hour, Ahead: 3},
		partition.Retention{Content: 1000 * time.Hour, Metadata: 1000 * time.Hour, Usage: time.Hour, Idempotency: time.Hour},
		partition.Deps{Pool: db.Pool, Now: func() time.Time { return now.Add(5 * 24 * time.Hour) }})
	require.NoError(t, err)
	_, err = mgr.RunOnce(ctx)
	require.NoError(t, err)
	account := uuid.NewString()
	day := func(d int) time.Time { return d0.Add(time.Duration(d)*24*time.Hour + 12*time.Hour) }
	ids := map[int]string{}
	for d := 1; d <= 8; d++ {
		id, err := partition.NewMessageID(day(d))
		require.NoError(t, err)
		ids[d] = id.String()
		_, err = db.Pool.Exec(ctx, `INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, recipient_count, size_bytes, created_at, updated_at)
			VALUES ($1, $2, $3, 'sandbox', 4, 'a@example.com', 1, 3, $4, $4)`, id, account, uuid.New(), day(d))
		require.NoError(t, err)
		_, err = db.Pool.Exec(ctx, `INSERT INTO recipients (message_id, idx, account_id, kind, address, status, updated_at)
			VALUES ($1, 0, $2, 'to', 'to@example.com', 4, $3)`, id, account, day(d))
		require.NoError(t, err)
	}
	p := func(table string, d int) string {
		return partition.PeriodName(table, d0.Add(time.Duration(d)*24*time.Hour))
	}
	s := &store{pool: pool}

	_, err = s.message(ctx, account, ids[3])
	require.NoError(t, err)
	var got [][]string
	for _, q := range log.take() {
		if strings.Contains(q.SQL, "FROM ") {
			got = append(got, scanned(t, db.Pool, q))
		}
	}
	require.Equal(t, [][]string{{p("messages", 3)}, {p("recipients", 3)}, {p("events", 3)}}, got, "GetMessage")

	from, to := d0.Add(2*24*time.Hour), d0.Add(4*24*time.Hour) // days 2 and 3
	list, err := s.list(ctx, account, listFilter{createdAfter: &from, createdBefore: &to, limit: 10})
	require.NoError(t, err)
	require.Len(t, list, 2)
	_, err = s.stats(ctx, account, from, to, time.Hour, "")
	require.NoError(t, err)
	parts, err := partition.List(ctx, db.Pool, "messages")
	require.NoError(t, err)
	var want []string // days 2 and 3, and the partitions of a minute before and after (IDSkew)
	for _, part := range parts {
		if part.From.Before(to.Add(partition.IDSkew)) && part.To.After(from.Add(-partition.IDSkew)) {
			want = append(want, part.Name)
		}
	}
	slices.Sort(want)
	require.Len(t, want, 4)
	rollup := 0
	for _, q := range log.take() {
		if strings.Contains(q.SQL, "FROM message_stats ") {
			// GetStats' rollup: the partitions of the range's hours only.
			rollup++
			var stats []string
			for _, rel := range scanned(t, db.Pool, q) {
				if strings.HasPrefix(rel, "message_stats") {
					stats = append(stats, rel)
				}
			}
			require.Equal(t, []string{p("message_stats", 2), p("message_stats", 3), "message_stats_pending"}, stats)
		}
		if !strings.Contains(q.SQL, "FROM messages") {
			continue
		}
		require.Equal(t, want, scanned(t, db.Pool, q))
	}
	require.Equal(t, 1, rollup)

	// A range that starts and ends on no whole hour: GetStats counts the
	// messages of its first and last hour, and reads their partitions only;
	// so does a recipient's list over the range, on recipients too.
	from, to = day(2).Add(-30*time.Minute), day(3).Add(30*time.Minute)
	_, err = s.stats(ctx, account, from, to, time.Hour, "")
	require.NoError(t, err)
	list, err = s.list(ctx, account, listFilter{createdAfter: &from, createdBefore: &to, recipient: "to@example.com", limit: 10})
	require.NoError(t, err)
	require.Len(t, list, 2)
	var reads [][]string
	for _, q := range log.take() {
		if !strings.Contains(q.SQL, "FROM messages") {
			continue
		}
		var parts []string
		for _, rel := range scanned(t, db.Pool, q) {
			if strings.HasPrefix(rel, "messages_") || strings.HasPrefix(rel, "recipients_") {
				parts = append(parts, rel)
			}
		}
		reads = append(reads, parts)
	}
	require.Equal(t, [][]string{
		{p("messages", 2), p("messages", 3)},
		{p("messages", 2), p("messages", 3), p("recipients", 2), p("recipients", 3)},
	}, reads, "GetStats, then ListMessages by recipient")

	// Applying an event reads and writes its message's partitions only.
	_, _, err = s.apply(ctx, []event{{id: uuid.NewString(), messageID: ids[3], accountID: account,
		typ: "DELIVERED", status: msgstatus.Delivered, occurredAt: day(3)}})
	require.NoError(t, err)
	statements := 0
	for _, q := range log.take() {
		if len(q.Args) == 0 {
			continue // begin, commit
		}
		statements++
		for _, rel := range scanned(t, db.Pool, q) {
			// (The parents are an INSERT's or UPDATE's target; their
			// partitions are what is read.)
			if strings.HasPrefix(rel, "messages_") || strings.HasPrefix(rel, "recipients_") || strings.HasPrefix(rel, "events_") {
				require.Contains(t, []string{p("messages", 3), p("recipients", 3)}, rel, q.SQL)
			}
		}
	}
	require.Equal(t, 5, statements, "insert events, recipients, summarise, messages, latency")

	// Without a range every partition is planned; ORDER BY id DESC LIMIT
	// reads them newest first and stops (an ordered Append: there is no
	// DEFAULT partition).
	_, err = s.list(ctx, account, listFilter{limit: 1})
	require.NoError(t, err)
	q := log.take()
	require.Len(t, q, 1)
	var plan string
	rows, err := db.Pool.Query(ctx, "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) "+q[0].SQL, q[0].Args...)
	require.NoError(t, err)
	for rows.Next() {
		var line string
		require.NoError(t, rows.Scan(&line))
		plan += line + "\n"
	}
	require.NoError(t, rows.Err())
	require.NotContains(t, plan, "Merge Append", plan)
	require.Contains(t, plan, "never executed", plan)
	if testing.Verbose() {
		t.Log(plan)
	}
}
