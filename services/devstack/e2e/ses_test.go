package e2e

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/provider/kinds"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/testkit/sestest"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

const sesSecret = "e2e/SES+secret+access+key+0123456789abcd"

// putSES adds an ses provider to account name; the stack's operator endpoint
// (sesStack) is the emulator or a fake.
func (s *stack) putSES(name, provider, accessKeyID string) string {
	s.t.Helper()
	resp, err := s.account.PutProvider(s.ctx(name), &v1.PutProviderRequest{Name: provider, Settings: &v1.PutProviderRequest_Ses{Ses: &v1.SesSettings{
		Region: "eu-west-1", AccessKeyId: accessKeyID, SecretAccessKey: sesSecret, ConfigurationSet: "e2e-events",
	}}})
	require.NoError(s.t, err)
	return resp.GetProvider().GetId()
}

// sesStack is the options of a stack whose SES endpoint (the operator's
// SES_ENDPOINT) is url.
func sesStack(url string) stackOptions {
	return stackOptions{outbound: kinds.Config{SESEndpoint: url}}
}

// TestSESSendIsSentWithSESMessageID: a message with an attachment through an
// account's SES provider pointed at the aws-ses-v2-local emulator is SENT
// with the SES message id in the timeline, and the emulator stored it with
// its attachment. VerifyProvider reads the emulator's account quota.
func TestSESSendIsSentWithSESMessageID(t *testing.T) {
	t.Parallel()
	emu := sestest.StartEmulator(t)
	s := newStack(t, sesStack(emu.URL))
	prov := s.putSES("a", "ses", "AKIAE2EEMULATOR00001")

	pdf := bytes.Repeat([]byte{0x25, 0x50, 0x44, 0x46, 0x00, 0xff, 0x10}, 3000)
	req := simple("jane@example.com")
	req.ProviderId = prov
	req.Message.Subject = "SES e2e " + t.Name()
	req.Message.Bcc = []*v1.Address{{Address: "hidden@example.org"}}
	req.Message.Attachments = []*v1.Attachment{{Filename: "report.pdf", ContentType: "application/pdf", Content: pdf}}
	req.Message.Tags = map[string]string{"campaign": "autumn"}
	id := s.sendOK("a", req)
	resp := s.waitStatus("a", id, v1.MessageStatus_SENT)

	require.Equal(t, []string{queue.EventAccepted, queue.EventStarted, queue.EventSent}, eventTypes(resp))
	sesID := resp.GetMessage().GetProviderMessageId()
	require.NotEmpty(t, sesID)
	require.Equal(t, "SES accepted: "+sesID, resp.GetEvents()[2].GetProviderResponse())

	got, ok := emu.Email(t, sesID)
	require.True(t, ok, "the emulator stored message %s", sesID)
	require.Equal(t, req.Message.Subject, got.Subject)
	require.Equal(t, []string{"jane@example.com"}, got.Destination.To)
	require.Empty(t, got.Destination.Bcc, "bcc only in the envelope")
	require.Contains(t, got.Body.Text, "Hello there")
	require.Len(t, got.Attachments, 1)
	require.Equal(t, "report.pdf", got.Attachments[0].Filename)
	require.Equal(t, pdf, got.Attachments[0].Data(), "the attachment arrives intact")

	v, err := s.account.VerifyProvider(s.ctx("a"), &v1.VerifyProviderRequest{Id: prov})
	require.NoError(t, err)
	require.True(t, v.GetResult().GetOk(), v.GetResult().GetDetail())
	require.Equal(t, 5000.0, v.GetResult().GetSes().GetMaxSendRate())
	require.True(t, v.GetResult().GetSes().GetProductionAccess())
}

// TestSESOutcomes: what SES answers decides the message's fate through the
// whole pipeline: throttling is retried and then sent, MessageRejected fails
// at once, a suspended account fails and marks the configuration unhealthy.
func TestSESOutcomes(t *testing.T) {
	t.Parallel()
	emu := sestest.StartEmulator(t)
	fake := sestest.NewFake(t)
	s := newStack(t, sesStack(fake.URL))
	fake.ForwardTo(emu.URL)
	fake.FailRecipient("rejected@example.org", sestest.ErrMessageRejected)
	fake.FailAccessKey("AKIAE2ESUSPENDED0001", sestest.ErrAccountSuspended)
	prov := s.putSES("a", "ses-fake", "AKIAE2EFAKE000000001")

	t.Run("throttled then sent", func(t *testing.T) {
		fake.FailNext(sestest.OpSendEmail, 2, sestest.ErrTooManyRequests)
		req := simple("jane@example.com")
		req.ProviderId = prov
		id := s.sendOK("a", req)
		resp := s.waitStatus("a", id, v1.MessageStatus_SENT)
		require.Equal(t, 2, countType(resp, queue.EventRetry), "events: %v", eventTypes(resp))
		for _, e := range resp.GetEvents() {
			if e.GetType() == queue.EventRetry {
				require.Contains(t, e.GetProviderResponse(), "TooManyRequestsException")
			}
		}
		_, ok := emu.Email(t, resp.GetMessage().GetProviderMessageId())
		require.True(t, ok, "forwarded to the emulator")
	})

	t.Run("rejected", func(t *testing.T) {
		req := simple("rejected@example.org")
		req.ProviderId = prov
		id := s.sendOK("a", req)
		resp := s.waitStatus("a", id, v1.MessageStatus_FAILED)
		require.Contains(t, resp.GetMessage().GetLastError(), "MessageRejected")
		require.Zero(t, countType(resp, queue.EventRetry))
	})

	t.Run("account suspended", func(t *testing.T) {
		suspended := s.putSES("a", "ses-suspended", "AKIAE2ESUSPENDED0001")
		req := simple("jane@example.com")
		req.ProviderId = suspended
		id := s.sendOK("a", req)
		resp := s.waitStatus("a", id, v1.MessageStatus_FAILED)
		require.Contains(t, resp.GetMessage().GetLastError(), "AccountSuspendedException")
		require.NotContains(t, resp.GetMessage().GetLastError(), sesSecret)
		list, err := s.account.ListProviders(s.ctx("a"), &v1.ListProvidersRequest{})
		require.NoError(t, err)
		for _, p := range list.GetProviders() {
			if p.GetId() == suspended {
				require.False(t, p.GetHealthy(), "marked unhealthy")
			}
		}
	})
}
