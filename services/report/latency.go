package report

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/services/report/latency"
)

// Delivery latency (package latency): the report counts how long after acceptance each SENT
// and DELIVERED event happened into a histogram per account, hour of the
// message's creation, provider configuration and kind (message_latency,
// migration 0018), in the transaction that applies the events for the first
// time (a duplicate counts nothing). The console's dashboard reads the
// percentiles of each hour from it: a few dozen rows an hour, never the
// events. "Accepted" is the later of the message's creation and its
// scheduled time, so that scheduling is not counted as latency.

func latencyKind(typ string) int16 {
	switch typ {
	case queue.EventSent:
		return latency.Sent
	case queue.EventDelivered:
		return latency.Delivered
	}
	return 0
}

// countLatency adds the latency of evs[idx] (events applied for the first
// time) that are SENT or DELIVERED.
func countLatency(ctx context.Context, tx pgx.Tx, evs []event, idx []int) error {
	var (
		ids   []string
		kinds []int16
		ats   []any
	)
	for _, i := range idx {
		e := evs[i]
		if k := latencyKind(e.typ); k != 0 {
			ids, kinds, ats = append(ids, e.messageID), append(kinds, k), append(ats, e.occurredAt)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	// The messages by their primary key (= ANY: only their partitions).
	if _, err := tx.Exec(ctx, `
		INSERT INTO message_latency AS l (account_id, hour, provider_id, kind, bucket, count)
		SELECT m.account_id, date_bin('1 hour', m.created_at, '1970-01-01 00:00:00+00'), m.provider_id, u.kind,
			LEAST(32767, floor($4 * ln(1 + GREATEST(0, extract(epoch FROM u.at - GREATEST(m.created_at, m.send_at)) * 1000)) / ln(2)))::smallint,
			count(*)
		FROM unnest($1::text[]::uuid[], $2::smallint[], $3::timestamptz[]) AS u(message_id, kind, at)
		JOIN messages m ON m.id = u.message_id AND m.id = ANY($1::text[]::uuid[])
		GROUP BY 1, 2, 3, 4, 5
		ORDER BY 1, 2, 3, 4, 5
		ON CONFLICT (account_id, hour, provider_id, kind, bucket) DO UPDATE SET count = l.count + EXCLUDED.count`,
		ids, kinds, ats, float64(latency.BucketsPerDoubling)); err != nil {
		return fmt.Errorf("count latency: %w", err)
	}
	return nil
}

// latencyPruneEvery is how often the report deletes the latency histograms
// older than REPORT_LATENCY_RETENTION; latencyPruneBatch bounds one delete.
const (
	latencyPruneEvery = time.Hour
	latencyPruneBatch = 10000
)

// pruneLatency deletes the histograms of the hours before before, in
// batches (index message_latency_hour), and returns how many rows went.
func pruneLatency(ctx context.Context, db *pgxpool.Pool, before time.Time) (int64, error) {
	var total int64
	for {
		tag, err := db.Exec(ctx, `
			DELETE FROM message_latency WHERE ctid = ANY(ARRAY(
				SELECT ctid FROM message_latency WHERE hour < $1 LIMIT $2))`, before, latencyPruneBatch)
		if err != nil {
			return total, fmt.Errorf("prune latency: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < latencyPruneBatch {
			return total, nil
		}
	}
}

// runLatencyPrune prunes at start and every latencyPruneEvery until ctx
// ends (every replica does; a second one finds nothing to delete).
func (s *Service) runLatencyPrune(ctx context.Context) error {
	return every(ctx, latencyPruneEvery, true, func(ctx context.Context) {
		n, err := pruneLatency(ctx, s.deps.Pool, time.Now().Add(-s.cfg.LatencyRetention))
		if err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "prune latency histograms", "error", err)
		} else if n > 0 {
			s.log.DebugContext(ctx, "pruned latency histograms", "rows", n)
		}
	})
}
