package partition_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/partition"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
)

const day = 24 * time.Hour

type testBundle struct {
	db      *pgtest.DB
	mgr     *partition.Manager
	clock   time.Time
	account uuid.UUID
}

func setup(t *testing.T, ret partition.Retention) *testBundle {
	t.Helper()
	b := &testBundle{db: pgtest.New(t), clock: time.Now().UTC(), account: uuid.New()}
	var err error
	b.mgr, err = partition.New(partition.Config{Period: day, Ahead: 3}, ret, partition.Deps{
		Pool: b.db.Pool, Now: func() time.Time { return b.clock },
	})
	require.NoError(t, err)
	return b
}

func (b *testBundle) run(t *testing.T) partition.Pass {
	t.Helper()
	pass, err := b.mgr.RunOnce(t.Context())
	require.NoError(t, err)
	return pass
}

// message stores a message created at created (its id made from it), with
// a recipient, an event, its content, a usage record and an idempotency
// key of the same time, as ingest and report write them, and a count of
// its hour in message_stats (as the report's fold writes it; its provider
// id is the message id, to find it by).
func (b *testBundle) message(t *testing.T, created time.Time) uuid.UUID {
	t.Helper()
	id, err := partition.NewMessageID(created)
	require.NoError(t, err)
	b.messageWithID(t, id, created)
	return id
}

func (b *testBundle) messageWithID(t *testing.T, id uuid.UUID, created time.Time) {
	t.Helper()
	ctx := t.Context()
	batch := &pgx.Batch{}
	batch.Queue(`INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, recipient_count, size_bytes, created_at, updated_at)
		VALUES ($1, $2, $3, 'sandbox', 4, 'a@example.com', 1, 3, $4, $4)`, id, b.account, uuid.New(), created)
	batch.Queue(`INSERT INTO message_contents (message_id, account_id, content) VALUES ($1, $2, 'job')`, id, b.account)
	batch.Queue(`INSERT INTO recipients (message_id, idx, account_id, kind, address, status, updated_at)
		VALUES ($1, 0, $2, 'to', 'to@example.com', 4, $3)`, id, b.account, created)
	batch.Queue(`INSERT INTO events (id, message_id, account_id, type, status, occurred_at) VALUES ($1, $2, $3, 'SENT', 4, $4)`,
		uuid.New(), id, b.account, created)
	batch.Queue(`INSERT INTO usage_records (id, account_id, at, method, result) VALUES ($1, $2, $3, 'SendEmail', 'OK')`,
		uuid.New(), b.account, created)
	batch.Queue(`INSERT INTO idempotency_keys (account_id, key, request_hash, message_id, status, created_at) VALUES ($1, $2, '\x00', $3, 1, $4)`,
		b.account, id.String(), id, created)
	batch.Queue(`INSERT INTO message_stats (account_id, hour, provider_id, status, count)
		VALUES ($1, date_bin('1 hour', $2::timestamptz, '1970-01-01 00:00:00+00'), $3, 4, 1)`, b.account, created, id)
	require.NoError(t, b.db.Pool.SendBatch(ctx, batch).Close())
}

// where names the partition of table that holds the row of message id (or
// "" when it is gone).
func (b *testBundle) where(t *testing.T, table string, id uuid.UUID) string {
	t.Helper()
	q := map[string]string{
		"messages":         `SELECT tableoid::regclass::text FROM messages WHERE id = $1`,
		"message_contents": `SELECT tableoid::regclass::text FROM message_contents WHERE message_id = $1`,
		"recipients":       `SELECT tableoid::regclass::text FROM recipients WHERE message_id = $1`,
		"events":           `SELECT tableoid::regclass::text FROM events WHERE message_id = $1`,
		"usage_records":    `SELECT tableoid::regclass::text FROM usage_records WHERE at = (SELECT created_at FROM messages WHERE id = $1)`,
		"idempotency_keys": `SELECT tableoid::regclass::text FROM idempotency_keys WHERE key = $1::text`,
		"message_stats":    `SELECT tableoid::regclass::text FROM message_stats WHERE provider_id = $1`,
	}[table]
	var part string
	err := b.db.Pool.QueryRow(t.Context(), q, id).Scan(&part)
	if err == pgx.ErrNoRows {
		return ""
	}
	require.NoError(t, err)
	return part
}

func (b *testBundle) names(t *testing.T, table string) []string {
	t.Helper()
	parts, err := partition.List(t.Context(), b.db.Pool, table)
	require.NoError(t, err)
	var out []string
	for i, p := range parts {
		out = append(out, p.Name)
		if i > 0 {
			require.Equal(t, parts[i-1].To, p.From, "%s: %s follows %s without a gap", table, p.Name, parts[i-1].Name)
		}
	}
	require.True(t, parts[0].From.IsZero(), "%s starts at MINVALUE", table)
	require.True(t, parts[len(parts)-1].To.IsZero(), "%s ends at MAXVALUE", table)
	return out
}

// TestManagerRotation drives the manager with an injected clock through a
// week: partitions are made ahead (and rows that arrived beyond them
// moved), expired ones dropped per class, a partition holding a message
// still in the outbox is kept until the message leaves it, and every key
// keeps a partition to go to.
func TestManagerRotation(t *testing.T) {
	t.Parallel()
	b := setup(t, partition.Retention{Content: 3 * day, Metadata: 5 * day, Usage: 4 * day, Idempotency: day})
	ctx := t.Context()
	d0 := b.clock.Truncate(day)
	p := func(table string, d int) string { return partition.PeriodName(table, d0.Add(time.Duration(d)*day)) }

	// The partitions migration's minute (for message_stats, its own
	// migration's): the first partition runs for a day from it.
	b0s := map[string]time.Time{}
	for _, table := range partition.Layout() {
		history, err := partition.List(ctx, b.db.Pool, table.Name)
		require.NoError(t, err)
		require.Len(t, history, 3)
		b0s[table.Name] = history[0].To
	}
	b0 := b0s["messages"]
	var err error
	pB0 := func(table string) string { return partition.PeriodName(table, b0s[table]) }
	pFirst := func(table string) string { return partition.PeriodName(table, b0s[table].Add(day)) } // up to day 2

	old := b.message(t, b0.Add(-time.Hour)) // before the migration: _history
	far := b.message(t, d0.Add(10*day+time.Hour))
	require.Equal(t, "messages_future", b.where(t, "messages", far), "beyond the periods: _future")

	// First pass: after the migration's day, up to three days ahead of today.
	pass := b.run(t)
	require.False(t, pass.Skipped)
	for _, table := range partition.Layout() {
		require.Equal(t, []string{table.Name + "_history", pB0(table.Name), pFirst(table.Name), p(table.Name, 2), p(table.Name, 3), table.Name + "_future"},
			b.names(t, table.Name))
	}
	require.Zero(t, pass.Moved, "%s is beyond day 4", far)

	today := b.message(t, b.clock)
	queued := b.message(t, b0.Add(day))
	day2 := b.message(t, d0.Add(2*day+time.Hour))
	_, err = b.db.Pool.Exec(ctx, `INSERT INTO outbox (message_id, account_id, subject, not_before) VALUES ($1, $2, 's', now() + interval '1 day')`,
		queued, b.account)
	require.NoError(t, err)
	for _, table := range []string{"messages", "message_contents", "recipients", "events"} {
		require.Equal(t, "", b.where(t, table, uuid.New()))
		require.Equal(t, table+"_history", b.where(t, table, old))
		require.Equal(t, pB0(table), b.where(t, table, today))
		require.Equal(t, pFirst(table), b.where(t, table, queued))
		require.Equal(t, p(table, 2), b.where(t, table, day2))
		require.Equal(t, table+"_future", b.where(t, table, far))
	}
	require.Equal(t, p("usage_records", 2), b.where(t, "usage_records", day2))
	require.Equal(t, p("idempotency_keys", 2), b.where(t, "idempotency_keys", day2))
	// The counts of an hour are in the partition of that hour: queued's
	// hour began before its own migration's minute plus a day.
	require.Equal(t, "message_stats_history", b.where(t, "message_stats", old))
	require.Less(t, b0.Add(day).Truncate(time.Hour), b0s["message_stats"].Add(day))
	require.Equal(t, pB0("message_stats"), b.where(t, "message_stats", queued))
	require.Equal(t, p("message_stats", 2), b.where(t, "message_stats", day2))
	require.Equal(t, "message_stats_future", b.where(t, "message_stats", far))

	// A week later: periods up to day 11, the row beyond moved into day 10;
	// content older than 3 days is dropped up to the partition of the
	// message still in the outbox, metadata older than 5 days likewise,
	// usage records older than 4 days and idempotency keys older than one.
	b.clock = d0.Add(7*day + time.Hour)
	pass = b.run(t)
	for _, table := range partition.Layout() {
		for d := 4; d <= 10; d++ {
			require.Contains(t, pass.Created, p(table.Name, d))
		}
	}
	require.EqualValues(t, 7, pass.Moved, "the far message's rows in the seven tables")
	for _, table := range []string{"messages", "message_contents", "recipients", "events", "message_stats"} {
		require.Equal(t, p(table, 10), b.where(t, table, far))
	}
	require.ElementsMatch(t, []string{
		"messages_history", pB0("messages"), "recipients_history", pB0("recipients"), "events_history", pB0("events"),
		"message_contents_history", pB0("message_contents"), "message_stats_history",
		"usage_records_history", pB0("usage_records"), pFirst("usage_records"), p("usage_records", 2),
		"idempotency_keys_history", pB0("idempotency_keys"), pFirst("idempotency_keys"), p("idempotency_keys", 2),
		p("idempotency_keys", 3), p("idempotency_keys", 4), p("idempotency_keys", 5),
	}, pass.Dropped)
	// message_stats' partition of the queued message's hour is kept with
	// its messages (a partition of hours holds the messages of an hour
	// more: Table.Span).
	require.ElementsMatch(t, []string{pFirst("messages"), pFirst("recipients"), pFirst("events"), pFirst("message_contents"),
		pB0("message_stats")}, pass.Kept)
	require.Equal(t, "", b.where(t, "message_stats", old))
	require.Equal(t, pB0("message_stats"), b.where(t, "message_stats", queued))
	require.Equal(t, p("message_stats", 2), b.where(t, "message_stats", day2))
	require.Equal(t, []string{"message_stats_past", pB0("message_stats"), pFirst("message_stats"), p("message_stats", 2)},
		b.names(t, "message_stats")[:4])
	for _, table := range []string{"messages", "message_contents", "recipients", "events"} {
		require.Equal(t, "", b.where(t, table, old))
		require.Equal(t, "", b.where(t, table, today))
		require.Equal(t, pFirst(table), b.where(t, table, queued), "in the outbox: kept")
		require.Equal(t, p(table, 2), b.where(t, table, day2), "above a kept partition: kept")
		require.Equal(t, []string{table + "_past", pFirst(table), p(table, 2)}, b.names(t, table)[:3])
	}
	require.Equal(t, "", b.where(t, "usage_records", day2))
	require.Equal(t, []string{"usage_records_past", p("usage_records", 3)}, b.names(t, "usage_records")[:2])

	// The message leaves the outbox: its partitions go at the next pass,
	// content up to day 3, metadata up to day 1.
	_, err = b.db.Pool.Exec(ctx, `DELETE FROM outbox`)
	require.NoError(t, err)
	pass = b.run(t)
	require.Empty(t, pass.Created)
	require.ElementsMatch(t, []string{
		pFirst("messages"), pFirst("recipients"), pFirst("events"), pB0("message_stats"), pFirst("message_stats"),
		pFirst("message_contents"), p("message_contents", 2), p("message_contents", 3),
	}, pass.Dropped)
	require.Empty(t, pass.Kept)
	require.Equal(t, "", b.where(t, "message_contents", queued))
	require.Equal(t, "", b.where(t, "message_contents", day2))
	require.Equal(t, "", b.where(t, "messages", queued))
	require.Equal(t, p("messages", 2), b.where(t, "messages", day2), "metadata outlives content")
	require.Equal(t, "", b.where(t, "message_stats", queued), "the counts go with their messages")
	require.Equal(t, p("message_stats", 2), b.where(t, "message_stats", day2))
	require.Equal(t, []string{"message_contents_past", p("message_contents", 4)}, b.names(t, "message_contents")[:2])

	// Nothing is due: a pass changes nothing.
	pass = b.run(t)
	require.Empty(t, pass.Created)
	require.Empty(t, pass.Dropped)

	// Any key still has a partition: an id older than every partition, one
	// made by another clock far ahead, a random (version 4) id.
	ancient := b.message(t, d0.Add(-300*day))
	require.Equal(t, "messages_past", b.where(t, "messages", ancient))
	ahead := b.message(t, d0.Add(400*day))
	require.Equal(t, "messages_future", b.where(t, "messages", ahead))
	b.messageWithID(t, uuid.New(), b.clock)
}

// TestManagerOneReplicaAtATime: a pass while another replica runs one (it
// holds the advisory lock) does nothing.
func TestManagerOneReplicaAtATime(t *testing.T) {
	t.Parallel()
	b := setup(t, partition.Retention{Content: day, Metadata: day, Usage: day, Idempotency: day})
	conn, err := b.db.Pool.Acquire(t.Context())
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(t.Context(), `SELECT pg_advisory_lock(hashtextextended('emailsender-partitions:' || current_schema(), 0))`)
	require.NoError(t, err)
	pass := b.run(t)
	require.True(t, pass.Skipped)
	require.Len(t, b.names(t, "messages"), 3, "nothing made")

	_, err = conn.Exec(t.Context(), `SELECT pg_advisory_unlock(hashtextextended('emailsender-partitions:' || current_schema(), 0))`)
	require.NoError(t, err)
	pass = b.run(t)
	require.False(t, pass.Skipped)
	require.Len(t, b.names(t, "messages"), 6)
}

// TestManagerPostponesOnLockTimeout: a table held by a long transaction is
// left for the next pass (the manager does not queue every query behind
// its lock for long); the other tables are maintained.
func TestManagerPostponesOnLockTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, partition.Retention{Content: day, Metadata: day, Usage: day, Idempotency: day})
	tx, err := b.db.Pool.Begin(t.Context())
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(t.Context()) }()
	_, err = tx.Exec(t.Context(), `LOCK TABLE events IN ACCESS SHARE MODE`)
	require.NoError(t, err)

	pass, err := b.mgr.RunOnce(t.Context())
	require.ErrorIs(t, err, partition.ErrLockTimeout)
	require.ErrorContains(t, err, "events")
	require.Len(t, b.names(t, "messages"), 6, "the other tables are maintained")
	for _, name := range pass.Created {
		require.NotContains(t, name, "events")
	}

	require.NoError(t, tx.Rollback(t.Context()))
	b.run(t)
	require.Len(t, b.names(t, "events"), 6, "done at the next pass")
}

// TestManagerCatchesUp: after a long time without a pass (or a clock set
// far ahead), the periods missed become one partition, not one each.
func TestManagerCatchesUp(t *testing.T) {
	t.Parallel()
	b := setup(t, partition.Retention{Content: 1000 * day, Metadata: 1000 * day, Usage: 1000 * day, Idempotency: 1000 * day})
	parts, err := partition.List(t.Context(), b.db.Pool, "events")
	require.NoError(t, err)
	b0 := parts[0].To
	b.clock = b.clock.Add(365 * day)
	d := b.clock.Truncate(day)
	b.run(t)
	require.Equal(t, []string{
		"events_history", partition.PeriodName("events", b0), partition.PeriodName("events", b0.Add(day)),
		partition.PeriodName("events", d), partition.PeriodName("events", d.Add(day)),
		partition.PeriodName("events", d.Add(2*day)), partition.PeriodName("events", d.Add(3*day)), "events_future",
	}, b.names(t, "events"))
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     partition.Config
		wantErr string
	}{
		{"defaults", partition.Config{}, ""},
		{"a week", partition.Config{Period: 7 * day, Ahead: 2}, ""},
		{"under an hour", partition.Config{Period: 30 * time.Minute}, "PARTITION_PERIOD"},
		{"not whole minutes", partition.Config{Period: time.Hour + time.Second}, "PARTITION_PERIOD"},
		{"none ahead", partition.Config{Period: day, Ahead: -1}, "PARTITION_AHEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.WithDefaults().Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
	_, err := partition.New(partition.Config{}, partition.Retention{Content: day}, partition.Deps{})
	require.ErrorContains(t, err, "retention")
}

// Message content is compressed with lz4 (migration 0020) in every partition
// of message_contents: those the migrations made and those the manager makes
// later, whatever the period (with pglz where the server has no lz4).
func TestContentCompressedWithLZ4(t *testing.T) {
	t.Parallel()
	b := setup(t, partition.Retention{Content: 1000 * day, Metadata: 1000 * day, Usage: 1000 * day, Idempotency: 1000 * day})
	var lz4 bool
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT 'lz4' = ANY (enumvals) FROM pg_settings WHERE name = 'default_toast_compression'`).Scan(&lz4))
	want, wantAttr := "lz4", "l"
	if !lz4 {
		// A server built without lz4: the migration leaves pglz.
		want, wantAttr = "pglz", ""
	}
	b.clock = b.clock.Add(10 * day)
	b.run(t)
	body := make([]byte, 100<<10)
	for i := range body {
		body[i] = "the quick brown fox jumps over the lazy dog "[i%44]
	}
	for _, at := range []time.Time{b.clock, b.clock.Add(-10 * day), b.clock.Add(2 * day)} {
		id, err := partition.NewMessageID(at)
		require.NoError(t, err)
		_, err = b.db.Pool.Exec(t.Context(), `INSERT INTO message_contents (message_id, account_id, content) VALUES ($1, $2, $3)`, id, b.account, body)
		require.NoError(t, err)
		var method, part string
		require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT pg_column_compression(content), tableoid::regclass::text FROM message_contents WHERE message_id = $1`, id).Scan(&method, &part))
		require.Equal(t, want, method, "content in %s", part)
	}
	rows, err := b.db.Pool.Query(t.Context(), `SELECT c.relname, a.attcompression::text FROM pg_partition_tree('message_contents') t
		JOIN pg_class c ON c.oid = t.relid JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'content'`)
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ Name, Method string }])
	require.NoError(t, err)
	require.Greater(t, len(got), 3)
	for _, p := range got {
		require.Equal(t, wantAttr, p.Method, "%s", p.Name)
	}
}
