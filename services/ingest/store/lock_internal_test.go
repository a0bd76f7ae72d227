package store

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
)

// An accept in flight holds the account's shared lock: DeleteAccount waits for
// it and then deletes what it stored, so no message outlives its account.
func TestDeleteAccountWaitsForAcceptsInFlight(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	acc := uuid.NewString()
	_, err := db.Pool.Exec(ctx, `INSERT INTO accounts (id, name) VALUES ($1, 'a')`, acc)
	require.NoError(t, err)

	accept, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = accept.Rollback(ctx) }()
	_, err = accept.Exec(ctx, lockAccountsSQL, []string{acc})
	require.NoError(t, err)
	_, err = accept.Exec(ctx, `INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, recipient_count, size_bytes, created_at, updated_at)
		VALUES ($1, $2, $3, 'sandbox', 1, 'a@example.com', 1, 10, now(), now())`, uuid.New(), acc, uuid.New())
	require.NoError(t, err)

	done := make(chan error, 1)
	go func() {
		_, err := DeleteAccount(ctx, db.Pool, acc, uuid.NewString(), time.Now())
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("DeleteAccount did not wait for the accept in flight (err %v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	require.NoError(t, accept.Commit(ctx))
	require.NoError(t, <-done)

	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM messages WHERE account_id = $1`, acc).Scan(&n))
	require.Zero(t, n, "the accepted message outlived its account")

	// An accept after the deletion finds the account gone and stores nothing.
	_, err = Accept(ctx, db.Pool, []*NewMessage{{ID: uuid.NewString(), AccountID: acc, ProviderID: uuid.NewString(),
		ProviderKind: "sandbox", Status: 1, FromAddress: "a@example.com", CreatedAt: time.Now(),
		Recipients: []Recipient{{Kind: "to", Address: "b@example.com"}}}})
	require.ErrorIs(t, err, ErrAccountGone)
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM messages WHERE account_id = $1`, acc).Scan(&n))
	require.Zero(t, n)
}
