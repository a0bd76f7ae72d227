package e2e

import (
	"context"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/testkit/smtpsink"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

func TestConcurrentIdempotentSendsDeliverOnce(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	const n = 16
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := simple("jane@example.com")
			req.IdempotencyKey = "order-42"
			resp, err := s.send.SendEmail(s.ctx("a"), req)
			if err == nil {
				ids[i] = resp.GetMessageId()
			}
		}()
	}
	wg.Wait()
	for _, id := range ids {
		require.Equal(t, ids[0], id, "every answer names the first message")
	}
	s.waitStatus("a", ids[0], v1.MessageStatus_SENT)
	// Give any duplicate a chance to show up before counting.
	time.Sleep(500 * time.Millisecond)
	require.Equal(t, 1, s.sink.Count())
	list, err := s.report.ListMessages(s.ctx("a"), &v1.ListMessagesRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetMessages(), 1)
}

func TestScheduledIsNotDeliveredBeforeSendAt(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	sendAt := time.Now().Add(2 * time.Second)
	req := simple("jane@example.com")
	req.SendAt = timestamppb.New(sendAt)
	resp, err := s.send.SendEmail(s.ctx("a"), req)
	require.NoError(t, err)
	require.Equal(t, v1.MessageStatus_SCHEDULED, resp.GetStatus())
	s.waitStatus("a", resp.GetMessageId(), v1.MessageStatus_SENT)
	msgs := s.sink.Messages()
	require.Len(t, msgs, 1)
	require.False(t, msgs[0].ReceivedAt.Before(sendAt), "delivered at %v, before send_at %v", msgs[0].ReceivedAt, sendAt)
}

func TestCancelScheduled(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	req := simple("jane@example.com")
	req.SendAt = timestamppb.New(time.Now().Add(1500 * time.Millisecond))
	id := s.sendOK("a", req)

	_, err := s.send.CancelScheduled(s.ctx("b"), &v1.CancelScheduledRequest{MessageId: id})
	require.Equal(t, codes.NotFound, status.Code(err), "another account cannot cancel")

	resp, err := s.send.CancelScheduled(s.ctx("a"), &v1.CancelScheduledRequest{MessageId: id})
	require.NoError(t, err)
	require.Equal(t, v1.MessageStatus_CANCELED, resp.GetStatus())

	time.Sleep(2500 * time.Millisecond) // past send_at and a relay pass
	got := s.waitStatus("a", id, v1.MessageStatus_CANCELED)
	require.Equal(t, v1.MessageStatus_CANCELED, got.GetRecipients()[0].GetStatus())
	require.Zero(t, s.sink.Count(), "a canceled message was sent")

	_, err = s.send.CancelScheduled(s.ctx("a"), &v1.CancelScheduledRequest{MessageId: id})
	require.Equal(t, codes.FailedPrecondition, status.Code(err))
}

func TestNATSDownDuringSendDeliversAfterRestart(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	s.nats.Stop()
	resp, err := s.send.SendEmail(s.ctx("a"), simple("jane@example.com"))
	if err != nil {
		// Failing clearly is allowed; silently losing is not.
		require.Contains(t, []codes.Code{codes.Unavailable, codes.DeadlineExceeded}, status.Code(err), err)
		s.nats.Restart()
		return
	}
	s.nats.Restart()
	s.waitStatus("a", resp.GetMessageId(), v1.MessageStatus_SENT)
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, 1, s.sink.Count())
}

// TestWorkerKilledMidSendIsRedelivered runs the worker as its own process,
// kills it with SIGKILL while the SMTP server holds the message data, and
// checks that a new worker delivers the message once, saying in the timeline
// that the first attempt was interrupted.
func TestWorkerKilledMidSendIsRedelivered(t *testing.T) {
	t.Parallel()
	bin, err := workerBinary()
	require.NoError(t, err)
	s := newStack(t, stackOptions{noWorker: true, ackWait: 2 * time.Second})
	// The first transaction stalls at DATA and, once released, drops without
	// accepting: the killed worker's message never reached the mailbox.
	s.sink.Script(smtpsink.Action{Stage: smtpsink.AtData, Stall: true, Drop: true})

	start := func() *exec.Cmd {
		cmd := exec.Command(bin)
		cmd.Env = s.workerEnv()
		cmd.Stderr = testWriter{t}
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	first := start()
	id := s.sendOK("a", simple("jane@example.com"))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, s.sink.WaitStalled(ctx, 1))
	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	_ = first.Wait()
	s.sink.Release()

	start()
	resp := s.waitStatus("a", id, v1.MessageStatus_SENT)
	require.Equal(t, 1, countType(resp, queue.EventInterrupted), "timeline: %v", eventTypes(resp))
	require.Equal(t, int32(2), resp.GetMessage().GetAttempts())
	require.Equal(t, 1, s.sink.Count())
}

func TestAccountIsolation(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	id := s.sendOK("a", simple("jane@example.com"))
	s.waitStatus("a", id, v1.MessageStatus_SENT)

	_, err := s.report.GetMessage(s.ctx("b"), &v1.GetMessageRequest{MessageId: id})
	require.Equal(t, codes.NotFound, status.Code(err))
	list, err := s.report.ListMessages(s.ctx("b"), &v1.ListMessagesRequest{})
	require.NoError(t, err)
	require.Empty(t, list.GetMessages())
	stats, err := s.report.GetStats(s.ctx("b"), &v1.GetStatsRequest{})
	require.NoError(t, err)
	require.Empty(t, stats.GetBuckets())

	// An unauthenticated caller learns nothing either.
	_, err = s.report.GetMessage(context.Background(), &v1.GetMessageRequest{MessageId: id})
	require.Equal(t, codes.Unauthenticated, status.Code(err))
}

func TestSandboxOutcomes(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	tests := []struct {
		to   string
		want v1.MessageStatus_Value
	}{
		{"someone@example.com", v1.MessageStatus_DELIVERED},
		{"bounce@example.com", v1.MessageStatus_BOUNCED},
		{"complaint+x@example.com", v1.MessageStatus_COMPLAINED},
		{"transient@example.com", v1.MessageStatus_DELIVERED},
		{"reject@example.com", v1.MessageStatus_FAILED},
		{"timeout@example.com", v1.MessageStatus_FAILED},
	}
	for _, tt := range tests {
		t.Run(tt.to, func(t *testing.T) {
			t.Parallel()
			id := s.sendOK("sandbox", simple(tt.to))
			s.waitStatus("sandbox", id, tt.want)
		})
	}
}

func TestInvalidInputGetsFieldLevelErrors(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	tests := []struct {
		name  string
		edit  func(*v1.SendEmailRequest)
		code  codes.Code
		field string
	}{
		{"bad address", func(r *v1.SendEmailRequest) { r.Message.To[0].Address = "not an address" }, codes.InvalidArgument, "message.to[0].address"},
		{"header injection in name", func(r *v1.SendEmailRequest) { r.Message.From.Name = "x\r\nBcc: evil@example.com" }, codes.InvalidArgument, "message.from.name"},
		{"header injection in subject", func(r *v1.SendEmailRequest) { r.Message.Subject = "hi\nBcc: evil@example.com" }, codes.InvalidArgument, "message.subject"},
		{"no body", func(r *v1.SendEmailRequest) { r.Message.TextBody = "" }, codes.InvalidArgument, "message.text_body"},
		{"too many recipients", func(r *v1.SendEmailRequest) {
			for range 60 {
				r.Message.Cc = append(r.Message.Cc, &v1.Address{Address: "x@example.com"})
			}
		}, codes.ResourceExhausted, "message"},
		{"unknown provider", func(r *v1.SendEmailRequest) { r.ProviderId = "00000000-0000-0000-0000-000000000001" }, codes.FailedPrecondition, "provider_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := simple("jane@example.com")
			tt.edit(req)
			_, err := s.send.SendEmail(s.ctx("a"), req)
			require.Equal(t, tt.code, status.Code(err), err)
			require.Contains(t, status.Convert(err).Message(), tt.field)
		})
	}
	list, err := s.report.ListMessages(s.ctx("a"), &v1.ListMessagesRequest{})
	require.NoError(t, err)
	require.Empty(t, list.GetMessages(), "a rejected message was stored")
}

// TestCanceledJobOnStreamIsNotSent covers the relay publishing a scheduled job
// and then failing to commit, while CancelScheduled succeeds: the job of a
// canceled message is on the stream. The worker checks before sending.
func TestCanceledJobOnStreamIsNotSent(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	req := simple("jane@example.com")
	req.SendAt = timestamppb.New(time.Now().Add(time.Hour))
	id := s.sendOK("a", req)
	_, err := s.send.CancelScheduled(s.ctx("a"), &v1.CancelScheduledRequest{MessageId: id})
	require.NoError(t, err)

	// What the relay would have published before its commit failed.
	ctx := waitCtx(t)
	var content []byte
	require.NoError(t, s.db.Pool.QueryRow(ctx, `SELECT content FROM message_contents WHERE message_id = $1`, id).Scan(&content))
	msg := nats.NewMsg(queue.SendSubject("smtp", s.accounts["a"].AccountID))
	msg.Data = content
	msg.Header.Set(jetstream.MsgIDHeader, id)
	_, err = s.js.PublishMsg(ctx, msg)
	require.NoError(t, err)

	// The worker takes the job and acks it without sending.
	require.Eventually(t, func() bool {
		st, err := s.js.Stream(ctx, queue.SendStream)
		return err == nil && st.CachedInfo().State.Msgs == 0
	}, 20*time.Second, 20*time.Millisecond, "the job is consumed")
	time.Sleep(200 * time.Millisecond)
	require.Zero(t, s.sink.Count(), "a canceled message was sent")
	got := s.waitStatus("a", id, v1.MessageStatus_CANCELED)
	require.Equal(t, 0, countType(got, queue.EventStarted), "timeline: %v", eventTypes(got))
}
