package report

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/partition"
	"github.com/namirasoft/email-sender/pkg/pgstats"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/reputation"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
)

// TestApplyIndexBoundOnEmptyStatistics: applying a batch of events reads
// the rows of its messages by primary key, whatever the statistics say. The
// statistics here say every table is empty (ANALYZE on empty tables, as
// after a VACUUM ANALYZE of emptied tables, with autovacuum off), the plans
// are generic ones made then (force_generic_plan: what pgx's prepared
// statements keep after five runs), and the tables then hold 20,000
// messages. A statement that scans an index or a table in full, filtering
// by id (the plan a generic plan on "empty" tables made of id = ANY(...):
// a full scan of another index, 3 s per batch in the end-to-end bench), reads
// 20,000 entries per batch; index-bound, a few per event.
func TestApplyIndexBoundOnEmptyStatistics(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	// One connection: its prepared statements and their plans, and the
	// counts below are that backend's.
	cfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(t, err)
	cfg.MaxConns = 1
	cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	s := &store{pool: pool, reputation: &reputation.Config{Window: 24 * time.Hour}}

	account, provider := uuid.NewString(), uuid.NewString()
	_, err = db.Pool.Exec(ctx, `INSERT INTO accounts (id, name) VALUES ($1, 'a')`, account)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `INSERT INTO provider_configs (id, account_id, name, kind) VALUES ($1, $2, 'smtp', 'smtp')`, provider, account)
	require.NoError(t, err)
	now := time.Now().UTC()
	// add stores n queued messages of one recipient each.
	add := func(n int) []string {
		ids := make([]string, n)
		for i := range ids {
			id, err := partition.NewMessageID(now)
			require.NoError(t, err)
			ids[i] = id.String()
		}
		_, err := db.Pool.Exec(ctx, `
			INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, recipient_count, size_bytes, created_at, updated_at)
			SELECT id, $2, $3, 'smtp', $4, 'news@example.com', 1, 1024, $5, $5 FROM unnest($1::uuid[]) AS id`,
			ids, account, provider, int16(msgstatus.Queued), now)
		require.NoError(t, err)
		_, err = db.Pool.Exec(ctx, `
			INSERT INTO recipients (message_id, account_id, idx, kind, address, status, status_key, updated_at)
			SELECT id, $2, 0, 'to', 'someone@example.org', $3, $4, $5 FROM unnest($1::uuid[]) AS id`,
			ids, account, int16(msgstatus.Queued), msgstatus.Key(msgstatus.Queued, 0), now)
		require.NoError(t, err)
		return ids
	}
	// events are the events of ids of the given types, as ingest and the
	// worker publish them.
	events := func(ids []string, types ...string) []event {
		var out []event
		for _, id := range ids {
			for i, typ := range types {
				e := event{messageID: id, accountID: account, typ: typ, attempt: 1, occurredAt: now.Add(time.Duration(i) * time.Millisecond)}
				switch typ {
				case queue.EventAccepted:
					e.status, e.attempt = msgstatus.Queued, 0
				case queue.EventStarted:
					e.status = msgstatus.Sending
				case queue.EventSent:
					e.status, e.providerResponse = msgstatus.Sent, "250 2.0.0 Ok: queued"
				}
				e.id = queue.EventID(id, int(e.attempt), typ, "")
				out = append(out, e)
			}
		}
		return out
	}
	apply := func(evs []event) {
		t.Helper()
		out, _, err := s.apply(ctx, evs)
		require.NoError(t, err)
		for i, o := range out {
			require.Equal(t, outcomeApplied, o, "event %d", i)
		}
	}
	// read is how many rows and index entries of messages, recipients and
	// events the connection's scans have read so far
	// (pg_stat_force_next_flush: its counts are flushed as its next
	// transaction ends).
	read := func() int64 {
		_, err := pool.Exec(ctx, `SELECT pg_stat_force_next_flush()`)
		require.NoError(t, err)
		var n int64
		require.NoError(t, db.Pool.QueryRow(ctx, `
			SELECT coalesce((SELECT sum(seq_tup_read) FROM pg_stat_user_tables
				WHERE schemaname = current_schema() AND relname ~ '^(messages|recipients|events)_'), 0)
			+ coalesce((SELECT sum(idx_tup_read) FROM pg_stat_user_indexes
				WHERE schemaname = current_schema() AND relname ~ '^(messages|recipients|events)_'), 0)`).Scan(&n))
		return n
	}

	// Statistics that say empty: the tables held messages, which were
	// deleted, and VACUUM ANALYZE ran while an older transaction was open (its
	// snapshot keeps the dead rows, so the tables keep their pages): no live
	// rows in all those pages, so the planner believes any number of pages
	// holds none.
	add(2000)
	old, err := db.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	require.NoError(t, err)
	_, err = old.Exec(ctx, `SELECT count(*) FROM accounts`)
	require.NoError(t, err)
	for _, table := range []string{"events", "recipients", "messages"} {
		_, err = db.Pool.Exec(ctx, `DELETE FROM `+table)
		require.NoError(t, err)
	}
	_, err = db.Pool.Exec(ctx, `VACUUM ANALYZE messages, recipients, events, reputation_counts`)
	require.NoError(t, err)
	require.NoError(t, old.Rollback(ctx))

	// The plans are made on the "empty" tables.
	for range 2 {
		ids := add(2)
		apply(events(ids, queue.EventAccepted))
		apply(events(ids, queue.EventStarted, queue.EventSent))
	}
	const stored, batch = 20000, 64
	add(stored)
	// The report's loop (runAnalyze) finds the tables whose statistics
	// undercount them, once PostgreSQL's counts of their rows are current, and
	// analyzes them; the plans made on the old statistics are replanned.
	deadline := time.Now().Add(30 * time.Second)
	for {
		analyzed, err := pgstats.Refresh(ctx, db.Pool, keyedTables...)
		require.NoError(t, err)
		if slices.ContainsFunc(analyzed, func(t string) bool { return strings.Contains(t, ".messages_") }) {
			t.Logf("analyzed %v", analyzed)
			break
		}
		require.True(t, time.Now().Before(deadline), "the statistics of messages were not refreshed")
		time.Sleep(200 * time.Millisecond)
	}
	for i := range 2 {
		ids := add(batch)
		for _, step := range []struct {
			name  string
			types []string
		}{
			{"acceptance", []string{queue.EventAccepted}},
			{"delivery", []string{queue.EventStarted, queue.EventSent}},
		} {
			evs := events(ids, step.types...)
			before := time.Now()
			n := read()
			apply(evs)
			got := read() - n
			t.Logf("batch %d, %s: %d events, %d rows and index entries read behind %d messages, %s", i+1, step.name, len(evs), got, stored, time.Since(before))
			require.Less(t, got, int64(40*len(evs)), "batch %d, %s", i+1, step.name)
		}
	}
	var sent int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM messages WHERE status = $1`, int16(msgstatus.Sent)).Scan(&sent))
	require.Equal(t, 2*2+2*batch, sent)
}
