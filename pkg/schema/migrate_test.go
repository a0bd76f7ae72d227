package schema_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/partition"
	"github.com/namirasoft/email-sender/pkg/schema"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
)

// TestMigratePartitionsKeepsData migrates a database of the release before
// the partitions migration (NNNN_partitions.sql), seeded with rows of the
// shapes the code and the tests write (UUIDv7 and random ids, content and
// purged content, events with retry times, usage records, idempotency
// keys), to the partitioned schema and checks that every row is there,
// that content moved to message_contents, and that every table is
// partitioned as pkg/partition's layout says.
func TestMigratePartitionsKeepsData(t *testing.T) {
	t.Parallel()
	ms, err := schema.Migrations()
	require.NoError(t, err)
	version := 0
	for _, m := range ms {
		if strings.HasSuffix(m.Name, "_partitions") {
			version = m.Version
		}
	}
	require.NotZero(t, version, "the partitions migration")
	db := pgtest.NewEmpty(t)
	ctx := context.Background()
	_, err = schema.MigrateTo(ctx, db.Pool, version-1)
	require.NoError(t, err)

	acc, prov := uuid.New(), uuid.New()
	_, err = db.Pool.Exec(ctx, `INSERT INTO accounts (id, name) VALUES ($1, 'acme')`, acc)
	require.NoError(t, err)
	now := time.Now().UTC().Truncate(time.Microsecond)
	v7 := func(at time.Time) uuid.UUID {
		id, err := partition.NewMessageID(at)
		require.NoError(t, err)
		return id
	}
	type msg struct {
		id      uuid.UUID
		content []byte
		created time.Time
	}
	msgs := []msg{
		{v7(now.Add(-40 * 24 * time.Hour)), nil, now.Add(-40 * 24 * time.Hour)}, // content purged
		{v7(now.Add(-time.Hour)), []byte("job one"), now.Add(-time.Hour)},
		{uuid.Must(uuid.NewV7()), []byte("job two"), now},
		{uuid.New(), []byte("random id"), now.Add(-time.Minute)}, // tests insert random ids
		{uuid.MustParse("ffffffff-ffff-4fff-bfff-ffffffffffff"), nil, now},
	}
	for i, m := range msgs {
		_, err := db.Pool.Exec(ctx, `
			INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, from_name, subject,
				tags, recipient_count, size_bytes, content, send_at, attempts, provider_message_id, last_error, created_at, updated_at)
			VALUES ($1, $2, $3, 'smtp', 4, 'a@example.com', 'A', 'hello', '{"k":"v"}', 2, 10, $4, $5, 1, $6, 'boom', $7, $7)`,
			m.id, acc, prov, m.content, now.Add(time.Hour), "pmid-"+m.id.String(), m.created)
		require.NoError(t, err)
		for idx, addr := range []string{"to@example.com", "cc@example.com"} {
			_, err := db.Pool.Exec(ctx, `
				INSERT INTO recipients (message_id, idx, account_id, kind, address, name, status, status_key, detail, updated_at)
				VALUES ($1, $2, $3, $4, $5, 'N', 4, 77, 'ok', $6)`, m.id, idx, acc, []string{"to", "cc"}[idx], addr, m.created)
			require.NoError(t, err)
		}
		_, err = db.Pool.Exec(ctx, `
			INSERT INTO events (id, message_id, account_id, type, status, occurred_at, attempt, recipients, provider_response, error_class, detail, retry_at)
			VALUES ($1, $2, $3, 'RETRY_SCHEDULED', 7, $4, 2, '{to@example.com}', '451 later', 'transient', 'd', $4)`,
			uuid.New(), m.id, acc, m.created)
		require.NoError(t, err)
		_, err = db.Pool.Exec(ctx, `
			INSERT INTO idempotency_keys (account_id, key, request_hash, message_id, status, created_at)
			VALUES ($1, $2, '\x0102', $3, 1, $4)`, acc, "key-"+string(rune('a'+i)), m.id, m.created)
		require.NoError(t, err)
		_, err = db.Pool.Exec(ctx, `
			INSERT INTO usage_records (id, account_id, at, method, key_id, client_ip, user_agent, result, duration_ms)
			VALUES ($1, $2, $3, '/emailsender.v1.SendService/SendEmail', 'k', '10.0.0.1', 'ua', 'OK', 1.5)`,
			uuid.Must(uuid.NewV7()), acc, m.created)
		require.NoError(t, err)
	}
	counts := func() map[string]int {
		out := map[string]int{}
		for _, table := range []string{"messages", "recipients", "events", "idempotency_keys", "usage_records"} {
			var n int
			require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n))
			out[table] = n
		}
		return out
	}
	before := counts()

	applied, err := schema.Migrate(ctx, db.Pool)
	require.NoError(t, err)
	require.Contains(t, applied, version)
	require.Equal(t, before, counts(), "every row survives")

	for _, m := range msgs {
		var (
			subject, lastError, pmid string
			created                  time.Time
			tags                     map[string]string
		)
		require.NoError(t, db.Pool.QueryRow(ctx, `
			SELECT subject, last_error, provider_message_id, created_at, tags FROM messages WHERE id = $1 AND account_id = $2`,
			m.id, acc).Scan(&subject, &lastError, &pmid, &created, &tags))
		require.Equal(t, "hello", subject)
		require.Equal(t, "boom", lastError)
		require.Equal(t, "pmid-"+m.id.String(), pmid)
		require.True(t, m.created.Equal(created))
		require.Equal(t, map[string]string{"k": "v"}, tags)

		var content []byte
		err := db.Pool.QueryRow(ctx, `SELECT content FROM message_contents WHERE message_id = $1 AND account_id = $2`, m.id, acc).Scan(&content)
		if m.content == nil {
			require.ErrorContains(t, err, "no rows", "purged content stays purged")
		} else {
			require.NoError(t, err)
			require.Equal(t, m.content, content)
		}
		var detail, class string
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT e.detail, e.error_class FROM events e WHERE e.message_id = $1`, m.id).Scan(&detail, &class))
		require.Equal(t, "d", detail)
		require.Equal(t, "transient", class)
	}
	var gone bool
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT to_regclass('messages_0011') IS NULL`).Scan(&gone))
	require.True(t, gone, "the old table is dropped")

	// The layout's tables, as pkg/partition reads them: what existed is in
	// _history, the first day after the migration has a partition, the rest
	// goes to _future until the manager makes periods.
	var b0 time.Time
	for _, table := range partition.Layout() {
		parts, err := partition.List(ctx, db.Pool, table.Name)
		require.NoError(t, err, table.Name)
		require.Len(t, parts, 3, table.Name)
		b0 = parts[0].To
		require.WithinDuration(t, time.Now(), b0, 2*time.Minute)
		require.Equal(t, []partition.Partition{
			{Name: table.Name + "_history", To: b0},
			{Name: partition.PeriodName(table.Name, b0), From: b0, To: b0.Add(24 * time.Hour)},
			{Name: table.Name + "_future", From: b0.Add(24 * time.Hour)},
		}, []partition.Partition{
			{Name: parts[0].Name, From: parts[0].From, To: parts[0].To},
			{Name: parts[1].Name, From: parts[1].From, To: parts[1].To},
			{Name: parts[2].Name, From: parts[2].From, To: parts[2].To},
		}, table.Name)
	}
	for _, m := range []msg{msgs[0], msgs[1], msgs[2], msgs[4]} {
		var part string
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT tableoid::regclass::text FROM messages WHERE id = $1`, m.id).Scan(&part))
		want := "messages_history"
		switch m.id {
		case msgs[2].id: // made in the migration's minute
			want = partition.PeriodName("messages", b0)
		case msgs[4].id:
			want = "messages_future" // above every period
		}
		require.Equal(t, want, part, m.id)
	}

	// Inserts go on working, and the keys are unique as before.
	id := v7(time.Now())
	_, err = db.Pool.Exec(ctx, `INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, recipient_count, size_bytes, created_at, updated_at)
		VALUES ($1, $2, $3, 'smtp', 1, 'a@example.com', 1, 1, now(), now())`, id, acc, prov)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, recipient_count, size_bytes, created_at, updated_at)
		VALUES ($1, $2, $3, 'smtp', 1, 'a@example.com', 1, 1, now(), now())`, msgs[1].id, acc, prov)
	require.ErrorContains(t, err, "duplicate key")
}

// TestMigrateMessageStatsPartitionsKeepsData migrates a database with
// GetStats' rollup (message_stats, before its partitions migration) to the
// latest schema: every count is kept, in the partition of its hour, and the
// fold's upsert goes on working.
func TestMigrateMessageStatsPartitionsKeepsData(t *testing.T) {
	t.Parallel()
	ms, err := schema.Migrations()
	require.NoError(t, err)
	version := 0
	for _, m := range ms {
		if strings.HasSuffix(m.Name, "_message_stats_retention") {
			version = m.Version
		}
	}
	require.NotZero(t, version, "the message_stats partitions migration")
	db := pgtest.NewEmpty(t)
	ctx := context.Background()
	_, err = schema.MigrateTo(ctx, db.Pool, version-1)
	require.NoError(t, err)

	acc, prov := uuid.New(), uuid.New()
	hour := time.Now().UTC().Truncate(time.Hour)
	hours := []time.Time{hour.Add(-100 * 24 * time.Hour), hour.Add(-time.Hour), hour, hour.Add(3 * 24 * time.Hour)}
	for i, h := range hours {
		_, err := db.Pool.Exec(ctx, `INSERT INTO message_stats (account_id, hour, provider_id, status, count) VALUES ($1, $2, $3, $4, $5)`,
			acc, h, prov, 4+i%2, 10+i)
		require.NoError(t, err)
	}
	type row struct {
		Hour   time.Time
		Status int16
		Count  int64
		Part   string
	}
	read := func() []row {
		rows, err := db.Pool.Query(ctx, `SELECT hour, status, count, tableoid::regclass::text FROM message_stats ORDER BY hour`)
		require.NoError(t, err)
		out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
		require.NoError(t, err)
		for i := range out {
			out[i].Hour = out[i].Hour.UTC()
		}
		return out
	}
	before := read()
	require.Len(t, before, 4)

	applied, err := schema.Migrate(ctx, db.Pool)
	require.NoError(t, err)
	require.Contains(t, applied, version)
	after := read()
	require.Len(t, after, 4)
	for i := range before {
		require.Equal(t, before[i].Hour, after[i].Hour)
		require.Equal(t, before[i].Status, after[i].Status)
		require.Equal(t, before[i].Count, after[i].Count)
	}
	require.Equal(t, []string{"message_stats_history", "message_stats_history", "message_stats_history", "message_stats_future"},
		[]string{after[0].Part, after[1].Part, after[2].Part, after[3].Part})
	var gone bool
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT to_regclass('message_stats_0014') IS NULL`).Scan(&gone))
	require.True(t, gone, "the old table is dropped")

	// The fold's upsert on the partitioned table.
	_, err = db.Pool.Exec(ctx, `INSERT INTO message_stats AS s (account_id, hour, provider_id, status, count) VALUES ($1, $2, $3, 4, 5)
		ON CONFLICT (account_id, hour, provider_id, status) DO UPDATE SET count = s.count + excluded.count`, acc, hours[0], prov)
	require.NoError(t, err)
	var n int64
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count FROM message_stats WHERE account_id = $1 AND hour = $2 AND status = 4`,
		acc, hours[0]).Scan(&n))
	require.EqualValues(t, 15, n)
}
