package store

import (
	"context"
	"fmt"
	"time"
)

// DeleteExpiredIdempotencyKeys removes keys older than IdempotencyTTL (at most
// limit rows per call, so a large backlog is cleared in short transactions).
func DeleteExpiredIdempotencyKeys(ctx context.Context, db DBTX, now time.Time, limit int) (int64, error) {
	tag, err := db.Exec(ctx, `
		DELETE FROM idempotency_keys WHERE ctid IN (
			SELECT ctid FROM idempotency_keys WHERE created_at < $1 LIMIT $2)`,
		now.Add(-IdempotencyTTL), limit)
	if err != nil {
		return 0, fmt.Errorf("delete expired idempotency keys: %w", err)
	}
	return tag.RowsAffected(), nil
}
