package pgstats_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/pgstats"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
)

// TestRefresh: a partitioned table whose partition was analyzed empty and
// then filled is analyzed (its partition), once; a table analyzed with its
// rows, a small one and one not named are not; and where autovacuum looks
// after a table (its reloption on while the server's autovacuum is on)
// nothing is done.
func TestRefresh(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewEmpty(t)
	for _, q := range []string{
		`CREATE TABLE grow (id bigint PRIMARY KEY) PARTITION BY RANGE (id)`,
		`CREATE TABLE grow_a PARTITION OF grow FOR VALUES FROM (0) TO (1000000)`,
		`CREATE TABLE steady (id bigint PRIMARY KEY)`,
		`CREATE TABLE small (id bigint PRIMARY KEY)`,
		`CREATE TABLE other (id bigint PRIMARY KEY)`,
		`ANALYZE grow, small, other`,
		`INSERT INTO grow SELECT generate_series(1, 5000)`,
		`INSERT INTO steady SELECT generate_series(1, 5000)`,
		`ANALYZE steady`,
		`INSERT INTO small SELECT generate_series(1, 10)`,
		`INSERT INTO other SELECT generate_series(1, 5000)`,
	} {
		_, err := db.Pool.Exec(ctx, q)
		require.NoError(t, err, q)
	}
	// The counts of live rows reach the statistics views within a second or so.
	var analyzed []string
	deadline := time.Now().Add(30 * time.Second)
	for len(analyzed) == 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		var err error
		analyzed, err = pgstats.Refresh(ctx, db.Pool, "grow", "steady", "small")
		require.NoError(t, err)
	}
	var schema string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema))
	require.Equal(t, []string{schema + ".grow_a"}, analyzed)
	var tuples float64
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT reltuples FROM pg_class WHERE oid = 'grow_a'::regclass`).Scan(&tuples))
	require.EqualValues(t, 5000, tuples)

	again, err := pgstats.Refresh(ctx, db.Pool, "grow", "steady", "small")
	require.NoError(t, err)
	require.Empty(t, again, "analyzed already")

	var autovacuum bool
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT current_setting('autovacuum')::boolean`).Scan(&autovacuum))
	_, err = db.Pool.Exec(ctx, `INSERT INTO grow SELECT generate_series(5001, 20000)`)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `ALTER TABLE grow_a SET (autovacuum_enabled = true)`)
	require.NoError(t, err)
	time.Sleep(1500 * time.Millisecond)
	again, err = pgstats.Refresh(ctx, db.Pool, "grow")
	require.NoError(t, err)
	if autovacuum {
		require.Empty(t, again, "the server runs autovacuum and the table allows it: left to autovacuum")
	} else {
		require.Equal(t, []string{schema + ".grow_a"}, again, "autovacuum is off on the server: the reloption alone does not run it")
	}
}
