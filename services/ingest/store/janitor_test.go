package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
	"github.com/namirasoft/email-sender/services/ingest/store"
)

func TestDeleteExpiredIdempotencyKeys(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	now := time.Now()
	acc := uuid.New()
	for i, age := range []time.Duration{time.Hour, 23 * time.Hour, 25 * time.Hour, 48 * time.Hour} {
		_, err := db.Pool.Exec(ctx, `INSERT INTO idempotency_keys (account_id, key, request_hash, message_id, status, created_at)
			VALUES ($1, $2, '\x00', $3, 1, $4)`, acc, string(rune('a'+i)), uuid.New(), now.Add(-age))
		require.NoError(t, err)
	}
	n, err := store.DeleteExpiredIdempotencyKeys(ctx, db.Pool, now, 1)
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "the limit bounds one call")
	n, err = store.DeleteExpiredIdempotencyKeys(ctx, db.Pool, now, 100)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	var left []string
	rows, err := db.Pool.Query(ctx, `SELECT key FROM idempotency_keys ORDER BY key`)
	require.NoError(t, err)
	for rows.Next() {
		var k string
		require.NoError(t, rows.Scan(&k))
		left = append(left, k)
	}
	require.Equal(t, []string{"a", "b"}, left)
}
