package e2e

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// TestSuppressedRecipientGetsNothing: a suppressed recipient is marked
// SUPPRESSED and the SMTP server receives the message for the others only; a
// message to suppressed recipients alone is SUPPRESSED and sends nothing.
func TestSuppressedRecipientGetsNothing(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	_, err := s.account.AddSuppression(s.ctx("a"), &v1.AddSuppressionRequest{Address: "Blocked@example.org", Reason: "complaint"})
	require.NoError(t, err)

	req := simple("ok@example.org")
	req.Message.Cc = []*v1.Address{{Address: "blocked@example.org"}}
	id := s.sendOK("a", req)
	var got *v1.GetMessageResponse
	require.Eventually(t, func() bool {
		resp, err := s.report.GetMessage(s.ctx("a"), &v1.GetMessageRequest{MessageId: id})
		require.NoError(t, err)
		got = resp
		st := map[string]v1.MessageStatus_Value{}
		for _, r := range resp.GetRecipients() {
			st[r.GetAddress().GetAddress()] = r.GetStatus()
		}
		return st["blocked@example.org"] == v1.MessageStatus_SUPPRESSED && st["ok@example.org"] == v1.MessageStatus_SENT
	}, 30*time.Second, 20*time.Millisecond, "recipients: %v", got.GetRecipients())
	require.Equal(t, 1, countType(got, "SUPPRESSED"))

	only := s.sendOK("a", simple("BLOCKED@example.org"))
	s.waitStatus("a", only, v1.MessageStatus_SUPPRESSED)

	msgs := s.sink.Messages()
	require.Len(t, msgs, 1, "one message reached the SMTP server")
	require.Equal(t, []string{"ok@example.org"}, msgs[0].To)

	// Another account does not share the suppression.
	other := s.sendOK("b", simple("blocked@example.org"))
	s.waitStatus("b", other, v1.MessageStatus_SENT)
}

// TestUnverifiedSenderIsRefused: REQUIRE_VERIFIED_SENDERS is on by default.
func TestUnverifiedSenderIsRefused(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	req := simple("x@example.org")
	req.Message.From.Address = "someone@elsewhere.example"
	_, err := s.send.SendEmail(s.ctx("a"), req)
	require.Equal(t, codes.FailedPrecondition, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "message.from.address")
}
