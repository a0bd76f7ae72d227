package report

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
)

func TestPruneLatency(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	now := time.Now().UTC().Truncate(time.Hour)
	acc, prov := uuid.New(), uuid.New()
	for h := range 30 {
		_, err := db.Pool.Exec(ctx, `INSERT INTO message_latency (account_id, hour, provider_id, kind, bucket, count)
			SELECT $1, $2, $3, k, b, 1 FROM generate_series(1, 2) k, generate_series(0, 9) b`,
			acc, now.Add(-time.Duration(h)*time.Hour), prov)
		require.NoError(t, err)
	}
	n, err := pruneLatency(ctx, db.Pool, now.Add(-9*time.Hour-time.Minute))
	require.NoError(t, err)
	require.EqualValues(t, 20*20, n, "the 20 hours before the cut, 20 rows each")
	var left int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(DISTINCT hour) FROM message_latency`).Scan(&left))
	require.Equal(t, 10, left)
}
