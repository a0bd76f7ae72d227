package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/queue"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/report"
)

// TestReputationGuardPausesAndResumes: an SMTP provider configuration sends
// to 10 recipients (the guard's minimum volume here) and one hard bounce
// comes back (published on the events stream as the inbound service does):
// 10% bounces, the pause threshold. The guard pauses the configuration
// (REPUTATION_PAUSED on WatchEvents, "paused" in GetStats); new sends are
// refused with FAILED_PRECONDITION on provider_id; a message scheduled
// before the pause is held (parked on the stream, not delivered, not lost);
// the owner resumes it (ResumeProvider), the held message is delivered
// exactly once and sends are accepted again.
func TestReputationGuardPausesAndResumes(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{report: func(c *report.Config, _ *report.Deps) {
		c.Reputation.Window, c.Reputation.MinSends = time.Hour, 10
	}})
	ctx := t.Context()
	acc, prov := s.accounts["a"].AccountID, s.accounts["a"].ProviderID

	var ids []string
	for i := range 10 {
		ids = append(ids, s.sendOK("a", simple(fmt.Sprintf("r%d@example.org", i))))
	}
	for _, id := range ids {
		s.waitStatus("a", id, v1.MessageStatus_SENT)
	}
	held := simple("held@example.org")
	held.SendAt = timestamppb.New(time.Now().Add(3 * time.Second))
	heldID := s.sendOK("a", held)

	reputationOf := func() *v1.ProviderReputation {
		t.Helper()
		resp, err := s.report.GetStats(s.ctx("a"), &v1.GetStatsRequest{ProviderId: prov})
		require.NoError(t, err)
		require.Len(t, resp.GetReputation(), 1)
		return resp.GetReputation()[0]
	}
	require.Eventually(t, func() bool { return reputationOf().GetSends() == 10 }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, "ok", reputationOf().GetState())

	// One hard bounce: 10%.
	evID := uuid.NewString()
	data, err := proto.Marshal(&queuev1.DeliveryEvent{
		EventId: evID, MessageId: ids[0], AccountId: acc, Type: queue.EventBounced, Status: v1.MessageStatus_BOUNCED,
		OccurredAt: timestamppb.Now(), Recipients: []string{"r0@example.org"}, ErrorClass: "hard_bounce",
		ProviderResponse: "550 5.1.1 no such user", Detail: "hard bounce (DSN)",
	})
	require.NoError(t, err)
	_, err = s.js.PublishMsg(ctx, queue.NewMsg(queue.EventSubject(acc, ids[0]), evID, data))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return reputationOf().GetState() == "paused" }, 10*time.Second, 20*time.Millisecond)
	r := reputationOf()
	require.Equal(t, int64(1), r.GetBounces())
	require.InDelta(t, 0.1, r.GetBounceRate(), 1e-9)
	require.Contains(t, r.GetPauseReason(), "bounce rate 10.00%")

	// New sends naming it (or defaulting to it) are refused.
	for _, pid := range []string{"", prov} {
		req := simple("refused@example.org")
		req.ProviderId = pid
		_, err = s.send.SendEmail(s.ctx("a"), req)
		require.Equal(t, codes.FailedPrecondition, status.Code(err), "%v", err)
		require.Contains(t, status.Convert(err).Message(), "paused")
		require.Contains(t, status.Convert(err).Message(), "bounce rate 10.00%")
		var field string
		for _, d := range status.Convert(err).Details() {
			if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
				field = br.GetFieldViolations()[0].GetField()
			}
		}
		require.Equal(t, "provider_id", field)
	}
	// Another account is not paused.
	s.waitStatus("b", s.sendOK("b", simple("other@example.org")), v1.MessageStatus_SENT)

	// The scheduled message comes due and is held: parked, not delivered.
	parkedCount := func() uint64 {
		st, err := s.js.Stream(ctx, queue.SendStream)
		require.NoError(t, err)
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(queue.ParkedSubject(prov, acc)))
		require.NoError(t, err)
		return info.State.Subjects[queue.ParkedSubject(prov, acc)]
	}
	require.Eventually(t, func() bool { return parkedCount() == 1 }, 15*time.Second, 50*time.Millisecond, "the due message is parked")
	delivered := func(to string) int {
		n := 0
		for _, m := range s.sink.Messages() {
			if len(m.To) > 0 && m.To[0] == to {
				n++
			}
		}
		return n
	}
	require.Zero(t, delivered("held@example.org"))
	got, err := s.report.GetMessage(s.ctx("a"), &v1.GetMessageRequest{MessageId: heldID})
	require.NoError(t, err)
	require.NotEqual(t, v1.MessageStatus_SENT, got.GetMessage().GetStatus())

	// The owner resumes: the held message goes out once; sends work again.
	_, err = s.account.ResumeProvider(s.ctx("a"), &v1.ResumeProviderRequest{Id: prov})
	require.NoError(t, err)
	_, err = s.account.ResumeProvider(s.ctx("a"), &v1.ResumeProviderRequest{Id: prov})
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "not paused any more: %v", err)
	s.sendOK("a", simple("after@example.org"))
	s.waitStatus("a", heldID, v1.MessageStatus_SENT)
	require.Zero(t, parkedCount())
	time.Sleep(time.Second)
	require.Equal(t, 1, delivered("held@example.org"), "the held message is delivered exactly once")
	r = reputationOf()
	require.Equal(t, "ok", r.GetState())
	require.Empty(t, r.GetPauseReason())
	require.Zero(t, r.GetBounces(), "the window started afresh")

	// WatchEvents showed the crossing and the resume, about the configuration.
	wctx, cancel := context.WithTimeout(s.ctx("a"), 10*time.Second)
	defer cancel()
	st, err := s.report.WatchEvents(wctx, &v1.WatchEventsRequest{FromStart: true,
		Types: []string{queue.EventReputationWarning, queue.EventReputationPaused, queue.EventReputationResumed}})
	require.NoError(t, err)
	var types []string
	for len(types) < 2 {
		resp, err := st.Recv()
		require.NoError(t, err)
		if resp.GetEvent() == nil {
			continue
		}
		require.Equal(t, prov, resp.GetProviderId())
		require.Empty(t, resp.GetMessageId())
		types = append(types, resp.GetEvent().GetType())
	}
	require.Equal(t, []string{queue.EventReputationPaused, queue.EventReputationResumed}, types)
}

// TestReputationEventsReachWebhooks: the guard pauses a configuration (ten
// sends, one hard bounce) and its owner resumes it. An endpoint whose filter
// names reputation_paused and reputation_resumed (with a tag filter, which
// account-level events ignore) receives reputation.paused and then
// reputation.resumed, signed (checked by Python) and valid against the
// published schema, with the configuration, level and window's counts; an
// endpoint with no type filter (every message event) gets message events but
// no reputation event, one that names only reputation_warning gets nothing,
// and another account's endpoint subscribed to reputation_paused gets
// nothing.
func TestReputationEventsReachWebhooks(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{report: func(c *report.Config, _ *report.Deps) {
		c.Reputation.Window, c.Reputation.MinSends = time.Hour, 10
	}})
	ctx := t.Context()
	acc, prov := s.accounts["a"].AccountID, s.accounts["a"].ProviderID

	subscribed, all, warnOnly, other := newReceiver(t, "ok"), newReceiver(t, "ok"), newReceiver(t, "ok"), newReceiver(t, "ok")
	created, err := s.webhooks.CreateWebhook(s.ctx("a"), &v1.CreateWebhookRequest{Url: subscribed.srv.URL,
		EventTypes: []string{"reputation_paused", "reputation_resumed"}, Tags: map[string]string{"campaign": "none"}})
	require.NoError(t, err)
	secret := created.GetSecret()
	require.ElementsMatch(t, []string{"reputation_paused", "reputation_resumed"}, created.GetWebhook().GetEventTypes())
	_, err = s.webhooks.CreateWebhook(s.ctx("a"), &v1.CreateWebhookRequest{Url: all.srv.URL})
	require.NoError(t, err)
	_, err = s.webhooks.CreateWebhook(s.ctx("a"), &v1.CreateWebhookRequest{Url: warnOnly.srv.URL, EventTypes: []string{"reputation_warning"}})
	require.NoError(t, err)
	_, err = s.webhooks.CreateWebhook(s.ctx("b"), &v1.CreateWebhookRequest{Url: other.srv.URL, EventTypes: []string{"reputation_paused"}})
	require.NoError(t, err)
	_, err = s.webhooks.CreateWebhook(s.ctx("a"), &v1.CreateWebhookRequest{Url: all.srv.URL, EventTypes: []string{"reputation.paused"}})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "the filter takes names, not payload types: %v", err)

	var ids []string
	for i := range 10 {
		ids = append(ids, s.sendOK("a", simple(fmt.Sprintf("w%d@example.org", i))))
	}
	for _, id := range ids {
		s.waitStatus("a", id, v1.MessageStatus_SENT)
	}
	evID := uuid.NewString()
	data, err := proto.Marshal(&queuev1.DeliveryEvent{
		EventId: evID, MessageId: ids[0], AccountId: acc, Type: queue.EventBounced, Status: v1.MessageStatus_BOUNCED,
		OccurredAt: timestamppb.Now(), Recipients: []string{"w0@example.org"}, ErrorClass: "hard_bounce",
		ProviderResponse: "550 5.1.1 no such user", Detail: "hard bounce (DSN)",
	})
	require.NoError(t, err)
	_, err = s.js.PublishMsg(ctx, queue.NewMsg(queue.EventSubject(acc, ids[0]), evID, data))
	require.NoError(t, err)

	got := subscribed.waitCount(t, 1)
	require.Equal(t, "reputation.paused", got[0].Type)
	var p struct {
		Version int
		Type    string
		Data    map[string]any
	}
	require.NoError(t, json.Unmarshal(got[0].Body, &p))
	require.Equal(t, 1, p.Version)
	require.Equal(t, prov, p.Data["provider_id"])
	require.Equal(t, "REPUTATION_PAUSED", p.Data["event"])
	require.Equal(t, "paused", p.Data["level"])
	require.EqualValues(t, 10, p.Data["sends"])
	require.EqualValues(t, 1, p.Data["bounces"])
	require.EqualValues(t, 0, p.Data["complaints"])
	require.InDelta(t, 0.1, p.Data["bounce_rate"], 1e-9)
	require.EqualValues(t, 3600, p.Data["window_seconds"])
	require.Contains(t, p.Data["detail"], "bounce rate 10.00%")
	require.NotContains(t, p.Data, "message_id")
	require.NotContains(t, p.Data, "recipient")

	_, err = s.account.ResumeProvider(s.ctx("a"), &v1.ResumeProviderRequest{Id: prov})
	require.NoError(t, err)
	got = subscribed.waitCount(t, 2)
	require.Equal(t, "reputation.resumed", got[1].Type)
	require.NoError(t, verifyPython(t, got, secret), "signed, and valid against the published schema")

	// The delivery log lists them, about the configuration.
	log, err := s.webhooks.ListWebhookDeliveries(s.ctx("a"), &v1.ListWebhookDeliveriesRequest{WebhookId: created.GetWebhook().GetId()})
	require.NoError(t, err)
	require.Len(t, log.GetDeliveries(), 2)
	for _, d := range log.GetDeliveries() {
		require.Equal(t, prov, d.GetMessageId())
		require.Empty(t, d.GetRecipient())
	}

	// The others: message events only for the unfiltered endpoint, nothing
	// for the rest (given time to arrive: the events came before the resume).
	all.waitCount(t, 1)
	time.Sleep(time.Second)
	for _, r := range all.requests() {
		require.True(t, strings.HasPrefix(r.Type, "message."), "an endpoint without a type filter gets message events only: %s", r.Type)
	}
	require.Empty(t, warnOnly.requests())
	require.Empty(t, other.requests(), "another account's endpoint")
	require.Len(t, subscribed.requests(), 2)
}
