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
