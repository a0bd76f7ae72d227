package report_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/queue"
	chromium "github.com/namirasoft/email-sender/pkg/testkit/browser"
)

// TestConsoleOperatorInChromium signs in as an operator in headless
// Chromium, reads the operator view, then as an account owner reads the
// dashboard's latency chart; screenshots console-operator and
// console-latency.
func TestConsoleOperatorInChromium(t *testing.T) {
	b := setupConsole(t)
	ctx := context.Background()
	a := b.newAccount(t, auth.ScopeRead)
	other := b.newAccount(t, auth.ScopeRead)
	created := time.Now().Add(-time.Minute).UTC()
	for i := range 12 {
		id := b.newMessage(t, a, msgSpec{to: []string{"x@a.example"}, createdAt: created})
		b.publish(t, ctx, event(a, id, queue.EventSent, msgstatus.Sent, 1, created.Add(time.Duration(1+i%4)*time.Second), "x@a.example"))
		b.publish(t, ctx, event(a, id, queue.EventDelivered, msgstatus.Delivered, 1, created.Add(time.Duration(5+3*i)*time.Second), "x@a.example"))
		if i == 0 {
			b.publish(t, ctx, event(a, id, queue.EventFailover, msgstatus.Retrying, 1, created.Add(time.Second), "x@a.example"))
		}
	}
	b.newMessage(t, other, msgSpec{to: []string{"y@b.example"}})
	provider := uuid.NewString()
	_, err := b.db.Pool.Exec(ctx, `INSERT INTO provider_configs (id, account_id, name, kind, healthy, health_note) VALUES ($1, $2, 'smtp-main', 'smtp', false, '535 authentication failed')`, provider, other.id)
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(ctx, `INSERT INTO account_states (account, state, reason, actor, changed_at, version) VALUES ($1, 'suspended', 'spam complaints', 'operator:bob', now(), 1)`, other.id)
	require.NoError(t, err)
	b.clock.add(time.Minute)

	br := chromium.New(t, chromium.Allow(b.base), chromium.WindowSize(1280, 900))
	br.Navigate(b.base + "/console/operator/")
	br.Fill("#operator_token", testOperatorSecret)
	br.Submit("#operator_token")
	br.WaitVisible("#prov-h")
	require.Contains(t, br.Text("header .who"), "operator alice")
	require.Eventually(t, func() bool {
		br.Navigate(b.base + "/console/operator/")
		return strings.Contains(br.Text("main"), "1 messages moved to a fallback")
	}, 10*time.Second, 200*time.Millisecond)
	require.Contains(t, br.Text("main"), "535 authentication failed")
	br.Screenshot("console-operator")

	// The operator cookie is no tenant session: the tenant pages ask for a sign-in.
	br.Navigate(b.base + "/console/")
	require.True(t, strings.HasSuffix(br.Location(), "/console/signin"), br.Location())
	br.Fill("#api_key", a.key)
	br.Submit("#api_key")
	br.WaitVisible("#live-h")
	br.Navigate(b.base + "/console/dashboard")
	br.WaitVisible("#latency-delivered-figure svg")
	br.Screenshot("console-latency")
}
