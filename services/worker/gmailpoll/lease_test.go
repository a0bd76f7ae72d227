package gmailpoll

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
)

// TestLease: one owner at a time; another takes over once the lease has
// expired, after which the first one's renewal is refused; a released
// lease is free at once.
func TestLease(t *testing.T) {
	t.Parallel()
	_, js := natstest.Start(t).JetStream(t)
	ctx := context.Background()
	a, err := ensureLeases(ctx, js, 1, "a")
	require.NoError(t, err)
	b, err := ensureLeases(ctx, js, 1, "b")
	require.NoError(t, err)
	now := time.Now()

	revA, err := a.acquire(ctx, "cfg", 0, now, now.Add(time.Minute))
	require.NoError(t, err)
	_, err = b.acquire(ctx, "cfg", 0, now, now.Add(time.Minute))
	require.ErrorIs(t, err, errLeaseHeld)
	revA, err = a.acquire(ctx, "cfg", revA, now, now.Add(time.Minute))
	require.NoError(t, err, "renewed")

	later := now.Add(2 * time.Minute) // a stopped renewing: the lease expired
	revB, err := b.acquire(ctx, "cfg", 0, later, later.Add(time.Minute))
	require.NoError(t, err)
	_, err = a.acquire(ctx, "cfg", revA, later, later.Add(time.Minute))
	require.ErrorIs(t, err, errLeaseLost)

	b.release(ctx, "cfg", revB)
	_, err = a.acquire(ctx, "cfg", 0, later, later.Add(time.Minute))
	require.NoError(t, err, "free after release")
}
