package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	stdmime "mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/provider/kinds"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/testkit/gmailtest"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// putGmail adds a gmail provider to account name; the stack's operator
// endpoints point at the fake (gmailStack).
func (s *stack) putGmail(name, provider, refreshToken string) string {
	s.t.Helper()
	resp, err := s.account.PutProvider(s.ctx(name), &v1.PutProviderRequest{Name: provider, Settings: &v1.PutProviderRequest_Gmail{Gmail: &v1.GmailSettings{
		ClientId: gmailtest.DefaultClientID, ClientSecret: gmailtest.DefaultClientSecret, RefreshToken: refreshToken,
	}}})
	require.NoError(s.t, err)
	return resp.GetProvider().GetId()
}

// gmailStack is the options of a stack whose Gmail endpoints (the
// operator's GMAIL_TOKEN_URL and GMAIL_API_ENDPOINT) are fake's.
func gmailStack(fake *gmailtest.Server) stackOptions {
	return stackOptions{outbound: kinds.Config{GmailTokenURL: fake.TokenURL(), GmailAPIEndpoint: fake.APIEndpoint()}}
}

// TestGmailSendIsSentWithGmailID: a message through an account's Gmail
// provider (the real client against a fake Gmail and token endpoint) is SENT
// with the Gmail message id in the timeline; the fake got the MIME with the
// attachment intact and the bcc recipient, whose address the delivered copy
// does not show. VerifyProvider reads the profile and the result is listed.
func TestGmailSendIsSentWithGmailID(t *testing.T) {
	t.Parallel()
	fake := gmailtest.StartTest(t)
	s := newStack(t, gmailStack(fake))
	prov := s.putGmail("a", "gmail", gmailtest.DefaultRefreshToken)

	pdf := bytes.Repeat([]byte{0x25, 0x50, 0x44, 0x46, 0x00, 0xff, 0x10}, 3000)
	req := simple("jane@example.com")
	req.ProviderId = prov
	req.Message.Bcc = []*v1.Address{{Address: "hidden@example.org", Name: "Hidden"}}
	req.Message.Attachments = []*v1.Attachment{{Filename: "report.pdf", ContentType: "application/pdf", Content: pdf}}
	id := s.sendOK("a", req)
	resp := s.waitStatus("a", id, v1.MessageStatus_SENT)

	got := fake.ByMessageID(id)
	require.Len(t, got, 1)
	require.Equal(t, []string{"jane@example.com", "hidden@example.org"}, got[0].Recipients)
	require.Equal(t, []string{queue.EventAccepted, queue.EventStarted, queue.EventSent}, eventTypes(resp))
	sent := resp.GetEvents()[2]
	require.Equal(t, "Gmail accepted: "+got[0].ID+" (thread "+got[0].ThreadID+")", sent.GetProviderResponse())
	require.Equal(t, got[0].ID, resp.GetMessage().GetProviderMessageId())

	seen := got[0].Delivered()
	require.NotContains(t, string(seen), "hidden@example.org")
	m, err := mail.ReadMessage(bytes.NewReader(seen))
	require.NoError(t, err)
	require.Contains(t, m.Header.Get("Message-Id"), id)
	_, params, err := stdmime.ParseMediaType(m.Header.Get("Content-Type"))
	require.NoError(t, err)
	mr := multipart.NewReader(m.Body, params["boundary"])
	var attached []byte
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		if strings.Contains(p.Header.Get("Content-Disposition"), "report.pdf") {
			b, err := io.ReadAll(p)
			require.NoError(t, err)
			attached, err = base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(b)))
			require.NoError(t, err)
		}
	}
	require.Equal(t, pdf, attached, "the attachment arrives intact")

	vr, err := s.account.VerifyProvider(s.ctx("a"), &v1.VerifyProviderRequest{Id: prov})
	require.NoError(t, err)
	require.True(t, vr.GetResult().GetOk(), vr.GetResult().GetDetail())
	require.Contains(t, vr.GetResult().GetDetail(), "authorized for "+gmailtest.DefaultEmail+" (1 messages, 1 threads)")
	list, err := s.account.ListProviders(s.ctx("a"), &v1.ListProvidersRequest{})
	require.NoError(t, err)
	for _, p := range list.GetProviders() {
		if p.GetId() == prov {
			require.Equal(t, vr.GetResult().GetDetail(), p.GetLastVerify().GetDetail())
			require.NotNil(t, p.GetLastVerify().GetCheckedAt())
		}
	}
	require.Len(t, fake.Messages(), 1, "verification sent nothing")
}

// TestGmailThrottlingIsRetried: a 429 with Retry-After is retried, then SENT.
func TestGmailThrottlingIsRetried(t *testing.T) {
	t.Parallel()
	fake := gmailtest.StartTest(t)
	s := newStack(t, gmailStack(fake))
	prov := s.putGmail("a", "gmail", gmailtest.DefaultRefreshToken)
	fake.FailNext(1, gmailtest.Failure{Status: 429, Reason: "rateLimitExceeded", Message: "User-rate limit exceeded", RetryAfter: "1"})
	req := simple("jane@example.com")
	req.ProviderId = prov
	id := s.sendOK("a", req)
	resp := s.waitStatus("a", id, v1.MessageStatus_SENT)
	require.Equal(t, 1, countType(resp, queue.EventRetry), "timeline: %v", eventTypes(resp))
	for _, e := range resp.GetEvents() {
		if e.GetType() == queue.EventRetry {
			require.Contains(t, e.GetProviderResponse(), "429 rateLimitExceeded")
		}
	}
	require.Len(t, fake.ByMessageID(id), 1)
}

// TestGmailRevokedRefreshTokenFails: a refused refresh token fails the message
// and marks the configuration unhealthy.
func TestGmailRevokedRefreshTokenFails(t *testing.T) {
	t.Parallel()
	fake := gmailtest.StartTest(t)
	s := newStack(t, gmailStack(fake))
	prov := s.putGmail("a", "gmail-revoked", "1//revoked-refresh-token")
	req := simple("jane@example.com")
	req.ProviderId = prov
	id := s.sendOK("a", req)
	resp := s.waitStatus("a", id, v1.MessageStatus_FAILED)
	require.Contains(t, resp.GetMessage().GetLastError(), "invalid_grant")
	require.NotContains(t, resp.GetMessage().GetLastError(), "revoked-refresh-token")
	require.Empty(t, fake.Messages())
	list, err := s.account.ListProviders(s.ctx("a"), &v1.ListProvidersRequest{})
	require.NoError(t, err)
	for _, p := range list.GetProviders() {
		if p.GetId() == prov {
			require.False(t, p.GetHealthy(), "marked unhealthy")
		}
	}
}

// TestGmailBounceIsMapped: the worker's poller finds Gmail's bounce notice
// in the sending mailbox (users.history.list, users.messages.get with
// format=metadata, both checked against the discovery document) and the
// message is BOUNCED hard_bounce for its recipient, which is suppressed: the
// next message to it is SUPPRESSED. Mail from a person and a notice about
// another recipient change nothing.
func TestGmailBounceIsMapped(t *testing.T) {
	t.Parallel()
	fake := gmailtest.StartTest(t)
	s := newStack(t, gmailStack(fake))
	prov := s.putGmail("a", "gmail", gmailtest.DefaultRefreshToken)
	// The first poll of a configuration starts at the mailbox's current
	// history: wait for it, so the notice comes after.
	require.Eventually(t, func() bool {
		var n int
		err := s.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM gmail_poll_cursors WHERE provider_id = $1`, prov).Scan(&n)
		return err == nil && n == 1
	}, 20*time.Second, 50*time.Millisecond)

	req := simple("jane@example.com")
	req.ProviderId = prov
	id := s.sendOK("a", req)
	s.waitStatus("a", id, v1.MessageStatus_SENT)
	sent := fake.ByMessageID(id)[0]
	fake.Receive([]byte("From: Bob <bob@example.org>\r\nTo: " + gmailtest.DefaultEmail + "\r\nSubject: hi\r\n\r\nhello\r\n"))
	fake.Receive(fake.BounceOf(sent, gmailtest.Bounce{Failed: []string{"someone-else@example.com"}}))
	fake.Receive(fake.BounceOf(sent, gmailtest.Bounce{Failed: []string{"jane@example.com"}}))

	resp := s.waitStatus("a", id, v1.MessageStatus_BOUNCED)
	var bounced []*v1.MessageEvent
	for _, e := range resp.GetEvents() {
		if e.GetType() == queue.EventBounced {
			bounced = append(bounced, e)
		}
	}
	require.Len(t, bounced, 1, "timeline: %v", eventTypes(resp))
	require.Equal(t, "hard_bounce", bounced[0].GetErrorClass())
	require.Equal(t, "hard bounce (X-Failed-Recipients, Gmail notice): address suppressed", bounced[0].GetDetail())
	require.Equal(t, []string{"jane@example.com"}, bounced[0].GetRecipients())

	again := s.sendOK("a", req)
	s.waitStatus("a", again, v1.MessageStatus_SUPPRESSED)
	require.Len(t, fake.ByMessageID(again), 0, "a suppressed address is not sent to")
	require.Empty(t, fake.Violations())
}
