package report

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/partition"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
)

func TestSplitHours(t *testing.T) {
	t.Parallel()
	at := func(hhmm string) time.Time {
		ts, err := time.Parse("2006-01-02 15:04", "2030-03-04 "+hhmm)
		require.NoError(t, err)
		return ts
	}
	tests := []struct {
		name       string
		start, end string
		bucket     time.Duration
		want       []string
	}{
		{"whole hours", "08:00", "11:00", time.Hour, nil},
		{"partial last hour", "08:00", "10:30", time.Hour, []string{"10:00"}},
		{"day buckets from an hour", "01:00", "23:59", 24 * time.Hour, []string{"23:00"}},
		{"unaligned start, hour buckets", "08:20", "10:20", time.Hour, []string{"08:00", "09:00", "10:00"}},
		{"unaligned start, 2 hour buckets", "08:20", "12:20", 2 * time.Hour, []string{"08:00", "10:00", "12:00"}},
		{"90 minute buckets", "08:00", "12:00", 90 * time.Minute, []string{"09:00"}},
		{"15 minute buckets", "08:00", "09:30", 15 * time.Minute, []string{"08:00", "09:00"}},
		{"within an hour", "08:10", "08:50", time.Hour, []string{"08:00"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, h := range splitHours(at(tt.start), at(tt.end), tt.bucket) {
				got = append(got, h.Format("15:04"))
			}
			require.Equal(t, tt.want, got)
		})
	}
}

func TestPieces(t *testing.T) {
	t.Parallel()
	at := func(hhmm string) time.Time {
		ts, err := time.Parse("2006-01-02 15:04", "2030-03-04 "+hhmm)
		require.NoError(t, err)
		return ts
	}
	start, end := at("08:31"), at("11:20")
	spans := []span{{at("08:00"), at("08:31")}, {at("08:31"), at("10:10")}, {at("11:10"), at("12:00")}}
	var got []string
	for _, p := range pieces(spans, start, end, 40*time.Minute) {
		got = append(got, p.lo.Format("15:04")+"-"+p.hi.Format("15:04"))
	}
	// Cut at start, whole hours, the buckets from 08:31 (09:11, 09:51,
	// 10:31, 11:11) and end.
	require.Equal(t, []string{"08:00-08:31", "08:31-09:00", "09:00-09:11", "09:11-09:51", "09:51-10:00", "10:00-10:10",
		"11:10-11:11", "11:11-11:20", "11:20-12:00"}, got)
}

func TestPlanHours(t *testing.T) {
	t.Parallel()
	at := func(hhmm string) time.Time {
		ts, err := time.Parse("2006-01-02 15:04", "2030-03-04 "+hhmm)
		require.NoError(t, err)
		return ts
	}
	hhmm := func(ts []time.Time) []string {
		out := []string{}
		for _, x := range ts {
			out = append(out, x.Format("15:04"))
		}
		return out
	}
	tests := []struct {
		name                        string
		start, end                  string
		bucket                      time.Duration
		counted, derived, derivedAt []string
		spans                       []string
	}{
		{"whole hours", "08:00", "11:00", time.Hour, []string{}, []string{}, []string{}, nil},
		{"end now: the rest of its hour is read", "08:00", "10:50", time.Hour,
			[]string{}, []string{"10:00"}, []string{"10:00"}, []string{"10:50-11:00"}},
		{"end early in its hour: counted", "08:00", "10:10", time.Hour,
			[]string{"10:00"}, []string{}, []string{}, []string{"10:00-10:10"}},
		{"start at :53, hour buckets: 7 minutes an hour", "08:53", "10:53", time.Hour,
			[]string{"08:00"}, []string{"09:00", "10:00"}, []string{"09:00", "10:00"},
			[]string{"08:53-09:00", "09:53-10:00", "10:53-11:00"}},
		{"start at :07, hour buckets", "08:07", "10:07", time.Hour,
			[]string{"10:00"}, []string{"08:00", "09:00"}, []string{"08:07", "09:07"},
			[]string{"08:00-08:07", "09:00-09:07", "10:00-10:07"}},
		{"15 minute buckets: the largest piece is derived", "08:00", "09:30", 15 * time.Minute,
			[]string{"09:00"}, []string{"08:00"}, []string{"08:00"}, []string{"08:15-09:30"}},
		{"within an hour: the 20 minutes around it", "08:10", "08:50", time.Hour,
			[]string{}, []string{"08:00"}, []string{"08:10"}, []string{"08:00-08:10", "08:50-09:00"}},
		{"within an hour, short", "08:10", "08:20", time.Hour, []string{"08:00"}, []string{}, []string{}, []string{"08:10-08:20"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := planHours(at(tt.start), at(tt.end), tt.bucket)
			require.Equal(t, tt.counted, hhmm(p.counted), "counted")
			require.Equal(t, tt.derived, hhmm(p.derived), "derived")
			require.Equal(t, tt.derivedAt, hhmm(p.derivedAt), "derivedAt")
			var spans []string
			for _, s := range p.spans {
				spans = append(spans, s.lo.Format("15:04")+"-"+s.hi.Format("15:04"))
			}
			require.Equal(t, tt.spans, spans, "spans")
		})
	}
}

// TestStatsRollupExact checks GetStats' counts against a plain count of the
// messages, whatever the range and bucket, while changes are pending, partly
// folded and all folded, after inserts and status and provider changes.
func TestStatsRollupExact(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	s := &store{pool: db.Pool}
	account, other := uuid.NewString(), uuid.NewString()
	providers := []string{uuid.NewString(), uuid.NewString()}
	statuses := []msgstatus.Status{msgstatus.Queued, msgstatus.Sent, msgstatus.Delivered, msgstatus.Bounced, msgstatus.Failed}
	base := time.Date(2030, 3, 4, 0, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, a := range []string{account, other} {
		_, err := db.Pool.Exec(ctx, `INSERT INTO accounts (id, name) VALUES ($1, $2)`, a, "account "+a)
		require.NoError(t, err)
	}

	insert := func(n int) {
		b := &pgx.Batch{}
		for range n {
			acct := account
			if rng.IntN(5) == 0 {
				acct = other
			}
			created := base.Add(time.Duration(rng.Int64N(int64(30 * time.Hour))))
			id, err := partition.NewMessageID(created)
			require.NoError(t, err)
			b.Queue(`INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address,
				recipient_count, size_bytes, created_at, updated_at)
				VALUES ($1, $2, $3, 'sandbox', $4, 'a@example.com', 1, 1, $5, $5)`,
				id, acct, providers[rng.IntN(2)], int16(statuses[rng.IntN(len(statuses))]), created)
		}
		require.NoError(t, db.Pool.SendBatch(ctx, b).Close())
	}
	insert(300)
	// As the report applies a batch: one statement moving many messages.
	_, err := db.Pool.Exec(ctx, `UPDATE messages SET status = $1 WHERE status = $2 AND created_at < $3`,
		int16(msgstatus.Delivered), int16(msgstatus.Sent), base.Add(20*time.Hour))
	require.NoError(t, err)
	// A failover: the provider changes.
	_, err = db.Pool.Exec(ctx, `UPDATE messages SET provider_id = $1 WHERE status = $2`, providers[1], int16(msgstatus.Queued))
	require.NoError(t, err)
	// An update that changes no count.
	_, err = db.Pool.Exec(ctx, `UPDATE messages SET attempts = attempts + 1`)
	require.NoError(t, err)

	type req struct {
		start, end time.Duration // after base
		bucket     time.Duration
		provider   string
	}
	reqs := []req{
		{0, 30 * time.Hour, time.Hour, ""},
		{0, 30 * time.Hour, 24 * time.Hour, ""},
		{2 * time.Hour, 29*time.Hour + 13*time.Minute, time.Hour, ""},
		{37 * time.Minute, 26*time.Hour + 5*time.Minute, time.Hour, ""},
		{37 * time.Minute, 26*time.Hour + 5*time.Minute, 6 * time.Hour, providers[0]},
		{3 * time.Hour, 9 * time.Hour, 15 * time.Minute, ""},
		{time.Hour, 28 * time.Hour, 90 * time.Minute, providers[1]},
		{5*time.Hour + 10*time.Minute, 5*time.Hour + 50*time.Minute, time.Hour, ""},
		// Unaligned starts whose split hours are derived from the rollup
		// less the messages of their smaller pieces (planHours).
		{53 * time.Minute, 24*time.Hour + 53*time.Minute, time.Hour, ""},
		{31 * time.Minute, 24*time.Hour + 31*time.Minute, time.Hour, providers[1]},
		{7 * time.Minute, 25*time.Hour + 50*time.Minute, time.Hour, ""},
		{20 * time.Minute, 29*time.Hour + 20*time.Minute, 90 * time.Minute, ""},
		{50 * time.Minute, 12*time.Hour + 50*time.Minute, 20 * time.Minute, ""},
		{2*time.Hour + 45*time.Minute, 27*time.Hour + 15*time.Minute, 2 * time.Hour, ""},
		{time.Hour, 29*time.Hour + 55*time.Minute, time.Hour, ""},
		{10 * time.Minute, 30 * time.Hour, 24 * time.Hour, providers[0]},
		// More pieces than maxPieceScans: read as spans, grouped in SQL.
		{7 * time.Minute, 29 * time.Hour, 15 * time.Minute, ""},
	}
	check := func(stage string) {
		t.Helper()
		for _, r := range reqs {
			start, end := base.Add(r.start), base.Add(r.end)
			got, err := s.stats(ctx, account, start, end, r.bucket, r.provider)
			require.NoError(t, err)
			rows, err := db.Pool.Query(ctx, `
				SELECT date_bin(make_interval(secs => $4::double precision), created_at, $2), provider_id::text, status, count(*)
				FROM messages
				WHERE account_id = $1 AND created_at >= $2 AND created_at < $3 AND ($5 = '' OR provider_id = NULLIF($5, '')::uuid)
				GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`, account, start, end, r.bucket.Seconds(), r.provider)
			require.NoError(t, err)
			var want []statsRow
			var w statsRow
			var st int16
			_, err = pgx.ForEachRow(rows, []any{&w.bucket, &w.providerID, &st, &w.count}, func() error {
				w.bucket, w.status = w.bucket.UTC(), msgstatus.Status(st)
				want = append(want, w)
				return nil
			})
			require.NoError(t, err)
			require.NotEmpty(t, want)
			require.Equal(t, want, got, "%s: %+v", stage, r)
		}
	}
	pending := func() int {
		var n int
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM message_stats_pending`).Scan(&n))
		return n
	}

	check("all pending")
	n, err := s.foldStats(ctx, 7)
	require.NoError(t, err)
	require.Equal(t, 7, n)
	check("partly folded")
	for pending() > 0 {
		_, err := s.foldStats(ctx, 50)
		require.NoError(t, err)
	}
	check("folded")
	var zeros int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM message_stats WHERE count = 0`).Scan(&zeros))
	require.Zero(t, zeros, "counts that reached zero are deleted")

	// More changes after a fold: pending and folded rows add up.
	insert(50)
	_, err = db.Pool.Exec(ctx, `UPDATE messages SET status = $1 WHERE status = $2`, int16(msgstatus.Sent), int16(msgstatus.Queued))
	require.NoError(t, err)
	check("folded and pending")
	for pending() > 0 {
		_, err := s.foldStats(ctx, 1000)
		require.NoError(t, err)
	}
	check("folded again")
}

// TestStatsFoldOneAtATime: a fold that finds another under way moves nothing.
func TestStatsFoldOneAtATime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	s := &store{pool: db.Pool}
	account := uuid.NewString()
	_, err := db.Pool.Exec(ctx, `INSERT INTO accounts (id, name) VALUES ($1, $2)`, account, "account "+account)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address,
		recipient_count, size_bytes, created_at, updated_at)
		VALUES ($1, $2, $3, 'sandbox', 1, 'a@example.com', 1, 1, now(), now())`,
		uuid.Must(uuid.NewV7()), account, uuid.NewString())
	require.NoError(t, err)

	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('emailsender-message-stats:' || current_schema(), 0))`)
	require.NoError(t, err)
	n, err := s.foldStats(ctx, 10)
	require.NoError(t, err)
	require.Zero(t, n)
	require.NoError(t, tx.Rollback(ctx))

	n, err = s.foldStats(ctx, 10)
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

// TestStatsFoldDropsDeletedAccounts: the pending changes of an account
// deleted meanwhile (DeleteAccountData) are dropped, not folded back in.
func TestStatsFoldDropsDeletedAccounts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	s := &store{pool: db.Pool}
	kept, gone := uuid.NewString(), uuid.NewString()
	for _, a := range []string{kept, gone} {
		_, err := db.Pool.Exec(ctx, `INSERT INTO accounts (id, name) VALUES ($1, $2)`, a, "account "+a)
		require.NoError(t, err)
		_, err = db.Pool.Exec(ctx, `INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address,
			recipient_count, size_bytes, created_at, updated_at)
			VALUES ($1, $2, $3, 'sandbox', 1, 'a@example.com', 1, 1, now(), now())`,
			uuid.Must(uuid.NewV7()), a, uuid.NewString())
		require.NoError(t, err)
	}
	_, err := db.Pool.Exec(ctx, `DELETE FROM accounts WHERE id = $1`, gone)
	require.NoError(t, err)
	n, err := s.foldStats(ctx, 10)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	rows, err := db.Pool.Query(ctx, `SELECT account_id::text FROM message_stats`)
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{kept}, got)
}

// TestDenseStatsMatchesSort: the dense sum and the sorted one agree, and
// the dense one declines what does not fit its array.
func TestDenseStatsMatchesSort(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	start := time.Date(2030, 3, 4, 0, 0, 0, 0, time.UTC)
	ids := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	order := []int{2, 0, 1}
	const nb = 40
	var rows []countRow
	for range 2000 {
		rows = append(rows, countRow{bucket: rng.Int64N(nb), provider: rng.IntN(3), status: int16(rng.IntN(10)), count: rng.Int64N(7) - 3})
	}
	dense, ok := denseStats(rows, order, ids, nb, start, time.Hour)
	require.True(t, ok)
	require.Equal(t, sortStats(rows, order, ids, start, time.Hour), dense)
	_, ok = denseStats(append(rows, countRow{bucket: 1, status: statusSlots}), order, ids, nb, start, time.Hour)
	require.False(t, ok)
}
