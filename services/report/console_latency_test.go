package report_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/services/report/chart"
	"github.com/namirasoft/email-sender/services/report/latency"
)

// TestConsoleLatency: the report counts each SENT and DELIVERED event's
// time since acceptance when it applies it first, and the
// dashboard shows the percentiles of the account's messages only.
func TestConsoleLatency(t *testing.T) {
	b := setupConsole(t)
	ctx := context.Background()
	a := b.newAccount(t, auth.ScopeRead)
	other := b.newAccount(t, auth.ScopeRead)
	created := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	var msgs []string
	for range 4 {
		msgs = append(msgs, b.newMessage(t, a, msgSpec{to: []string{"x@a.example"}, createdAt: created}))
	}
	otherMsg := b.newMessage(t, other, msgSpec{to: []string{"y@b.example"}, createdAt: created})
	// Sent after 2 s (three) and 20 s (one); delivered after 30 s.
	for i, id := range msgs {
		after := 2 * time.Second
		if i == 3 {
			after = 20 * time.Second
		}
		sent := event(a, id, queue.EventSent, msgstatus.Sent, 1, created.Add(after), "x@a.example")
		b.publish(t, ctx, sent)
		b.publish(t, ctx, event(a, id, queue.EventDelivered, msgstatus.Delivered, 1, created.Add(30*time.Second), "x@a.example"))
	}
	b.publish(t, ctx, event(other, otherMsg, queue.EventSent, msgstatus.Sent, 1, created.Add(time.Hour), "y@b.example"))

	b.clock.add(time.Minute)
	br := b.browser(t)
	br.signIn(a.key)
	var got answer
	require.Eventually(t, func() bool {
		got = br.get("/console/dashboard")
		return strings.Contains(got.body, "accepted → sent (4)") && strings.Contains(got.body, "accepted → delivered (4)")
	}, 10*time.Second, 100*time.Millisecond, "the events applied")
	require.Equal(t, http.StatusOK, got.code)
	s := func(sec float64) string { return chart.Seconds(latency.Upper(latency.Bucket(sec))) }
	require.Contains(t, got.body, "accepted → sent (4): p50 <span class=\"n\">"+s(2)+"</span>, p95 <span class=\"n\">"+s(20)+"</span>")
	require.Contains(t, got.body, "accepted → delivered (4): p50 <span class=\"n\">"+s(30)+"</span>")
	require.NotContains(t, got.body, s(3600), "another account's latency")
	require.Contains(t, got.body, "Time from acceptance to delivered")
}
