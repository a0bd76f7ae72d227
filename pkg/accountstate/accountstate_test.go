package accountstate_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/accountstate"
	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
)

// A state set by one Store is applied by every watching View before Set
// returns (OnChange runs first), kept in PostgreSQL, and Active removes it;
// without a watch the View reads PostgreSQL.
func TestSetIsAppliedByWatchersBeforeItReturns(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	_, js := natstest.Start(t).JetStream(t)
	ctx := t.Context()
	acc := uuid.NewString()

	cold := accountstate.NewView(db.Pool, js, 1, nil) // never watches
	view := accountstate.NewView(db.Pool, js, 1, nil)
	changes := make(chan accountstate.Entry, 4)
	view.OnChange(func(e accountstate.Entry) { changes <- e })
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = view.Watch(wctx) }()
	t.Cleanup(func() { cancel(); <-done })
	require.Eventually(t, func() bool { _, ok := view.Cached(acc); return ok }, 5*time.Second, 10*time.Millisecond)

	store := accountstate.NewStore(db.Pool, js, 1)
	_, err := store.Set(ctx, accountstate.Entry{Account: acc, State: accountstate.Suspended, Reason: "spam", Actor: "op"})
	require.NoError(t, err)
	select {
	case e := <-changes:
		require.Equal(t, accountstate.Suspended, e.State)
	default:
		t.Fatal("Set returned before the watcher applied the change")
	}
	st, ok := view.Cached(acc)
	require.True(t, ok)
	require.Equal(t, accountstate.Suspended, st)
	e, err := cold.State(ctx, acc)
	require.NoError(t, err)
	require.Equal(t, accountstate.Suspended, e.State)
	require.Equal(t, "spam", e.Reason)

	_, err = store.Set(ctx, accountstate.Entry{Account: acc, State: accountstate.Active, Actor: "op"})
	require.NoError(t, err)
	st, _ = view.Cached(acc)
	require.Equal(t, accountstate.Active, st)
	e, err = accountstate.Lookup(ctx, db.Pool, acc)
	require.NoError(t, err)
	require.Equal(t, accountstate.Active, e.State)
}

// A provider pause is kept, announced and confirmed like an account state:
// applied by every watching View (OnPause first) before SetPause returns,
// read from PostgreSQL without a watch, and lifted the same way.
func TestPauseIsAppliedByWatchersBeforeItReturns(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	_, js := natstest.Start(t).JetStream(t)
	ctx := t.Context()
	acc, prov := uuid.NewString(), uuid.NewString()
	_, err := db.Pool.Exec(ctx, `INSERT INTO accounts (id, name) VALUES ($1, 'a')`, acc)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `INSERT INTO provider_configs (id, account_id, name, kind) VALUES ($1, $2, 'p', 'sandbox')`, prov, acc)
	require.NoError(t, err)

	cold := accountstate.NewView(db.Pool, js, 1, nil)
	view := accountstate.NewView(db.Pool, js, 1, nil)
	pauses := make(chan accountstate.Pause, 4)
	view.OnPause(func(p accountstate.Pause) { pauses <- p })
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = view.Watch(wctx) }()
	t.Cleanup(func() { cancel(); <-done })
	require.Eventually(t, func() bool { _, ok := view.PausedCached(acc); return ok }, 5*time.Second, 10*time.Millisecond)

	store := accountstate.NewStore(db.Pool, js, 1)
	_, err = store.SetPause(ctx, accountstate.Pause{Account: acc, Provider: prov, Paused: true, Reason: "bounce rate 12%", Actor: "reputation-guard"})
	require.NoError(t, err)
	select {
	case p := <-pauses:
		require.True(t, p.Paused)
	default:
		t.Fatal("SetPause returned before the watcher applied the pause")
	}
	hasPause, _ := view.PausedCached(acc)
	require.True(t, hasPause)
	p, err := view.Paused(ctx, acc, prov)
	require.NoError(t, err)
	require.True(t, p.Paused)
	require.Equal(t, "bounce rate 12%", p.Reason)
	p, err = cold.Paused(ctx, acc, prov)
	require.NoError(t, err)
	require.True(t, p.Paused)
	st, _ := view.Cached(acc)
	require.Equal(t, accountstate.Active, st, "a pause is not an account state")

	_, err = store.SetPause(ctx, accountstate.Pause{Account: acc, Provider: prov, Actor: "owner"})
	require.NoError(t, err)
	require.False(t, (<-pauses).Paused)
	p, err = view.Paused(ctx, acc, prov)
	require.NoError(t, err)
	require.False(t, p.Paused)
	p, err = accountstate.LookupPause(ctx, db.Pool, acc, prov)
	require.NoError(t, err)
	require.False(t, p.Paused)
}
