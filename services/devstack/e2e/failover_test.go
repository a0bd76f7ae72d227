package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/testkit/smtpsink"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// withFallback gives account name's SMTP configuration (the sink) a sandbox
// fallback through AccountService, and returns the fallback's id.
func (s *stack) withFallback(name string) string {
	s.t.Helper()
	fb, err := s.account.PutProvider(s.ctx(name), &v1.PutProviderRequest{
		Name: "fallback", Settings: &v1.PutProviderRequest_Sandbox{Sandbox: &v1.SandboxSettings{}},
	})
	require.NoError(s.t, err)
	_, err = s.account.PutProvider(s.ctx(name), &v1.PutProviderRequest{
		Id: s.accounts[name].ProviderID, Name: "primary",
		Settings: &v1.PutProviderRequest_Smtp{Smtp: &v1.SmtpSettings{
			Host: s.sink.Host(), Port: int32(s.sink.Port()), TlsMode: "none", PoolSize: 4,
		}},
		FallbackProviderId: fb.GetProvider().GetId(),
	})
	require.NoError(s.t, err)
	return fb.GetProvider().GetId()
}

func eventsOf(resp *v1.GetMessageResponse, typ string) []*v1.MessageEvent {
	var out []*v1.MessageEvent
	for _, e := range resp.GetEvents() {
		if e.GetType() == typ {
			out = append(out, e)
		}
	}
	return out
}

// TestFailoverAfterTransientFailures: the primary SMTP server answers 451 to
// everything; after WORKER_FAILOVER_AFTER (3) transient failures the message
// moves to the sandbox fallback, is delivered there, and the timeline and the
// message's provider say so.
func TestFailoverAfterTransientFailures(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{maxAttempts: 5})
	fallback := s.withFallback("a")
	s.sink.RejectRcpt("someone@example.org", smtpsink.Reply{Code: 451, Enhanced: "4.3.0", Message: "try again later"})

	id := s.sendOK("a", simple("someone@example.org"))
	resp := s.waitStatus("a", id, v1.MessageStatus_DELIVERED)
	t.Logf("timeline: %v", eventTypes(resp))

	require.Equal(t, 2, countType(resp, "RETRY_SCHEDULED"), "attempts 1 and 2 are retried on the primary")
	fo := eventsOf(resp, "FAILOVER")
	require.Len(t, fo, 1)
	require.EqualValues(t, 3, fo[0].GetAttempt(), "the failover follows the third transient failure")
	require.Equal(t, v1.MessageStatus_RETRYING, fo[0].GetStatus())
	require.Contains(t, fo[0].GetDetail(), "moved from provider "+s.accounts["a"].ProviderID)
	require.Contains(t, fo[0].GetDetail(), "451")
	require.Contains(t, fo[0].GetDetail(), "to fallback "+fallback+" (sandbox)")
	sent := eventsOf(resp, "SENT")
	require.Len(t, sent, 1)
	require.EqualValues(t, 4, sent[0].GetAttempt(), "the fallback's attempts count on")
	require.Equal(t, 4, countType(resp, "ATTEMPT_STARTED"))
	require.Equal(t, fallback, resp.GetMessage().GetProviderId(), "the message names the provider that sent it")
	require.Equal(t, "sandbox", resp.GetMessage().GetProviderKind())
	require.Zero(t, s.sink.Count(), "the primary accepted nothing")

	// The primary's job delivered again (as after a crash before its ack) is
	// stale: acked without sending, nothing new in the timeline.
	var job []byte
	require.NoError(t, s.db.Pool.QueryRow(context.Background(), `SELECT content FROM message_contents WHERE message_id = $1`, id).Scan(&job))
	var decoded queuev1.SendJob
	require.NoError(t, proto.Unmarshal(job, &decoded))
	require.Equal(t, id, decoded.GetMessageId())
	require.Equal(t, s.accounts["a"].ProviderID, decoded.GetProviderId())
	msg := nats.NewMsg(queue.SendSubject("smtp", s.accounts["a"].AccountID))
	msg.Data = job
	msg.Header.Set(jetstream.MsgIDHeader, id+":again")
	_, err := s.js.PublishMsg(context.Background(), msg)
	require.NoError(t, err)
	st, err := s.js.Stream(context.Background(), queue.SendStream)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(msg.Subject))
		return err == nil && info.State.Msgs == 0
	}, 10*time.Second, 20*time.Millisecond, "the stale job is acked")
	again, err := s.report.GetMessage(s.ctx("a"), &v1.GetMessageRequest{MessageId: id})
	require.NoError(t, err)
	require.Equal(t, eventTypes(resp), eventTypes(again))
	require.Zero(t, s.sink.Count())
}

// TestFailoverWhenPrimaryUnhealthy: a primary whose credentials were refused
// (healthy = false) sends nothing: messages go straight to the fallback. A
// refused login marks it so (TestSecretHygiene and the worker's credentials
// path); here the flag is set in the database.
func TestFailoverWhenPrimaryUnhealthy(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	fallback := s.withFallback("a")
	_, err := s.db.Pool.Exec(context.Background(),
		`UPDATE provider_configs SET healthy = false, health_note = 'credentials refused: 535 5.7.8' WHERE id = $1`,
		s.accounts["a"].ProviderID)
	require.NoError(t, err)

	id := s.sendOK("a", simple("someone@example.org"))
	resp := s.waitStatus("a", id, v1.MessageStatus_DELIVERED)
	t.Logf("timeline: %v", eventTypes(resp))
	require.Equal(t, []string{"ACCEPTED", "FAILOVER", "ATTEMPT_STARTED", "SENT", "DELIVERED"}, eventTypes(resp))
	fo := eventsOf(resp, "FAILOVER")[0]
	require.EqualValues(t, 0, fo.GetAttempt(), "no attempt was made on the primary")
	require.True(t, strings.Contains(fo.GetDetail(), "unhealthy: credentials refused"), fo.GetDetail())
	require.EqualValues(t, 1, eventsOf(resp, "SENT")[0].GetAttempt())
	require.Equal(t, fallback, resp.GetMessage().GetProviderId())
	require.Zero(t, s.sink.Count())
}

// TestNoFallbackBehavesAsBefore: without a fallback, transient failures are
// retried on the primary until the attempts run out, and nothing fails over.
func TestNoFallbackBehavesAsBefore(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{maxAttempts: 4})
	s.sink.RejectRcpt("someone@example.org", smtpsink.Reply{Code: 451, Enhanced: "4.3.0", Message: "try again later"})
	id := s.sendOK("a", simple("someone@example.org"))
	resp := s.waitStatus("a", id, v1.MessageStatus_FAILED)
	require.Zero(t, countType(resp, "FAILOVER"))
	require.Equal(t, 3, countType(resp, "RETRY_SCHEDULED"))
	require.Equal(t, 4, countType(resp, "ATTEMPT_STARTED"))
	require.Equal(t, s.accounts["a"].ProviderID, resp.GetMessage().GetProviderId())
}
