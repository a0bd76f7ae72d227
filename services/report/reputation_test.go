package report_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/accountstate"
	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/reputation"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/report"
)

// Events applied by the consumer feed the reputation guard: a provider
// configuration whose bounces reach the pause threshold is paused (in
// PostgreSQL and the bucket), GetStats shows its rates and state, and another
// configuration of the account is untouched.
func TestConsumerReputationGuardPauses(t *testing.T) {
	t.Parallel()
	cfg := report.Config{Reputation: reputation.Config{Window: time.Hour, MinSends: 10}}
	b := setupWith(t, setupOpts{cfg: cfg})
	ctx := context.Background()
	a := b.newAccount(t)
	prov, other := uuid.NewString(), uuid.NewString()
	for _, p := range []string{prov, other} {
		_, err := b.db.Pool.Exec(ctx, `INSERT INTO provider_configs (id, account_id, name, kind) VALUES ($1, $2, $3, 'sandbox')`, p, a.id, p)
		require.NoError(t, err)
	}
	var to []string
	for i := range 10 {
		to = append(to, fmt.Sprintf("r%d@example.com", i))
	}
	now := time.Now().UTC()
	id := b.newMessage(t, a, msgSpec{to: to, providerID: prov, createdAt: now})
	sent := event(a, id, queue.EventSent, msgstatus.Sent, 1, now)
	b.publish(t, ctx, sent)
	b.wait(t, "applied", sent.GetEventId())

	stats := func() *emailsenderv1.ProviderReputation {
		t.Helper()
		resp, err := b.client.GetStats(authed(a), &emailsenderv1.GetStatsRequest{ProviderId: prov})
		require.NoError(t, err)
		require.Len(t, resp.GetReputation(), 1)
		return resp.GetReputation()[0]
	}
	r := stats()
	require.Equal(t, "ok", r.GetState())
	require.Equal(t, int64(10), r.GetSends())

	// A soft bounce does not count; a hard one makes 10%: paused.
	soft := event(a, id, queue.EventBounced, msgstatus.Bounced, 0, now, "r1@example.com")
	soft.ErrorClass = "soft_bounce"
	hard := event(a, id, queue.EventBounced, msgstatus.Bounced, 0, now, "r2@example.com")
	hard.ErrorClass = "hard_bounce"
	b.publish(t, ctx, soft)
	b.wait(t, "applied", soft.GetEventId())
	require.Equal(t, "ok", stats().GetState())
	b.publish(t, ctx, hard)
	b.wait(t, "applied", hard.GetEventId())

	r = stats()
	require.Equal(t, "paused", r.GetState())
	require.Equal(t, int64(1), r.GetBounces())
	require.InDelta(t, 0.1, r.GetBounceRate(), 1e-9)
	require.Equal(t, time.Hour, r.GetWindow().AsDuration())
	require.Contains(t, r.GetPauseReason(), "bounce rate 10.00%")
	require.NotNil(t, r.GetPausedAt())
	p, err := accountstate.LookupPause(ctx, b.db.Pool, a.id, prov)
	require.NoError(t, err)
	require.True(t, p.Paused)

	resp, err := b.client.GetStats(authed(a), &emailsenderv1.GetStatsRequest{})
	require.NoError(t, err)
	states := map[string]string{}
	for _, r := range resp.GetReputation() {
		states[r.GetProviderId()] = r.GetState()
	}
	require.Equal(t, map[string]string{prov: "paused", other: "ok"}, states)
}
