package reputation_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/namirasoft/email-sender/pkg/accountstate"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/reputation"
	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
)

// Counted events move a provider configuration through warning to paused
// (one event per crossing, the pause announced to Views), soft bounces and
// other configurations do not count, a paused one stays paused, and Resume
// lifts the pause and starts the window afresh.
func TestGuardCountsCrossesAndResumes(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	_, js := natstest.Start(t).JetStream(t)
	ctx := t.Context()
	require.NoError(t, queue.EnsureStreams(ctx, js, queue.StreamConfig{}))
	acc, prov, other := uuid.NewString(), uuid.NewString(), uuid.NewString()
	_, err := db.Pool.Exec(ctx, `INSERT INTO accounts (id, name) VALUES ($1, 'a')`, acc)
	require.NoError(t, err)
	for _, p := range []string{prov, other} {
		_, err = db.Pool.Exec(ctx, `INSERT INTO provider_configs (id, account_id, name, kind) VALUES ($1, $2, $3, 'sandbox')`, p, acc, p)
		require.NoError(t, err)
	}
	// One message of two recipients per provider configuration.
	msg := map[string]string{prov: uuid.NewString(), other: uuid.NewString()}
	for p, m := range msg {
		_, err = db.Pool.Exec(ctx, `INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address,
			recipient_count, size_bytes, created_at, updated_at) VALUES ($1, $2, $3, 'sandbox', 1, 'a@example.com', 2, 1, now(), now())`, m, acc, p)
		require.NoError(t, err)
	}
	view := accountstate.NewView(db.Pool, js, 1, nil)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = view.Watch(wctx) }()
	t.Cleanup(func() { cancel(); <-done })
	require.Eventually(t, func() bool { _, ok := view.PausedCached(acc); return ok }, 5*time.Second, 10*time.Millisecond)

	cfg := reputation.Config{Window: time.Hour, MinSends: 10, WarnBounceRate: 0.05, WarnComplaintRate: 0.001, PauseBounceRate: 0.1, PauseComplaintRate: 0.005}
	store := accountstate.NewStore(db.Pool, js, 1)
	guard := reputation.NewGuard(cfg, db.Pool, store, js, nil)
	now := time.Now()
	count := func(obs ...reputation.Observation) []reputation.Crossing {
		t.Helper()
		tx, err := db.Pool.Begin(ctx)
		require.NoError(t, err)
		keys, err := cfg.Count(ctx, tx, obs, now)
		require.NoError(t, err)
		require.NoError(t, tx.Commit(ctx))
		cs, err := guard.Assess(ctx, keys)
		require.NoError(t, err)
		return cs
	}
	sent := func(p string, recipients int) reputation.Observation {
		return reputation.Observation{Account: acc, Message: msg[p], Type: queue.EventSent, Recipients: recipients}
	}
	bounced := func(p, class string) reputation.Observation {
		return reputation.Observation{Account: acc, Message: msg[p], Type: queue.EventBounced, Class: class, Recipients: 1}
	}

	// 100 recipients: 50 messages sent to both (Recipients 0: all of them).
	var obs []reputation.Observation
	for range 50 {
		obs = append(obs, sent(prov, 0))
	}
	obs = append(obs, sent(other, 0))
	require.Empty(t, count(obs...))
	// Soft bounces and deliveries do not count; 5 hard bounces warn.
	require.Empty(t, count(bounced(prov, "soft_bounce"), reputation.Observation{Account: acc, Message: msg[prov], Type: queue.EventDelivered}))
	cs := count(bounced(prov, "hard_bounce"), bounced(prov, "policy_block"), bounced(prov, "hard_bounce"), bounced(prov, "hard_bounce"), bounced(prov, "message_rejected"))
	require.Len(t, cs, 1)
	require.Equal(t, reputation.Crossing{Key: reputation.Key{Account: acc, Provider: prov}, From: reputation.OK, To: reputation.Warning,
		Event: queue.EventReputationWarning, Counts: reputation.Counts{Sends: 100, Bounces: 5}}, cs[0])
	require.Empty(t, count(bounced(prov, "hard_bounce")), "still a warning: no new crossing")
	// 10% pauses; the other configuration is untouched.
	cs = count(bounced(prov, "hard_bounce"), bounced(prov, "hard_bounce"), bounced(prov, "hard_bounce"), bounced(prov, "hard_bounce"))
	require.Len(t, cs, 1)
	require.Equal(t, reputation.Paused, cs[0].To)
	require.Equal(t, queue.EventReputationPaused, cs[0].Event)
	p, err := view.Paused(ctx, acc, prov)
	require.NoError(t, err)
	require.True(t, p.Paused, "announced to the View before Assess returned")
	require.Equal(t, reputation.Actor, p.Actor)
	require.Contains(t, p.Reason, "bounce rate 10.00%")
	p, err = view.Paused(ctx, acc, other)
	require.NoError(t, err)
	require.False(t, p.Paused)
	// Clean sends do not lift a pause.
	obs = nil
	for range 500 {
		obs = append(obs, sent(prov, 0))
	}
	require.Empty(t, count(obs...))
	p, _ = view.Paused(ctx, acc, prov)
	require.True(t, p.Paused)

	st, err := cfg.Statuses(ctx, db.Pool, acc, prov, now)
	require.NoError(t, err)
	require.Len(t, st, 1)
	require.Equal(t, reputation.Paused, st[0].Level)
	require.True(t, st[0].Paused)
	require.Equal(t, reputation.Counts{Sends: 1100, Bounces: 10}, st[0].Counts)

	// Resume: lifted, announced, counts gone, level ok; a second resume is refused.
	k := reputation.Key{Account: acc, Provider: prov}
	_, err = reputation.Resume(ctx, db.Pool, store, js, k, "owner", now)
	require.NoError(t, err)
	p, _ = view.Paused(ctx, acc, prov)
	require.False(t, p.Paused)
	_, err = reputation.Resume(ctx, db.Pool, store, js, k, "owner", now)
	require.ErrorIs(t, err, reputation.ErrNotPaused)
	st, err = cfg.Statuses(ctx, db.Pool, acc, "", now)
	require.NoError(t, err)
	require.Len(t, st, 2)
	for _, s := range st {
		require.Equal(t, reputation.OK, s.Level)
		require.False(t, s.Paused)
		if s.Provider == prov {
			require.Equal(t, reputation.Counts{}, s.Counts, "the window starts afresh")
		}
	}

	// The events: WARNING, PAUSED, RESUMED about the configuration, once each.
	cons, err := js.OrderedConsumer(ctx, queue.EventStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{queue.EventSubject(acc, prov)}})
	require.NoError(t, err)
	batch, err := cons.FetchNoWait(10)
	require.NoError(t, err)
	var types []string
	for m := range batch.Messages() {
		var ev queuev1.DeliveryEvent
		require.NoError(t, proto.Unmarshal(m.Data(), &ev))
		require.Equal(t, prov, ev.GetProviderId())
		types = append(types, ev.GetType())
	}
	require.Equal(t, []string{queue.EventReputationWarning, queue.EventReputationPaused, queue.EventReputationResumed}, types)
}
