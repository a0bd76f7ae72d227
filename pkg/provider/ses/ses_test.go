package ses_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/mime"
	"github.com/namirasoft/email-sender/pkg/netguard"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/providertest"
	"github.com/namirasoft/email-sender/pkg/provider/ses"
	"github.com/namirasoft/email-sender/pkg/testkit/sestest"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

const (
	keyID     = "AKIAEMAILSENDERTEST1"
	badKeyID  = "AKIAEMAILSENDERBAD01"
	secretKey = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYsecretKEY"
)

func config(t *testing.T, key string, extra map[string]any) provider.Config {
	t.Helper()
	settings := map[string]any{"region": "eu-west-1", "access_key_id": key}
	for k, v := range extra {
		settings[k] = v
	}
	s, err := json.Marshal(settings)
	require.NoError(t, err)
	sec, err := json.Marshal(map[string]string{"secret_access_key": secretKey})
	require.NoError(t, err)
	return provider.Config{
		ID: "cfg-" + t.Name() + "-" + key, AccountID: "acct-1", Kind: "ses", Settings: s, Secret: sec,
		Version: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

// newSender is a sender whose SES endpoint (the operator's setting) is
// endpoint, a fake or the emulator on loopback, which its guard allows.
func newSender(t *testing.T, endpoint string, o ...ses.Options) *ses.Sender {
	t.Helper()
	var opts ses.Options
	if len(o) > 0 {
		opts = o[0]
	}
	opts.Endpoint = endpoint
	if opts.Guard == nil {
		opts.Guard = netguard.AllowAll()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := ses.New(opts)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

func delivery(cfg provider.Config, id string, rcpts ...string) *provider.Delivery {
	return providertest.Delivery(&providertest.Env{Config: cfg}, id, rcpts...)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// arrived returns the recipients of every copy of messageID the emulator
// stored (the conformance messages carry their id in the subject).
func arrived(t *testing.T, emu *sestest.Emulator, messageID string) [][]string {
	var out [][]string
	for _, m := range emu.Emails(t) {
		if m.Subject == "conformance "+messageID {
			out = append(out, m.Destination.To)
		}
	}
	return out
}

// TestConformance: accepted sends go through the fake to the emulator and are
// checked in its store; refusals, throttling, bad keys and hangs come from the fake.
func TestConformance(t *testing.T) {
	t.Parallel()
	emu := sestest.StartEmulator(t)
	providertest.Run(t, providertest.HarnessFunc(func(t *testing.T) *providertest.Env {
		fake := sestest.NewFake(t)
		fake.ForwardTo(emu.URL)
		fake.SetAccount(sestest.Account{MaxSendRate: 1000, Max24HourSend: 1e6, ProductionAccess: true, SendingEnabled: true})
		fake.FailRecipient("rejected@conformance.test", sestest.ErrMessageRejected)
		fake.FailRecipient("busy@conformance.test", sestest.ErrTooManyRequests)
		fake.FailAccessKey(badKeyID, sestest.ErrUnrecognizedKey)
		bad := config(t, badKeyID, nil)
		return &providertest.Env{
			Sender:  newSender(t, fake.URL),
			Config:  config(t, keyID, nil),
			Secrets: []string{secretKey},
			Recipient: func(b providertest.Behavior) string {
				switch b {
				case providertest.Reject:
					return "rejected@conformance.test"
				case providertest.Fail:
					return "busy@conformance.test"
				}
				return "ok@conformance.test"
			},
			Arrived:        func(t *testing.T, id string) [][]string { return arrived(t, emu, id) },
			Hang:           func(*testing.T) { fake.Hang() },
			BadCredentials: &bad,
		}
	}))
}

// TestEmulator_RawMessageWithAttachments sends straight to the emulator and
// reads back what it parsed from the raw MIME: the attachment and the inline
// part arrive with their bytes, and the SES message id is the emulator's.
func TestEmulator_RawMessageWithAttachments(t *testing.T) {
	t.Parallel()
	emu := sestest.StartEmulator(t)
	s := newSender(t, emu.URL)
	cfg := config(t, keyID, map[string]any{"configuration_set": "tracking"})
	d := delivery(cfg, "01JSESRAW0000000000000001", "to@example.org", "cc@example.org", "hidden@example.org")
	m := d.Job.Message
	m.Subject = "SES raw Grüße 01JSESRAW0000000000000001"
	m.To = m.To[:1]
	m.Cc = []*emailsenderv1.Address{{Address: "cc@example.org", Name: "Cc Person"}}
	m.Bcc = []*emailsenderv1.Address{{Address: "hidden@example.org"}}
	m.HtmlBody = `<p>logo <img src="cid:logo"></p>`
	pdf := bytes.Repeat([]byte("%PDF-1.4 binary \x00\x01\x02\r\n"), 200)
	m.Attachments = []*emailsenderv1.Attachment{
		{Filename: "report.pdf", ContentType: "application/pdf", Content: pdf},
		{Filename: "logo.png", ContentType: "image/png", Content: []byte("\x89PNG fake"), ContentId: "logo"},
	}
	m.Tags = map[string]string{"campaign": "autumn"}

	out := s.Send(ctx(t), d)
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
	require.NotEmpty(t, out.MessageID)
	require.Equal(t, "SES accepted: "+out.MessageID, out.Response)

	got, ok := emu.Email(t, out.MessageID)
	require.True(t, ok, "the emulator stored message %s", out.MessageID)
	require.Equal(t, m.Subject, got.Subject)
	require.Equal(t, "sender@conformance.test", got.From[strings.LastIndex(got.From, "<")+1:len(got.From)-1])
	require.Equal(t, []string{"to@example.org"}, got.Destination.To)
	require.Len(t, got.Destination.Cc, 1)
	require.Empty(t, got.Destination.Bcc, "bcc only in the envelope")
	require.Contains(t, got.Body.Text, "hello from the conformance suite")
	// mailparser inlines the cid: image as a data: URL, so the inline part arrived.
	require.Contains(t, got.Body.HTML, `<img src="data:image/png;base64,iVBORyBmYWtl">`)
	byName := map[string]sestest.Attachment{}
	for _, a := range got.Attachments {
		byName[a.Filename] = a
	}
	require.Equal(t, pdf, byName["report.pdf"].Data())
	require.Equal(t, "application/pdf", byName["report.pdf"].ContentType)
	require.Equal(t, []byte("\x89PNG fake"), byName["logo.png"].Data())
	require.Equal(t, "<logo>", byName["logo.png"].ContentID)

	// The emulator answers GetAccount with sestest.EmulatorAccount.
	rate, ok := s.SendRate(cfg)
	require.True(t, ok)
	require.Equal(t, 5000.0, rate)
}

var boundaryRE = regexp.MustCompile(`boundary=([0-9a-zA-Z'()+_,\-./:=?]+)`)

func normalizeBoundaries(b []byte) string {
	s := string(b)
	for i, m := range boundaryRE.FindAllStringSubmatch(s, -1) {
		s = strings.ReplaceAll(s, m[1], fmt.Sprintf("BOUNDARY%d", i))
	}
	return s
}

// TestSend_Request checks the SendEmail request itself: the same MIME as the
// SMTP path, the envelope (bcc included), From, region and key, configuration
// set and the valid tags.
func TestSend_Request(t *testing.T) {
	t.Parallel()
	fake := sestest.NewFake(t)
	s := newSender(t, fake.URL)
	cfg := config(t, keyID, map[string]any{"configuration_set": "cs-main", "region": "us-east-2"})
	d := delivery(cfg, "01JSESREQ0000000000000001", "to@example.org", "hidden@example.org", "bad@@example.org")
	m := d.Job.Message
	m.To = m.To[:1]
	m.Bcc = []*emailsenderv1.Address{{Address: "hidden@example.org"}}
	m.HtmlBody = "<p>hi</p>"
	m.Attachments = []*emailsenderv1.Attachment{{Filename: "a.txt", Content: []byte("attached")}}
	m.Tags = map[string]string{
		"campaign": "autumn-2026", "ok_name": "v_1", "has space": "x", "emoji": "✓",
		"long": strings.Repeat("v", 257), "empty": "", ses.MessageIDTag: "spoofed",
	}

	out := s.Send(ctx(t), d)
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
	require.Equal(t, map[string]string{"bad@@example.org": "invalid address"}, out.Rejected)
	sends := fake.Sends()
	require.Len(t, sends, 1)
	got := sends[0]
	require.Equal(t, out.MessageID, got.MessageID)
	require.Equal(t, keyID, got.AccessKeyID)
	require.Equal(t, "us-east-2", got.Region)
	require.Equal(t, "sender@conformance.test", got.From)
	require.Equal(t, []string{"to@example.org", "hidden@example.org"}, got.To)
	require.Equal(t, "cs-main", got.ConfigurationSet)
	require.Equal(t, map[string]string{"campaign": "autumn-2026", "ok_name": "v_1", ses.MessageIDTag: "01JSESREQ0000000000000001"}, got.Tags)

	want, err := mime.Raw(m, mime.Options{MessageID: "01JSESREQ0000000000000001", Date: d.Job.AcceptedAt.AsTime()})
	require.NoError(t, err)
	require.Equal(t, normalizeBoundaries(want), normalizeBoundaries(got.Raw), "the same MIME as the SMTP path")
	require.NotContains(t, string(got.Raw), "hidden@example.org", "bcc only in the envelope")
	require.Contains(t, string(got.Raw), "Message-ID: <01JSESREQ0000000000000001@conformance.test>")
}

func TestSend_MessageIDDomain(t *testing.T) {
	t.Parallel()
	fake := sestest.NewFake(t)
	s := newSender(t, fake.URL, ses.Options{MessageIDDomain: "mail.namirasoft.test"})
	out := s.Send(ctx(t), delivery(config(t, keyID, nil), "01JSESMID", "a@example.org"))
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
	require.Contains(t, string(fake.Sends()[0].Raw), "Message-ID: <01JSESMID@mail.namirasoft.test>")
}

func TestSend_TooManyRecipients(t *testing.T) {
	t.Parallel()
	fake := sestest.NewFake(t)
	s := newSender(t, fake.URL)
	rcpts := make([]string, ses.MaxRecipients+1)
	for i := range rcpts {
		rcpts[i] = fmt.Sprintf("r%d@example.org", i)
	}
	out := s.Send(ctx(t), delivery(config(t, keyID, nil), "01JSESMANY", rcpts...))
	require.Equal(t, provider.Permanent, out.Class)
	require.Zero(t, fake.Calls(sestest.OpSendEmail))
}

// TestClassification makes the fake answer each way SES can and checks the
// outcome's class, response and retry hint.
func TestClassification(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		err        sestest.Error
		class      provider.Class
		retryAfter time.Duration
		response   string
	}{
		{"throttled", sestest.ErrTooManyRequests, provider.Transient, 0, "SES 429 TooManyRequestsException: Maximum sending rate exceeded."},
		{"throttled with Retry-After", sestest.Error{Status: 429, Code: "TooManyRequestsException", Message: "slow down", RetryAfter: 7 * time.Second}, provider.Transient, 7 * time.Second, ""},
		{"Throttling", sestest.Error{Status: 400, Code: "Throttling", Message: "Rate exceeded"}, provider.Transient, 0, ""},
		{"ThrottlingException", sestest.Error{Status: 400, Code: "ThrottlingException", Message: "Rate exceeded"}, provider.Transient, 0, ""},
		{"daily quota", sestest.Error{Status: 400, Code: "LimitExceededException", Message: "Daily message quota exceeded"}, provider.Transient, 0, ""},
		{"500 InternalFailure", sestest.Error{Status: 500, Code: "InternalFailure", Message: "oops"}, provider.Transient, 0, ""},
		{"503 without code", sestest.Error{Status: 503}, provider.Transient, 0, "SES 503"},
		{"502 with Retry-After", sestest.Error{Status: 502, RetryAfter: 3 * time.Second}, provider.Transient, 3 * time.Second, ""},
		{"429 without code", sestest.Error{Status: 429}, provider.Transient, 0, ""},
		{"MessageRejected", sestest.ErrMessageRejected, provider.Permanent, 0, "SES 400 MessageRejected: Email address is not verified."},
		{"MailFromDomainNotVerified", sestest.Error{Status: 400, Code: "MailFromDomainNotVerifiedException", Message: "MAIL FROM domain not verified"}, provider.Permanent, 0, ""},
		{"NotFound", sestest.Error{Status: 404, Code: "NotFoundException", Message: "configuration set does not exist"}, provider.Permanent, 0, ""},
		{"BadRequest", sestest.Error{Status: 400, Code: "BadRequestException", Message: "bad"}, provider.Permanent, 0, ""},
		{"400 without code", sestest.Error{Status: 400}, provider.Permanent, 0, ""},
		{"AccountSuspended", sestest.ErrAccountSuspended, provider.Credentials, 0, "SES 400 AccountSuspendedException: Your account has been suspended."},
		{"SendingPaused", sestest.ErrSendingPaused, provider.Credentials, 0, ""},
		{"UnrecognizedClient", sestest.ErrUnrecognizedKey, provider.Credentials, 0, ""},
		{"InvalidSignature", sestest.Error{Status: 403, Code: "InvalidSignatureException", Message: "signature does not match"}, provider.Credentials, 0, ""},
		{"SignatureDoesNotMatch", sestest.Error{Status: 403, Code: "SignatureDoesNotMatch", Message: "no"}, provider.Credentials, 0, ""},
		{"InvalidClientTokenId", sestest.Error{Status: 403, Code: "InvalidClientTokenId", Message: "no"}, provider.Credentials, 0, ""},
		{"AccessDenied", sestest.Error{Status: 403, Code: "AccessDeniedException", Message: "not authorized to perform ses:SendEmail"}, provider.Credentials, 0, ""},
		{"ExpiredToken", sestest.Error{Status: 403, Code: "ExpiredTokenException", Message: "expired"}, provider.Credentials, 0, ""},
		{"403 without code", sestest.Error{Status: 403}, provider.Credentials, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := sestest.NewFake(t)
			fake.FailNext(sestest.OpSendEmail, 1, tt.err)
			s := newSender(t, fake.URL)
			cfg := config(t, keyID, nil)
			out := s.Send(ctx(t), delivery(cfg, "01JSESCLASS", "a@example.org"))
			require.Equal(t, tt.class, out.Class, "err: %v", out.Err)
			require.Error(t, out.Err)
			require.Equal(t, tt.retryAfter, out.RetryAfter)
			if tt.response != "" {
				require.True(t, strings.HasPrefix(out.Response, tt.response), "response %q", out.Response)
			}
			require.NotContains(t, out.Err.Error(), secretKey)
			var api *ses.APIError
			require.ErrorAs(t, out.Err, &api)
			require.Equal(t, tt.err.Code, api.Code)
			require.Equal(t, tt.class == provider.Credentials, isCredentials(out.Err))

			// The next send (the fake answers normally again) goes through.
			out = s.Send(ctx(t), delivery(cfg, "01JSESCLASS2", "a@example.org"))
			require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
		})
	}
}

func isCredentials(err error) bool {
	return errors.Is(err, ses.ErrCredentials)
}

func TestClassification_Network(t *testing.T) {
	t.Parallel()
	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		fake := sestest.NewFake(t)
		url := fake.URL
		fake.Close()
		out := newSender(t, url).Send(ctx(t), delivery(config(t, keyID, nil), "01JSESREFUSED", "a@example.org"))
		require.Equal(t, provider.Transient, out.Class, "err: %v", out.Err)
	})
	t.Run("no answer after the request", func(t *testing.T) {
		t.Parallel()
		fake := sestest.NewFake(t)
		s := newSender(t, fake.URL)
		cfg := config(t, keyID, nil)
		require.Equal(t, provider.Sent, s.Send(ctx(t), delivery(cfg, "01JSESWARM", "a@example.org")).Class)
		fake.Hang()
		c, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		out := s.Send(c, delivery(cfg, "01JSESHANG", "a@example.org"))
		require.Equal(t, provider.Ambiguous, out.Class, "err: %v", out.Err)
		require.ErrorIs(t, out.Err, context.DeadlineExceeded)
	})
	t.Run("invalid settings", func(t *testing.T) {
		t.Parallel()
		cfg := config(t, keyID, map[string]any{"region": "moon"})
		out := newSender(t, "http://127.0.0.1:1").Send(ctx(t), delivery(cfg, "01JSESSETTINGS", "a@example.org"))
		require.Equal(t, provider.Credentials, out.Class)
		require.ErrorIs(t, out.Err, ses.ErrSettings)
	})
}

// TestRate_FollowsAccount: the limiter runs at GetAccount's MaxSendRate, and
// follows it when the account changes.
func TestRate_FollowsAccount(t *testing.T) {
	t.Parallel()
	fake := sestest.NewFake(t)
	fake.SetAccount(sestest.Account{MaxSendRate: 5, Max24HourSend: 200, ProductionAccess: true, SendingEnabled: true})
	s := newSender(t, fake.URL, ses.Options{AccountRefresh: 100 * time.Millisecond})
	cfg := config(t, keyID, nil)
	_, ok := s.SendRate(cfg)
	require.False(t, ok, "no rate before the first send")

	// 5/s with a burst of 5: 11 sends need 6 more tokens, at least 1.2 s.
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 11 {
		wg.Go(func() {
			out := s.Send(ctx(t), delivery(cfg, fmt.Sprintf("01JSESRATE%02d", i), "a@example.org"))
			require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
		})
	}
	wg.Wait()
	require.GreaterOrEqual(t, time.Since(start), 1100*time.Millisecond)
	r, ok := s.SendRate(cfg)
	require.True(t, ok)
	require.Equal(t, 5.0, r)

	fake.SetAccount(sestest.Account{MaxSendRate: 40, Max24HourSend: 200, ProductionAccess: true, SendingEnabled: true})
	require.Eventually(t, func() bool {
		s.Send(ctx(t), delivery(cfg, "01JSESRATEUP", "a@example.org"))
		r, _ := s.SendRate(cfg)
		return r == 40
	}, 10*time.Second, 50*time.Millisecond)
	// One GetAccount per refresh, not per send.
	require.Less(t, fake.Calls(sestest.OpGetAccount), fake.Calls(sestest.OpSendEmail))
}

func TestRate_GetAccountFails(t *testing.T) {
	t.Parallel()
	fake := sestest.NewFake(t)
	fake.FailNext(sestest.OpGetAccount, 1, sestest.Error{Status: 403, Code: "AccessDeniedException", Message: "not authorized to perform ses:GetAccount"})
	s := newSender(t, fake.URL)
	cfg := config(t, keyID, nil)
	out := s.Send(ctx(t), delivery(cfg, "01JSESNOACCOUNT", "a@example.org"))
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
	_, ok := s.SendRate(cfg)
	require.False(t, ok, "no account rate known")
}

// TestClients_PerVersion: a new version of a configuration gets a new client
// with its new credentials.
func TestClients_PerVersion(t *testing.T) {
	t.Parallel()
	fake := sestest.NewFake(t)
	s := newSender(t, fake.URL)
	cfg := config(t, keyID, nil)
	require.Equal(t, provider.Sent, s.Send(ctx(t), delivery(cfg, "01JSESV1", "a@example.org")).Class)
	cfg2 := config(t, "AKIAEMAILSENDERNEW01", nil)
	cfg2.ID, cfg2.Version = cfg.ID, cfg.Version.Add(time.Minute)
	require.Equal(t, provider.Sent, s.Send(ctx(t), delivery(cfg2, "01JSESV2", "a@example.org")).Class)
	sends := fake.Sends()
	require.Equal(t, keyID, sends[0].AccessKeyID)
	require.Equal(t, "AKIAEMAILSENDERNEW01", sends[1].AccessKeyID)
}

func TestVerify(t *testing.T) {
	t.Parallel()
	fake := sestest.NewFake(t)
	fake.SetAccount(sestest.Account{Max24HourSend: 200, MaxSendRate: 1, SentLast24Hours: 3, ProductionAccess: false, SendingEnabled: true, EnforcementStatus: "HEALTHY"})
	fake.FailAccessKey(badKeyID, sestest.ErrUnrecognizedKey)
	cfg := config(t, keyID, nil)
	s := newSender(t, fake.URL)

	info, err := s.Account(ctx(t), cfg)
	require.NoError(t, err)
	require.Equal(t, ses.AccountInfo{Max24HourSend: 200, MaxSendRate: 1, SentLast24Hours: 3, SendingEnabled: true, EnforcementStatus: "HEALTHY"}, info)
	require.Contains(t, info.String(), "sandbox account")
	require.NoError(t, s.Verify(ctx(t), cfg))

	_, err = s.Account(ctx(t), config(t, badKeyID, nil))
	require.ErrorIs(t, err, ses.ErrCredentials)
	require.NotContains(t, err.Error(), secretKey)
	require.Contains(t, err.Error(), "UnrecognizedClientException")

	fake.FailNext(sestest.OpGetAccount, 1, sestest.Error{Status: 503})
	_, err = s.Account(ctx(t), cfg)
	require.Error(t, err)
	require.NotErrorIs(t, err, ses.ErrCredentials)

	fake.SetIdentity("example.org", true)
	fake.SetIdentity("pending@example.net", false)
	for id, want := range map[string]bool{"example.org": true, "pending@example.net": false, "unknown.example": false} {
		got, err := s.IdentityVerified(ctx(t), cfg, id)
		require.NoError(t, err, id)
		require.Equal(t, want, got, id)
	}
	_, err = s.IdentityVerified(ctx(t), config(t, badKeyID, nil), "example.org")
	require.ErrorIs(t, err, ses.ErrCredentials)
}

// TestEmulator_GetAccount: the emulator started by sestest answers GetAccount.
func TestEmulator_GetAccount(t *testing.T) {
	t.Parallel()
	emu := sestest.StartEmulator(t)
	info, err := newSender(t, emu.URL).Account(ctx(t), config(t, keyID, nil))
	require.NoError(t, err)
	require.Equal(t, 5000.0, info.MaxSendRate)
	require.True(t, info.ProductionAccess)
}

// BenchmarkSend sends 1 KB messages through the provider straight to the
// emulator from 8×GOMAXPROCS goroutines (the emulator's account allows
// 5,000/s, so the rate limiter stays out of the way).
func BenchmarkSend(b *testing.B) {
	emu := sestest.StartEmulator(b)
	s := ses.New(ses.Options{Endpoint: emu.URL, Guard: netguard.AllowAll()})
	defer s.Close()
	cfg := provider.Config{ID: "bench", Kind: "ses",
		Settings: json.RawMessage(`{"region":"eu-west-1","access_key_id":"` + keyID + `"}`),
		Secret:   json.RawMessage(`{"secret_access_key":"` + secretKey + `"}`)}
	body := strings.Repeat("x", 1024)
	var seq atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d := delivery(cfg, fmt.Sprintf("01JSESBENCH%08d", seq.Add(1)), "bench@example.org")
			d.Job.Message.TextBody = body
			if out := s.Send(context.Background(), d); out.Class != provider.Sent {
				b.Errorf("send: %v %v", out.Class, out.Err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// SES has no SMTPUTF8: an internationalised address in the headers fails the
// message by name before any call; one only on the envelope (bcc) is refused
// alone.
func TestSend_InternationalisedLocalPart(t *testing.T) {
	t.Parallel()
	fake := sestest.NewFake(t)
	s := newSender(t, fake.URL)
	cfg := config(t, keyID, nil)

	out := s.Send(ctx(t), delivery(cfg, "01JSESEAI1", "jörg@example.org"))
	require.Equal(t, provider.Permanent, out.Class, "err: %v", out.Err)
	require.Contains(t, out.Err.Error(), "jörg@example.org")
	require.Zero(t, fake.Calls(sestest.OpSendEmail))

	d := delivery(cfg, "01JSESEAI2", "to@example.org", "用户@example.org")
	d.Job.Message.To = d.Job.Message.To[:1]
	d.Job.Message.Bcc = []*emailsenderv1.Address{{Address: "用户@example.org"}}
	out = s.Send(ctx(t), d)
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
	require.Contains(t, out.Rejected["用户@example.org"], "internationalised")
	require.Equal(t, []string{"to@example.org"}, fake.Sends()[0].To)
}
