package console

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
)

func TestSessionsPrune(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	acct := uuid.NewString()
	_, err := db.Pool.Exec(ctx, `INSERT INTO accounts (id, name) VALUES ($1, 'a')`, acct)
	require.NoError(t, err)
	now := time.Now()
	s := &sessions{pool: db.Pool, idle: 30 * time.Minute, max: 12 * time.Hour, now: func() time.Time { return now }}
	p := auth.Principal{AccountID: acct, Subject: "sub", Scopes: []string{auth.ScopeRead}}

	idle, err := s.create(ctx, p, MethodOIDC, "")
	require.NoError(t, err)
	now = now.Add(20 * time.Minute)
	live, err := s.create(ctx, p, MethodOIDC, "")
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `INSERT INTO console_oidc_logins (state_hash, verifier, nonce, expires_at) VALUES ('\x01', 'v', 'n', $1)`, now.Add(-time.Second))
	require.NoError(t, err)

	now = now.Add(15 * time.Minute) // idle: 35 minutes unused; live: 15
	n, err := s.prune(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	_, err = s.lookup(ctx, idle.token)
	require.ErrorIs(t, err, errNoSession)
	got, err := s.lookup(ctx, live.token)
	require.NoError(t, err)
	require.Equal(t, []string{auth.ScopeRead}, got.Scopes)
	var logins int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM console_oidc_logins`).Scan(&logins))
	require.Zero(t, logins)
}
