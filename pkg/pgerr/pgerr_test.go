package pgerr_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/pgerr"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
)

// The errors of a real PostgreSQL: refused data is told from the rest.
func TestRefused(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		sql  string
		want bool
	}{
		{"data exception", `SELECT 'x'::uuid`, true},
		{"integrity constraint", `INSERT INTO accounts (id, name) VALUES (gen_random_uuid(), NULL)`, true},
		{"syntax error", `SELEC 1`, false},
		{"query canceled", `SET statement_timeout = '1ms'; SELECT pg_sleep(1)`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := db.Pool.Exec(ctx, tc.sql)
			require.Error(t, err)
			require.Equal(t, tc.want, pgerr.Refused(fmt.Errorf("wrapped: %w", err)), "%v", err)
		})
	}
	require.False(t, pgerr.Refused(errors.New("connection refused")))
	require.False(t, pgerr.Refused(context.DeadlineExceeded))
}

// A real PostgreSQL's errors: an outage is told from refused data and from
// a bug, and the SQLSTATEs callers branch on are matched through wrapping.
func TestUnavailableAndIs(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `CREATE TABLE pgerr_is (k int PRIMARY KEY); INSERT INTO pgerr_is VALUES (1)`)
	require.NoError(t, err)
	for _, tc := range []struct {
		name        string
		sql         string
		unavailable bool
		code        string
	}{
		{"unique violation", `INSERT INTO pgerr_is VALUES (1)`, false, pgerr.UniqueViolation},
		{"division by zero", `SELECT 1/0`, false, pgerr.DivisionByZero},
		{"lock not available", `BEGIN; SET LOCAL lock_timeout = '1ms'; LOCK pgerr_is IN ACCESS EXCLUSIVE MODE NOWAIT; COMMIT`, false, pgerr.LockNotAvailable},
		{"serialization failure (raised)", `DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'serialization_failure'; END $$`, true, "40001"},
		{"admin shutdown (raised)", `DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'admin_shutdown'; END $$`, true, "57P01"},
		{"syntax error", `SELEC 1`, false, "42601"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.code == pgerr.LockNotAvailable {
				// Another connection holds the lock for the duration.
				holder, err := db.Pool.Begin(ctx)
				require.NoError(t, err)
				defer holder.Rollback(ctx) //nolint:errcheck
				_, err = holder.Exec(ctx, `LOCK pgerr_is IN ACCESS EXCLUSIVE MODE`)
				require.NoError(t, err)
			}
			_, err := db.Pool.Exec(ctx, tc.sql)
			require.Error(t, err)
			wrapped := fmt.Errorf("wrapped: %w", err)
			require.Equal(t, tc.unavailable, pgerr.Unavailable(wrapped), "%v", err)
			require.True(t, pgerr.Is(wrapped, tc.code), "%v", err)
		})
	}
	require.False(t, pgerr.Unavailable(nil))
	require.False(t, pgerr.Is(errors.New("23505"), pgerr.UniqueViolation))
}
