package webhook

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
)

// TestInsertLeasesOnlyDeliveriesThatMayGoOut: the fan-out stores claimed
// (leased) only the deliveries that may go out at once: the first of their
// endpoint, message and recipient in the batch, with none earlier pending in
// the table, of an enabled endpoint. The others are due as usual and wait for
// the claim, which keeps their order.
func TestInsertLeasesOnlyDeliveriesThatMayGoOut(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	st := &store{pool: db.Pool}
	now := time.Now().UTC().Truncate(time.Millisecond)
	lease := now.Add(time.Minute)
	account := uuid.NewString()
	_, err := db.Pool.Exec(ctx, `INSERT INTO accounts (id, name) VALUES ($1, 'a')`, account)
	require.NoError(t, err)
	endpoint := func(enabled bool) string {
		id := uuid.NewString()
		require.NoError(t, st.create(ctx, endpoint{ID: id, AccountID: account, URL: "https://example.org/hook", EventTypes: []string{}, Secret: []byte("x"), CreatedAt: now}, 10))
		if !enabled {
			_, err := st.disable(ctx, id, "test", now)
			require.NoError(t, err)
		}
		return id
	}
	on, off := endpoint(true), endpoint(false)
	msg, other := uuid.NewString(), uuid.NewString()
	seq := int64(0)
	d := func(ep, message, rcpt string) delivery {
		seq++
		ev := uuid.NewString()
		return delivery{ID: DeliveryID(ep, ev, rcpt), EndpointID: ep, AccountID: account, EventID: ev, Seq: seq,
			EventType: "message.sent", MessageID: message, Recipient: rcpt, Payload: []byte(`{}`), At: now}
	}

	first := []delivery{
		d(on, msg, "a@example.org"),    // 0: leased
		d(on, msg, "a@example.org"),    // 1: after 0 in the batch
		d(on, msg, "b@example.org"),    // 2: leased (another recipient)
		d(on, other, "a@example.org"),  // 3: leased (another message)
		d(off, msg, "a@example.org"),   // 4: endpoint disabled
		d(on, other, "c@example.org"),  // 5: leased
		d(on, other, "c@example.org"),  // 6: after 5
		d(on, other, "c@example.org"),  // 7: after 6
		d(off, other, "c@example.org"), // 8: endpoint disabled
	}
	leased, err := st.insert(ctx, first, &lease)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{first[0].ID, first[2].ID, first[3].ID, first[5].ID}, leased)

	// Later: an earlier delivery of its key is pending (leased or not).
	second := []delivery{d(on, msg, "a@example.org"), d(on, msg, "new@example.org")}
	leased, err = st.insert(ctx, second, &lease)
	require.NoError(t, err)
	require.Equal(t, []string{second[1].ID}, leased)

	// Without a lease (no room in the pipeline), and a batch stored twice:
	// nothing leased, nothing changed.
	third := d(on, uuid.NewString(), "x@example.org")
	leased, err = st.insert(ctx, []delivery{third}, nil)
	require.NoError(t, err)
	require.Empty(t, leased)
	leased, err = st.insert(ctx, first, &lease)
	require.NoError(t, err)
	require.Empty(t, leased)

	due := map[string]time.Time{}
	rows, err := db.Pool.Query(ctx, `SELECT id::text, next_attempt_at FROM webhook_deliveries`)
	require.NoError(t, err)
	for rows.Next() {
		var id string
		var at time.Time
		require.NoError(t, rows.Scan(&id, &at))
		due[id] = at
	}
	require.NoError(t, rows.Err())
	require.Len(t, due, len(first)+len(second)+1)
	for i, want := range []time.Time{lease, now, lease, lease, now, lease, now, now, now} {
		require.True(t, want.Equal(due[first[i].ID]), "delivery %d due %s, want %s", i, due[first[i].ID], want)
	}
	require.True(t, now.Equal(due[second[0].ID]))
	require.True(t, now.Equal(due[third.ID]))

	// The claim takes none of the leased, and of each key only the oldest.
	cs, err := st.claim(ctx, now, time.Minute, 100)
	require.NoError(t, err)
	var got []string
	for _, c := range cs {
		got = append(got, c.ID)
	}
	require.ElementsMatch(t, []string{third.ID}, got)
}

// TestHolds: a delivery is held once its endpoint answered 410 (until the
// recorder disabled it) and when its claim began before the endpoint was
// disabled; a claim that began later goes out (the endpoint was enabled
// again in between).
func TestHolds(t *testing.T) {
	h := newHolds(time.Minute)
	before := time.Now()
	require.False(t, h.held("e", before))
	h.gone("e")
	require.True(t, h.held("e", before))
	require.True(t, h.held("e", time.Now()), "answered 410: held until disabled")
	require.False(t, h.held("other", before))
	time.Sleep(time.Millisecond)
	h.disabled("e")
	require.True(t, h.held("e", before), "claimed before the endpoint was disabled")
	time.Sleep(time.Millisecond)
	require.False(t, h.held("e", time.Now()), "claimed after: the endpoint was enabled again")
}

// TestClaimReadsDoneDeliveriesOnce: a claim reads each version of the
// deliveries done before it at most once (they stay in the indexes until
// VACUUM, and where a long transaction holds them back, scans cannot mark
// them dead), not once per delivery it takes; also on a plan made while the
// table was empty (the dispatcher polls an empty table from the start, and
// pgx keeps the generic plan a connection makes after five runs).
func TestClaimReadsDoneDeliveriesOnce(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	// One connection: the claims share one prepared statement and its plans,
	// and the block counts below are that backend's.
	cfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(t, err)
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	st := &store{pool: pool}
	now := time.Now().UTC()
	account, ep, msg := uuid.NewString(), uuid.NewString(), uuid.NewString()
	_, err = pool.Exec(ctx, `INSERT INTO accounts (id, name) VALUES ($1, 'a')`, account)
	require.NoError(t, err)
	require.NoError(t, st.create(ctx, endpoint{ID: ep, AccountID: account, URL: "https://example.org/hook", EventTypes: []string{}, Secret: []byte("x"), CreatedAt: now}, 10))
	for range 6 {
		cs, err := st.claim(ctx, now, time.Minute, 100)
		require.NoError(t, err)
		require.Empty(t, cs)
	}

	// Deliveries of one message, each to a recipient of its own, due now:
	// done (stored, then succeeded) or pending.
	add := func(from, n int, done bool) {
		_, err := pool.Exec(ctx, `
			INSERT INTO webhook_deliveries (id, endpoint_id, account_id, event_id, seq, event_type, message_id, recipient,
				payload, next_attempt_at, created_at, updated_at)
			SELECT gen_random_uuid(), $1, $2, gen_random_uuid()::text, s, 'message.delivered', $3, 'r' || s || '@example.org',
				'\x7b7d', $4, $4, $4
			FROM generate_series($5::int, $5::int + $6::int - 1) s`, ep, account, msg, now.Add(-time.Minute), from, n)
		require.NoError(t, err)
		if done {
			_, err := pool.Exec(ctx, `UPDATE webhook_deliveries SET state = 'succeeded', attempts = 1 WHERE state = 'pending'`)
			require.NoError(t, err)
		}
	}
	// entries is how many index entries of webhook_deliveries the
	// connection's scans have read so far (pg_stat_force_next_flush: its
	// counts are flushed as its next transaction ends).
	entries := func() int64 {
		_, err := pool.Exec(ctx, `SELECT pg_stat_force_next_flush()`)
		require.NoError(t, err)
		var n int64
		require.NoError(t, db.Pool.QueryRow(ctx, `
			SELECT sum(idx_tup_read) FROM pg_stat_user_indexes
			WHERE schemaname = current_schema() AND relname = 'webhook_deliveries'`).Scan(&n))
		return n
	}
	const done, batch = 20000, 200
	add(1, done, true)
	for i := range 2 {
		add(done+1+i*batch, batch, false)
		before := entries()
		cs, err := st.claim(ctx, now, time.Minute, batch)
		require.NoError(t, err)
		require.Len(t, cs, batch)
		read := entries() - before
		t.Logf("claim %d: %d index entries read for %d deliveries behind %d done", i+1, read, batch, done)
		limit := int64(2*done + 20*batch)
		require.Less(t, read, limit, "claim %d", i+1)
	}
}
