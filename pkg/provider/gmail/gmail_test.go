package gmail_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	stdmime "mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/mime"
	"github.com/namirasoft/email-sender/pkg/netguard"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/gmail"
	"github.com/namirasoft/email-sender/pkg/provider/providertest"
	"github.com/namirasoft/email-sender/pkg/testkit/gmailtest"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

type testBundle struct {
	fake   *gmailtest.Server
	sender *gmail.Sender
	cfg    provider.Config
}

type setupOpts struct {
	fake   gmailtest.Options
	sender gmail.Options
}

func setup(t testing.TB, o ...setupOpts) *testBundle {
	t.Helper()
	var so setupOpts
	if len(o) > 0 {
		so = o[0]
	}
	fake := gmailtest.StartTest(t, so.fake)
	// The endpoints are the operator's: the fake's, on loopback.
	if so.sender.TokenURL == "" {
		so.sender.TokenURL = fake.TokenURL()
	}
	if so.sender.APIEndpoint == "" {
		so.sender.APIEndpoint = fake.APIEndpoint()
	}
	if so.sender.Guard == nil {
		so.sender.Guard = netguard.AllowAll()
	}
	if so.sender.Logger == nil {
		so.sender.Logger = slog.New(slog.DiscardHandler)
	}
	sender := gmail.New(so.sender)
	t.Cleanup(func() { require.NoError(t, sender.Close()) })
	return &testBundle{fake: fake, sender: sender, cfg: config(t, fake, gmailtest.DefaultRefreshToken)}
}

// config is a gmail configuration pointed at fake.
func config(t testing.TB, fake *gmailtest.Server, refreshToken string) provider.Config {
	t.Helper()
	st, err := json.Marshal(map[string]string{
		"client_id": fake.Options().ClientID, "sender_user": "me",
	})
	require.NoError(t, err)
	sec, err := json.Marshal(map[string]string{"client_secret": fake.Options().ClientSecret, "refresh_token": refreshToken})
	require.NoError(t, err)
	return provider.Config{
		ID: "cfg-" + t.Name(), AccountID: "acct-1", Kind: "gmail", Settings: st, Secret: sec,
		Version: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

func (b *testBundle) delivery(id string, rcpts ...string) *provider.Delivery {
	return providertest.Delivery(&providertest.Env{Config: b.cfg}, id, rcpts...)
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestConformance(t *testing.T) {
	t.Parallel()
	providertest.Run(t, providertest.HarnessFunc(func(t *testing.T) *providertest.Env {
		b := setup(t)
		bad := config(t, b.fake, "1//revoked-refresh-token")
		bad.ID = "bad-creds"
		return &providertest.Env{
			Sender:  b.sender,
			Config:  b.cfg,
			Secrets: []string{gmailtest.DefaultClientSecret, gmailtest.DefaultRefreshToken},
			Recipient: func(bh providertest.Behavior) string {
				switch bh {
				case providertest.Reject:
					return "reject@conformance.test"
				case providertest.Fail:
					return "transient@conformance.test"
				}
				return "ok@conformance.test"
			},
			Arrived: func(_ *testing.T, id string) [][]string {
				var out [][]string
				for _, m := range b.fake.ByMessageID(id) {
					out = append(out, m.Recipients)
				}
				return out
			},
			Hang:           func(t *testing.T) { b.fake.Hang(t) },
			BadCredentials: &bad,
		}
	}))
}

var boundaryRE = regexp.MustCompile(`boundary=([0-9a-zA-Z'()+_,\-./:=?]+)`)

// normalizeBoundaries replaces multipart boundaries, which are random per
// build, by placeholders in order of appearance.
func normalizeBoundaries(b []byte) string {
	s := string(b)
	for i, m := range boundaryRE.FindAllStringSubmatch(s, -1) {
		s = strings.ReplaceAll(s, m[1], fmt.Sprintf("BOUNDARY%d", i))
	}
	return s
}

// TestSend_RawMatchesBuilder: Gmail receives pkg/mime's message (with the Bcc
// header), attachments byte for byte, through the JSON body and through the
// media upload; the copy recipients get has no Bcc header.
func TestSend_RawMatchesBuilder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		attach  int // bytes of the binary attachment
		upload  bool
		thresh  int
		subject string
	}{
		{name: "json body", attach: 3000, subject: "Grüße – hello"},
		{name: "media upload", attach: 300_000, upload: true, thresh: 64 << 10, subject: "large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{sender: gmail.Options{UploadThreshold: tt.thresh}})
			d := b.delivery("01JRAW", "to@example.org", "cc@example.org", "hidden@example.org")
			m := d.Job.Message
			m.To = []*emailsenderv1.Address{{Address: "to@example.org", Name: "To Person"}}
			m.Cc = []*emailsenderv1.Address{{Address: "cc@example.org"}}
			m.Bcc = []*emailsenderv1.Address{{Address: "hidden@example.org", Name: "Hidden Person"}}
			m.Subject = tt.subject
			m.HtmlBody = `<p>hi <img src="cid:logo"></p>`
			bin := make([]byte, tt.attach)
			for i := range bin {
				bin[i] = byte(i * 7)
			}
			m.Attachments = []*emailsenderv1.Attachment{
				{Filename: "logo.png", ContentType: "image/png", Content: []byte("PNG\x00\x01"), ContentId: "logo"},
				{Filename: "data.bin", Content: bin},
			}

			out := b.sender.Send(ctx(t), d)
			require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
			msgs := b.fake.Messages()
			require.Len(t, msgs, 1)
			got := msgs[0]
			require.Equal(t, tt.upload, got.Upload)
			require.Equal(t, "me", got.User)
			require.Equal(t, got.ID, out.MessageID)
			require.Equal(t, fmt.Sprintf("Gmail accepted: %s (thread %s)", got.ID, got.ThreadID), out.Response)
			require.Equal(t, []string{"to@example.org", "cc@example.org", "hidden@example.org"}, got.Recipients, "bcc delivered")

			want, err := mime.Raw(m, mime.Options{MessageID: "01JRAW", Date: d.Job.AcceptedAt.AsTime(), BccHeader: true})
			require.NoError(t, err)
			require.Equal(t, normalizeBoundaries(want), normalizeBoundaries(got.Raw), "byte for byte but the random boundaries")

			// What the recipients see: no Bcc, the attachment intact.
			seen := got.Delivered()
			require.NotContains(t, string(seen), "hidden@example.org")
			require.NotContains(t, string(seen), "Hidden Person")
			require.Equal(t, bin, attachment(t, seen, "data.bin"))
		})
	}
}

// attachment returns the decoded content of the part named filename.
func attachment(t *testing.T, raw []byte, filename string) []byte {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	require.NoError(t, err)
	var find func(h map[string][]string, body io.Reader) []byte
	find = func(h map[string][]string, body io.Reader) []byte {
		ct := ""
		if v := h["Content-Type"]; len(v) > 0 {
			ct = v[0]
		}
		mt, params, _ := stdmime.ParseMediaType(ct)
		if strings.HasPrefix(mt, "multipart/") {
			mr := multipart.NewReader(body, params["boundary"])
			for {
				p, err := mr.NextRawPart()
				if err == io.EOF {
					return nil
				}
				require.NoError(t, err)
				if b := find(p.Header, p); b != nil {
					return b
				}
			}
		}
		if params["name"] != filename {
			return nil
		}
		b, err := io.ReadAll(body)
		require.NoError(t, err)
		dec, err := decodeBase64(b)
		require.NoError(t, err)
		return dec
	}
	return find(msg.Header, msg.Body)
}

func decodeBase64(b []byte) ([]byte, error) {
	return base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(b)))
}

// TestSend_SuppressedRecipientLeftOut: an address the worker left out of the
// envelope is removed from the headers, since Gmail delivers to every header
// address.
func TestSend_SuppressedRecipientLeftOut(t *testing.T) {
	t.Parallel()
	b := setup(t)
	d := b.delivery("01JSUPP", "a@example.org", "hidden@example.org")
	d.Job.Message.To = []*emailsenderv1.Address{{Address: "A@example.org"}, {Address: "Suppressed@Example.org"}}
	d.Job.Message.Bcc = []*emailsenderv1.Address{{Address: "hidden@example.org"}, {Address: "gone@example.org"}}
	out := b.sender.Send(ctx(t), d)
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
	msgs := b.fake.Messages()
	require.Len(t, msgs, 1)
	require.Equal(t, []string{"a@example.org", "hidden@example.org"}, msgs[0].Recipients)
	require.Len(t, d.Job.Message.To, 2, "the job's message is not changed")
}

// TestSend_Classification makes the fake answer each way the provider
// classifies.
func TestSend_Classification(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		fail       *gmailtest.Failure
		failTimes  int
		token      *gmailtest.TokenFailure
		want       provider.Class
		retryAfter time.Duration
		response   string
		auth       bool // the error wraps gmail.ErrAuth
	}{
		{name: "429 with Retry-After seconds", fail: &gmailtest.Failure{Status: 429, Reason: "rateLimitExceeded", Message: "Too many concurrent requests for user", RetryAfter: "7"},
			want: provider.Transient, retryAfter: 7 * time.Second, response: "429 rateLimitExceeded: Too many concurrent requests for user"},
		{name: "429 without Retry-After", fail: &gmailtest.Failure{Status: 429, Reason: "rateLimitExceeded"}, want: provider.Transient},
		{name: "403 rateLimitExceeded with Retry-After date", fail: &gmailtest.Failure{Status: 403, Reason: "rateLimitExceeded", RetryAfter: now.Add(90 * time.Second).Format(http.TimeFormat)},
			want: provider.Transient, retryAfter: 90 * time.Second},
		{name: "403 userRateLimitExceeded", fail: &gmailtest.Failure{Status: 403, Reason: "userRateLimitExceeded", Message: "User-rate limit exceeded", RetryAfter: "120"},
			want: provider.Transient, retryAfter: 2 * time.Minute, response: "403 userRateLimitExceeded: User-rate limit exceeded"},
		{name: "403 dailyLimitExceeded", fail: &gmailtest.Failure{Status: 403, Reason: "dailyLimitExceeded"}, want: provider.Transient},
		{name: "Retry-After in the past", fail: &gmailtest.Failure{Status: 429, Reason: "rateLimitExceeded", RetryAfter: now.Add(-time.Minute).Format(http.TimeFormat)}, want: provider.Transient},
		{name: "403 insufficientPermissions", fail: &gmailtest.Failure{Status: 403, Reason: "insufficientPermissions", Message: "Request had insufficient authentication scopes."},
			want: provider.Credentials, auth: true, response: "403 insufficientPermissions: Request had insufficient authentication scopes."},
		{name: "403 delegation denied", fail: &gmailtest.Failure{Status: 403, Reason: "forbidden", Message: "Delegation denied for x@example.com"}, want: provider.Credentials, auth: true},
		{name: "401 twice", fail: &gmailtest.Failure{Status: 401, Reason: "authError"}, failTimes: 2, want: provider.Credentials, auth: true},
		{name: "401 once, then accepted", fail: &gmailtest.Failure{Status: 401, Reason: "authError"}, want: provider.Sent},
		{name: "400 invalidArgument", fail: &gmailtest.Failure{Status: 400, Reason: "invalidArgument", Message: "Invalid To header"}, want: provider.Permanent, response: "400 invalidArgument: Invalid To header"},
		{name: "400 failedPrecondition", fail: &gmailtest.Failure{Status: 400, Reason: "failedPrecondition", Message: "Precondition check failed."}, want: provider.Permanent},
		{name: "404", fail: &gmailtest.Failure{Status: 404, Reason: "notFound"}, want: provider.Permanent},
		{name: "413", fail: &gmailtest.Failure{Status: 413, Reason: "uploadTooLarge"}, want: provider.Permanent},
		{name: "408", fail: &gmailtest.Failure{Status: 408}, want: provider.Transient},
		{name: "500 backendError", fail: &gmailtest.Failure{Status: 500, Reason: "backendError"}, want: provider.Transient, response: "500 backendError: Internal Server Error"},
		{name: "503", fail: &gmailtest.Failure{Status: 503, Reason: "backendError"}, want: provider.Transient},
		{name: "token invalid_grant", token: &gmailtest.TokenFailure{Code: "invalid_grant"}, want: provider.Credentials, auth: true, response: "token endpoint: invalid_grant"},
		{name: "token invalid_client", token: &gmailtest.TokenFailure{Status: 401, Code: "invalid_client"}, want: provider.Credentials, auth: true},
		{name: "token unauthorized_client", token: &gmailtest.TokenFailure{Status: 400, Code: "unauthorized_client"}, want: provider.Credentials, auth: true},
		{name: "token 503", token: &gmailtest.TokenFailure{Status: 503}, want: provider.Transient},
		{name: "token temporarily_unavailable", token: &gmailtest.TokenFailure{Status: 503, Code: "temporarily_unavailable"}, want: provider.Transient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{sender: gmail.Options{Now: func() time.Time { return now }}})
			if tt.fail != nil {
				b.fake.FailNext(max(tt.failTimes, 1), *tt.fail)
			}
			if tt.token != nil {
				b.fake.FailTokenNext(1, *tt.token)
			}
			out := b.sender.Send(ctx(t), b.delivery("01JCLASS", "someone@example.org"))
			require.Equal(t, tt.want, out.Class, "err: %v", out.Err)
			require.Equal(t, tt.retryAfter, out.RetryAfter)
			if tt.response != "" {
				require.Contains(t, out.Response, tt.response)
			}
			if tt.want != provider.Sent {
				require.Error(t, out.Err)
				require.Equal(t, tt.auth, errors.Is(out.Err, gmail.ErrAuth), "err: %v", out.Err)
				require.NotContains(t, out.Err.Error(), gmailtest.DefaultRefreshToken)
				require.NotContains(t, out.Err.Error(), gmailtest.DefaultClientSecret)
				require.Empty(t, out.MessageID)
			}
			var ae *gmail.APIError
			if tt.fail != nil && tt.want != provider.Sent {
				require.ErrorAs(t, out.Err, &ae)
				require.Equal(t, tt.fail.Status, ae.Code)
				require.Equal(t, tt.fail.Reason, ae.Reason)
			}
		})
	}
}

func TestSend_NetworkErrors(t *testing.T) {
	t.Parallel()
	t.Run("api unreachable", func(t *testing.T) {
		t.Parallel()
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := lis.Addr().String()
		require.NoError(t, lis.Close())
		b := setup(t, setupOpts{sender: gmail.Options{APIEndpoint: "http://" + addr + "/"}})
		out := b.sender.Send(ctx(t), b.delivery("01JNET", "someone@example.org"))
		require.Equal(t, provider.Transient, out.Class, "err: %v", out.Err)
	})
	t.Run("token endpoint answers 404", func(t *testing.T) {
		t.Parallel()
		// Not the fake: it refuses and reports every path outside the Gmail
		// API's discovery document.
		nf := httptest.NewServer(http.NotFoundHandler())
		t.Cleanup(nf.Close)
		b := setup(t, setupOpts{sender: gmail.Options{TokenURL: nf.URL + "/token"}})
		out := b.sender.Send(ctx(t), b.delivery("01JNET", "someone@example.org"))
		// 404 at the token endpoint: the token URL is wrong, which is the
		// configuration's fault.
		require.Equal(t, provider.Credentials, out.Class, "err: %v", out.Err)
	})
	t.Run("no answer after the request is written", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.fake.Hang(t)
		c, cancel := context.WithTimeout(ctx(t), 300*time.Millisecond)
		defer cancel()
		out := b.sender.Send(c, b.delivery("01JHANG", "someone@example.org"))
		require.Equal(t, provider.Ambiguous, out.Class, "err: %v", out.Err)
		require.ErrorIs(t, out.Err, context.DeadlineExceeded)
	})
}

// TestToken_CachedUntilExpiry: one refresh serves every send, concurrent or
// not, until the token is about to expire; then one more.
func TestToken_CachedUntilExpiry(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{fake: gmailtest.Options{TokenTTL: 3 * time.Second}, sender: gmail.Options{EarlyExpiry: time.Second}})
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			out := b.sender.Send(ctx(t), b.delivery(fmt.Sprintf("01JTOK%02d", i), "someone@example.org"))
			require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
		})
	}
	wg.Wait()
	for i := range 10 {
		out := b.sender.Send(ctx(t), b.delivery(fmt.Sprintf("01JTOKSEQ%02d", i), "someone@example.org"))
		require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
	}
	require.Less(t, time.Since(start), 2*time.Second, "the sends must finish within the token's life")
	require.Equal(t, 1, b.fake.Refreshes(), "one refresh for 30 sends")
	require.Len(t, b.fake.Messages(), 30)

	time.Sleep(time.Until(start.Add(2100 * time.Millisecond)))
	for i := range 5 {
		out := b.sender.Send(ctx(t), b.delivery(fmt.Sprintf("01JTOKLATE%02d", i), "someone@example.org"))
		require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
	}
	require.Equal(t, 2, b.fake.Refreshes(), "one more refresh after the expiry")
}

// TestToken_NewConfigVersionGetsNewToken: a changed configuration (e.g. a new
// refresh token) gets its own client and token.
func TestToken_NewConfigVersionGetsNewToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, provider.Sent, b.sender.Send(ctx(t), b.delivery("01JV1", "a@example.org")).Class)
	b.cfg.Version = b.cfg.Version.Add(time.Second)
	require.Equal(t, provider.Sent, b.sender.Send(ctx(t), b.delivery("01JV2", "a@example.org")).Class)
	require.Equal(t, 2, b.fake.Refreshes())
}

// TestToken_401RefreshesOnceAndRetriesOnce: a refused access token is
// refreshed once and the send retried once; a second 401 fails with
// Credentials.
func TestToken_401RefreshesOnceAndRetriesOnce(t *testing.T) {
	t.Parallel()
	t.Run("revoked token: refresh, retry, sent", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.Equal(t, provider.Sent, b.sender.Send(ctx(t), b.delivery("01JWARM", "a@example.org")).Class)
		b.fake.RevokeAccessTokens()
		out := b.sender.Send(ctx(t), b.delivery("01JAFTER", "a@example.org"))
		require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
		require.Equal(t, 2, b.fake.Refreshes(), "exactly one refresh after the 401")
		require.Equal(t, 3, b.fake.SendCalls(), "warm-up, the refused send, one retry")
		require.Len(t, b.fake.ByMessageID("01JAFTER"), 1)
	})
	t.Run("401 again after the refresh: Credentials", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.Equal(t, provider.Sent, b.sender.Send(ctx(t), b.delivery("01JWARM", "a@example.org")).Class)
		b.fake.FailNext(5, gmailtest.Failure{Status: 401, Reason: "authError", Message: "Invalid Credentials"})
		out := b.sender.Send(ctx(t), b.delivery("01JAFTER", "a@example.org"))
		require.Equal(t, provider.Credentials, out.Class, "err: %v", out.Err)
		require.ErrorIs(t, out.Err, gmail.ErrAuth)
		require.Equal(t, 2, b.fake.Refreshes(), "exactly one refresh")
		require.Equal(t, 3, b.fake.SendCalls(), "exactly one retry")
	})
	t.Run("many sends refused at once: one refresh", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.Equal(t, provider.Sent, b.sender.Send(ctx(t), b.delivery("01JWARM", "a@example.org")).Class)
		b.fake.RevokeAccessTokens()
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				out := b.sender.Send(ctx(t), b.delivery(fmt.Sprintf("01JMANY%02d", i), "a@example.org"))
				require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
			})
		}
		wg.Wait()
		require.Equal(t, 2, b.fake.Refreshes())
	})
}

func TestSend_SenderUserAndSettings(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var st map[string]string
	require.NoError(t, json.Unmarshal(b.cfg.Settings, &st))
	st["sender_user"] = gmailtest.DefaultEmail
	b.cfg.Settings, _ = json.Marshal(st)
	require.Equal(t, provider.Sent, b.sender.Send(ctx(t), b.delivery("01JUSER", "a@example.org")).Class)
	require.Equal(t, gmailtest.DefaultEmail, b.fake.Messages()[0].User)

	// Another mailbox: Gmail's 403 "Delegation denied" is the configuration's fault.
	st["sender_user"] = "other@example.com"
	b.cfg.Settings, _ = json.Marshal(st)
	b.cfg.Version = b.cfg.Version.Add(time.Second)
	out := b.sender.Send(ctx(t), b.delivery("01JOTHER", "a@example.org"))
	require.Equal(t, provider.Credentials, out.Class, "err: %v", out.Err)

	// Settings without a refresh token cannot work.
	b.cfg.Secret = []byte(`{"client_secret":"x"}`)
	b.cfg.Version = b.cfg.Version.Add(time.Second)
	out = b.sender.Send(ctx(t), b.delivery("01JNORT", "a@example.org"))
	require.Equal(t, provider.Credentials, out.Class, "err: %v", out.Err)
	require.ErrorIs(t, out.Err, gmail.ErrSettings)
	require.Contains(t, out.Err.Error(), "refresh_token")
}

func TestSend_AfterClose(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.sender.Close())
	out := b.sender.Send(ctx(t), b.delivery("01JCLOSED", "a@example.org"))
	require.Equal(t, provider.Transient, out.Class)
	require.ErrorIs(t, out.Err, gmail.ErrClosed)
	require.NoError(t, b.sender.Close())
}

func TestVerify(t *testing.T) {
	t.Parallel()
	t.Run("ok", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.Equal(t, provider.Sent, b.sender.Send(ctx(t), b.delivery("01JV", "a@example.org")).Class)
		detail, err := b.sender.VerifyDetail(ctx(t), b.cfg)
		require.NoError(t, err)
		require.Equal(t, "gmail: authorized for "+gmailtest.DefaultEmail+" (1 messages, 1 threads) by users.getProfile; nothing was sent", detail)
		require.NoError(t, b.sender.Verify(ctx(t), b.cfg))
		require.Len(t, b.fake.Messages(), 1, "verify sends nothing")
		require.Equal(t, 3, b.fake.Refreshes(), "verify redeems the refresh token itself")
	})
	t.Run("revoked refresh token", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		err := b.sender.Verify(ctx(t), config(t, b.fake, "1//revoked"))
		require.ErrorIs(t, err, gmail.ErrAuth)
		require.Contains(t, err.Error(), "invalid_grant")
		require.NotContains(t, err.Error(), "1//revoked")
	})
	t.Run("wrong client secret", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		cfg := b.cfg
		cfg.Secret = []byte(`{"client_secret":"wrong-secret","refresh_token":"` + gmailtest.DefaultRefreshToken + `"}`)
		err := b.sender.Verify(ctx(t), cfg)
		require.ErrorIs(t, err, gmail.ErrAuth)
		require.Contains(t, err.Error(), "invalid_client")
		require.NotContains(t, err.Error(), "wrong-secret")
	})
	t.Run("token without a read scope", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{fake: gmailtest.Options{NoReadScope: true}})
		err := b.sender.Verify(ctx(t), b.cfg)
		require.Error(t, err)
		require.NotErrorIs(t, err, gmail.ErrAuth, "the credentials work; only the scope for verifying is missing")
		require.Contains(t, err.Error(), "gmail.metadata")
	})
	t.Run("unreachable", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.fake.Close()
		err := b.sender.Verify(ctx(t), b.cfg)
		require.Error(t, err)
		require.NotErrorIs(t, err, gmail.ErrAuth)
	})
}

// BenchmarkSend measures sends through the real client against the fake over
// loopback HTTP: b.N sends of a 1 KB message from GOMAXPROCS×16 goroutines.
func BenchmarkSend(b *testing.B) {
	tb := setup(b)
	d := tb.delivery("01JBENCH", "someone@example.org")
	d.Job.Message.TextBody = strings.Repeat("x", 1000)
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if out := tb.sender.Send(context.Background(), d); out.Class != provider.Sent {
				b.Errorf("send: %v %v", out.Class, out.Err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sends/s")
}
