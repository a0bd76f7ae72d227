package smtp_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"

	"fmt"
	"io"
	"math/big"
	"net"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/mime"
	"github.com/namirasoft/email-sender/pkg/netguard"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/providertest"
	"github.com/namirasoft/email-sender/pkg/provider/smtp"
	"github.com/namirasoft/email-sender/pkg/testkit/smtpsink"
	"github.com/namirasoft/email-sender/pkg/verp"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

const (
	user     = "relay-user"
	password = "s3cret-Pa55w0rd!"
)

type testBundle struct {
	sink   *smtpsink.Sink
	sender *smtp.Sender
	cfg    provider.Config
}

type setupOpts struct {
	settings map[string]any
	sink     smtpsink.Options
	sender   smtp.Options
}

func setup(t *testing.T, o ...setupOpts) *testBundle {
	t.Helper()
	var so setupOpts
	if len(o) > 0 {
		so = o[0]
	}
	if so.sink.Username == "" {
		so.sink.Username, so.sink.Password = user, password
	}
	sink := smtpsink.StartTest(t, so.sink)
	settings := map[string]any{
		"host": "127.0.0.1", "port": sink.Port(), "tls": "none", "username": user,
		"pool_size": 4, "helo": "worker.test", "timeout_seconds": 5,
	}
	for k, v := range so.settings {
		settings[k] = v
	}
	if so.sender.Guard == nil {
		// The sink listens on loopback, which the default guard refuses.
		so.sender.Guard = netguard.AllowAll()
	}
	sender := smtp.New(so.sender)
	t.Cleanup(func() { require.NoError(t, sender.Close()) })
	return &testBundle{sink: sink, sender: sender, cfg: config(t, settings, password)}
}

func config(t *testing.T, settings map[string]any, pw string) provider.Config {
	t.Helper()
	s, err := json.Marshal(settings)
	require.NoError(t, err)
	sec, err := json.Marshal(map[string]string{"password": pw})
	require.NoError(t, err)
	return provider.Config{
		ID: "cfg-" + t.Name(), AccountID: "acct-1", Kind: "smtp", Settings: s, Secret: sec,
		Version: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

func (b *testBundle) delivery(id string, rcpts ...string) *provider.Delivery {
	env := &providertest.Env{Config: b.cfg}
	return providertest.Delivery(env, id, rcpts...)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// arrived returns the envelope recipients of each copy of messageID at the sink.
func arrived(sink *smtpsink.Sink, messageID string) [][]string {
	var out [][]string
	for _, m := range sink.Messages() {
		if bytes.Contains(m.Data, []byte("Message-ID: <"+messageID+"@")) {
			out = append(out, m.To)
		}
	}
	return out
}

func TestConformance(t *testing.T) {
	t.Parallel()
	providertest.Run(t, providertest.HarnessFunc(func(t *testing.T) *providertest.Env {
		b := setup(t)
		b.sink.RejectRcpt("rejected@conformance.test", smtpsink.Reply{Code: 550, Enhanced: "5.1.1", Message: "no such user"})
		b.sink.RejectRcpt("busy@conformance.test", smtpsink.Reply{Code: 451, Enhanced: "4.3.0", Message: "mailbox busy"})
		bad := config(t, map[string]any{"host": "127.0.0.1", "port": b.sink.Port(), "tls": "none", "username": user}, "wrong-"+password)
		bad.ID = "bad-creds"
		return &providertest.Env{
			Sender:  b.sender,
			Config:  b.cfg,
			Secrets: []string{password},
			Recipient: func(bh providertest.Behavior) string {
				switch bh {
				case providertest.Reject:
					return "rejected@conformance.test"
				case providertest.Fail:
					return "busy@conformance.test"
				}
				return "ok@conformance.test"
			},
			Arrived:        func(_ *testing.T, id string) [][]string { return arrived(b.sink, id) },
			Hang:           func(*testing.T) { b.sink.StallNext(1000) },
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

func TestSend_RawMatchesBuilder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*emailsenderv1.EmailMessage)
	}{
		{"text only", func(*emailsenderv1.EmailMessage) {}},
		{"dots, long lines and utf-8", func(m *emailsenderv1.EmailMessage) {
			m.Subject = "Grüße"
			m.TextBody = ".\n..leading dots\n" + strings.Repeat("long line ", 200) + "\nend"
		}},
		{"multipart with attachments", func(m *emailsenderv1.EmailMessage) {
			m.HtmlBody = `<p>hi <img src="cid:logo"></p>`
			m.Attachments = []*emailsenderv1.Attachment{
				{Filename: "logo.png", ContentType: "image/png", Content: []byte("PNG"), ContentId: "logo"},
				{Filename: "a.bin", Content: bytes.Repeat([]byte{0, 1, 2, '.', '\r', '\n'}, 500)},
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			d := b.delivery("01JRAW", "bob@example.org")
			tt.mutate(d.Job.Message)
			out := b.sender.Send(ctx(t), d)
			require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)

			msgs := b.sink.Messages()
			require.Len(t, msgs, 1)
			m := msgs[0]
			require.Equal(t, "sender@conformance.test", m.From)
			require.Equal(t, []string{"bob@example.org"}, m.To)
			require.Equal(t, "250 2.0.0 Ok: queued as "+m.QueueID, out.Response)
			require.Equal(t, m.QueueID, out.MessageID)

			want, err := mime.Raw(d.Job.Message, mime.Options{MessageID: "01JRAW", Date: d.Job.AcceptedAt.AsTime()})
			require.NoError(t, err)
			if len(d.Job.Message.Attachments) == 0 && d.Job.Message.HtmlBody == "" {
				require.Equal(t, string(want), string(m.Data), "byte for byte")
			} else {
				require.Equal(t, normalizeBoundaries(want), normalizeBoundaries(m.Data), "byte for byte but the random boundaries")
			}
		})
	}
}

func TestSend_BccOnlyInEnvelope(t *testing.T) {
	t.Parallel()
	b := setup(t)
	d := b.delivery("01JBCC", "to@example.org", "cc@example.org", "hidden@example.org")
	d.Job.Message.Cc = []*emailsenderv1.Address{{Address: "cc@example.org"}}
	d.Job.Message.Bcc = []*emailsenderv1.Address{{Address: "hidden@example.org", Name: "Hidden Person"}}
	d.Job.Message.To = d.Job.Message.To[:1]
	out := b.sender.Send(ctx(t), d)
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)

	m := b.sink.Messages()[0]
	require.Equal(t, []string{"to@example.org", "cc@example.org", "hidden@example.org"}, m.To)
	parsed, err := mail.ReadMessage(bytes.NewReader(m.Data))
	require.NoError(t, err)
	require.Empty(t, parsed.Header["Bcc"])
	require.NotContains(t, string(m.Data), "hidden@example.org")
	require.NotContains(t, string(m.Data), "Hidden Person")
}

func TestSend_IDNRecipient(t *testing.T) {
	t.Parallel()
	b := setup(t)
	out := b.sender.Send(ctx(t), b.delivery("01JIDN", "jane@bücher.example"))
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
	require.Equal(t, []string{"jane@xn--bcher-kva.example"}, b.sink.Messages()[0].To)
}

func TestSend_Classification(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		script   func(*smtpsink.Sink)
		password string
		want     provider.Class
		response string
	}{
		{
			name: "451 at data",
			script: func(s *smtpsink.Sink) {
				s.FailNext(1, smtpsink.Reply{Code: 451, Enhanced: "4.3.0", Message: "try later"})
			},
			want:     provider.Transient,
			response: "451 4.3.0 try later",
		},
		{
			name:     "550 at data",
			script:   func(s *smtpsink.Sink) { s.FailNext(1, smtpsink.Reply{Code: 550, Enhanced: "5.7.1", Message: "spam"}) },
			want:     provider.Permanent,
			response: "550 5.7.1 spam",
		},
		{
			name: "550 at rcpt, every recipient",
			script: func(s *smtpsink.Sink) {
				s.RejectRcpt("bob@example.org", smtpsink.Reply{Code: 550, Enhanced: "5.1.1", Message: "no such user"})
			},
			want:     provider.Permanent,
			response: "550 5.1.1 no such user",
		},
		{
			name: "421 at mail",
			script: func(s *smtpsink.Sink) {
				s.Script(smtpsink.Action{Stage: smtpsink.AtMail, Reply: smtpsink.Reply{Code: 421, Message: "busy"}})
			},
			want:     provider.Transient,
			response: "421 busy",
		},
		{
			name:     "connection dropped before data",
			script:   func(s *smtpsink.Sink) { s.DropNext(1, smtpsink.AtMail) },
			want:     provider.Transient,
			response: "",
		},
		{
			name:     "535 bad password",
			script:   func(*smtpsink.Sink) {},
			password: "not-the-" + password,
			want:     provider.Credentials,
			response: "535 5.7.8 Authentication failed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			tt.script(b.sink)
			d := b.delivery("01JCLASS", "bob@example.org")
			if tt.password != "" {
				d.Config = config(t, map[string]any{"host": "127.0.0.1", "port": b.sink.Port(), "tls": "none", "username": user}, tt.password)
			}
			out := b.sender.Send(ctx(t), d)
			require.Equal(t, tt.want, out.Class, "err: %v", out.Err)
			require.Error(t, out.Err)
			require.Equal(t, tt.response, out.Response)
			require.NotContains(t, out.Err.Error(), password)
			require.Zero(t, b.sink.Count())

			// The sender recovers: the next message goes through.
			if tt.password == "" {
				out = b.sender.Send(ctx(t), b.delivery("01JNEXT", "carol@example.org"))
				require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
			}
		})
	}
}

func TestSend_PartialRcptRejection(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.sink.RejectRcpt("gone@example.org", smtpsink.Reply{Code: 550, Enhanced: "5.1.1", Message: "gone"})
	out := b.sender.Send(ctx(t), b.delivery("01JPARTIAL", "ok@example.org", "gone@example.org"))
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
	require.Equal(t, map[string]string{"gone@example.org": "550 5.1.1 gone"}, out.Rejected)
	require.Equal(t, []string{"ok@example.org"}, b.sink.Messages()[0].To)
}

func TestSend_StallAfterDataIsAmbiguous(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.sink.StallNext(1)
	c, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	out := b.sender.Send(c, b.delivery("01JSTALL", "bob@example.org"))
	require.Less(t, time.Since(start), 2*time.Second)
	require.Equal(t, provider.Ambiguous, out.Class, "err: %v", out.Err)
	require.ErrorIs(t, out.Err, context.DeadlineExceeded)
	require.Empty(t, out.Response)
	require.Equal(t, 1, b.sink.Stalled(), "the server had the whole message and was still thinking")
}

func TestSend_TimeoutSettingAfterDataIsAmbiguous(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{settings: map[string]any{"timeout_seconds": 1}})
	b.sink.StallNext(1)
	out := b.sender.Send(ctx(t), b.delivery("01JSTALL2", "bob@example.org"))
	require.Equal(t, provider.Ambiguous, out.Class, "err: %v", out.Err)
}

func TestSend_DropAfterDataIsAmbiguous(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.sink.DropNext(1, smtpsink.AtData)
	out := b.sender.Send(ctx(t), b.delivery("01JDROP", "bob@example.org"))
	require.Equal(t, provider.Ambiguous, out.Class, "err: %v", out.Err)
}

func TestSend_CancelWhileWaitingForConnection(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{settings: map[string]any{"pool_size": 1}})
	b.sink.StallNext(1)
	go b.sender.Send(ctx(t), b.delivery("01JHOLD", "a@example.org"))
	require.NoError(t, b.sink.WaitStalled(ctx(t), 1))

	c, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	out := b.sender.Send(c, b.delivery("01JWAIT", "b@example.org"))
	require.Equal(t, provider.Transient, out.Class, "err: %v", out.Err)
	require.ErrorIs(t, out.Err, context.DeadlineExceeded)
	b.sink.Release()
}

func TestSend_ConnectionReuse(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{settings: map[string]any{"pool_size": 3}})
	const n = 30
	var wg sync.WaitGroup
	outs := make([]provider.Outcome, n)
	for i := range n {
		wg.Go(func() { outs[i] = b.sender.Send(ctx(t), b.delivery(fmt.Sprintf("01JREUSE%02d", i), "bob@example.org")) })
	}
	wg.Wait()
	for i, out := range outs {
		require.Equal(t, provider.Sent, out.Class, "send %d: %v", i, out.Err)
	}
	// Sequential sends reuse the idle connections.
	for i := range 10 {
		out := b.sender.Send(ctx(t), b.delivery(fmt.Sprintf("01JSEQ%02d", i), "bob@example.org"))
		require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
	}
	require.Equal(t, n+10, b.sink.Count())
	require.LessOrEqual(t, b.sink.Connections(), 3)
}

func TestSend_PoolRecoversAfterSinkRestart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	out := b.sender.Send(ctx(t), b.delivery("01JBEFORE", "bob@example.org"))
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)

	b.sink.Stop()
	out = b.sender.Send(ctx(t), b.delivery("01JDOWN", "bob@example.org"))
	require.Equal(t, provider.Transient, out.Class, "err: %v", out.Err)
	var opErr *net.OpError
	require.ErrorAs(t, out.Err, &opErr)

	require.NoError(t, b.sink.Start())
	out = b.sender.Send(ctx(t), b.delivery("01JAFTER", "bob@example.org"))
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
	require.Len(t, arrived(b.sink, "01JAFTER"), 1)
}

func TestSend_StaleIdleConnectionIsRedialled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	out := b.sender.Send(ctx(t), b.delivery("01JFIRST", "bob@example.org"))
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)

	// The server goes away and comes back while the connection is parked.
	b.sink.Stop()
	require.NoError(t, b.sink.Start())

	out = b.sender.Send(ctx(t), b.delivery("01JSECOND", "bob@example.org"))
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
	require.Equal(t, 2, b.sink.Connections())
	require.Len(t, arrived(b.sink, "01JSECOND"), 1)
}

func TestSend_IdleConnectionsClosed(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{sender: smtp.Options{IdleTimeout: 100 * time.Millisecond}})
	out := b.sender.Send(ctx(t), b.delivery("01JIDLE", "bob@example.org"))
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
	require.Eventually(t, func() bool { return b.sink.ActiveConnections() == 0 }, 3*time.Second, 10*time.Millisecond)
}

func TestSend_NewConfigVersionGetsNewPool(t *testing.T) {
	t.Parallel()
	b := setup(t)
	out := b.sender.Send(ctx(t), b.delivery("01JV1", "bob@example.org"))
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)

	d := b.delivery("01JV2", "bob@example.org")
	d.Config.Version = d.Config.Version.Add(time.Hour)
	out = b.sender.Send(ctx(t), d)
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
	require.Equal(t, 2, b.sink.Connections())
	require.Eventually(t, func() bool { return b.sink.ActiveConnections() == 1 }, 3*time.Second, 10*time.Millisecond,
		"the old version's idle connection is closed")
}

func TestSend_AfterClose(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.sender.Close())
	out := b.sender.Send(ctx(t), b.delivery("01JCLOSED", "bob@example.org"))
	require.Equal(t, provider.Transient, out.Class)
	require.ErrorIs(t, out.Err, smtp.ErrClosed)
}

func TestVerify(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.sender.Verify(ctx(t), b.cfg))

	bad := config(t, map[string]any{"host": "127.0.0.1", "port": b.sink.Port(), "tls": "none", "username": user}, "x"+password)
	err := b.sender.Verify(ctx(t), bad)
	require.ErrorIs(t, err, smtp.ErrAuth)
	var re *smtp.ReplyError
	require.ErrorAs(t, err, &re)
	require.Equal(t, 535, re.Code)
	require.NotContains(t, err.Error(), password)

	down := config(t, map[string]any{"host": "127.0.0.1", "port": freePort(t), "tls": "none"}, "")
	require.Error(t, b.sender.Verify(ctx(t), down))
	require.Zero(t, b.sink.Count(), "verify sends nothing")
}

func TestSend_TLS(t *testing.T) {
	t.Parallel()
	cert, pool := selfSigned(t)
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	tests := []struct {
		name     string
		implicit bool
		mode     string
		wantTLS  bool
	}{
		{"starttls", false, "starttls", true},
		{"starttls opportunistic", false, "starttls_opportunistic", true},
		{"implicit", true, "implicit", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{
				sink:     smtpsink.Options{TLSConfig: tlsCfg, ImplicitTLS: tt.implicit},
				settings: map[string]any{"tls": tt.mode},
				sender:   smtp.Options{RootCAs: pool},
			})
			out := b.sender.Send(ctx(t), b.delivery("01JTLS", "bob@example.org"))
			require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
			require.NoError(t, b.sender.Verify(ctx(t), b.cfg))
		})
	}

	t.Run("starttls required but not offered", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{settings: map[string]any{"tls": "starttls"}})
		out := b.sender.Send(ctx(t), b.delivery("01JNOTLS", "bob@example.org"))
		require.Equal(t, provider.Permanent, out.Class, "err: %v", out.Err)
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{
			sink:     smtpsink.Options{TLSConfig: tlsCfg},
			settings: map[string]any{"tls": "starttls"},
		})
		out := b.sender.Send(ctx(t), b.delivery("01JBADCERT", "bob@example.org"))
		require.Equal(t, provider.Permanent, out.Class, "err: %v", out.Err)
	})
}

func TestParseSettings(t *testing.T) {
	t.Parallel()
	s, err := smtp.ParseSettings(provider.Config{Settings: []byte(`{"host":"mx.example.com"}`)})
	require.NoError(t, err)
	require.Equal(t, smtp.Settings{Host: "mx.example.com", Port: 587, TLS: "starttls", PoolSize: 4, TimeoutSeconds: 30}, s, "no HELO default here: the sender's (the host's FQDN or address literal)")

	for _, good := range []string{"mx.example.com", "[192.0.2.1]", "[IPv6:2001:db8::1]", "relay-1.example"} {
		_, err := smtp.ParseSettings(provider.Config{Settings: []byte(`{"host":"h","helo":"` + good + `"}`)})
		require.NoError(t, err, good)
	}
	for _, bad := range []string{`{}`, `{"host":"h","tls":"ssl"}`, `{"host":"h","port":70000}`, `{"host":"h","username":"u"}`, `nope`,
		`{"host":"h","helo":"two words"}`, `{"host":"h","helo":"[not-an-ip]"}`, `{"host":"h","helo":"-x.example"}`, `{"host":"h","helo":"a\r\nMAIL FROM:<x>"}`} {
		_, err := smtp.ParseSettings(provider.Config{Settings: []byte(bad)})
		require.ErrorIs(t, err, smtp.ErrSettings, bad)
	}
	_, err = smtp.ParseSettings(provider.Config{Settings: []byte(`{"host":"h","username":"u"}`), Secret: []byte(`"` + password)})
	require.ErrorIs(t, err, smtp.ErrSettings)
	require.NotContains(t, err.Error(), password)
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// A server without SMTPUTF8: an internationalised address in the headers or
// as the reverse-path fails the message by name; one that is only on the
// envelope (bcc) is refused alone and the others get the message. An ASCII
// message never asks for SMTPUTF8.
func TestSend_SMTPUTF8(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{sink: smtpsink.Options{NoSMTPUTF8: true}})

	d := b.delivery("01JUTF8HDR", "jörg@bücher.example")
	out := b.sender.Send(ctx(t), d)
	require.Equal(t, provider.Permanent, out.Class, "err: %v", out.Err)
	var ue *smtp.UTF8Error
	require.ErrorAs(t, out.Err, &ue)
	require.Equal(t, "jörg@bücher.example", ue.Address)
	require.Contains(t, out.Err.Error(), "SMTPUTF8")

	d = b.delivery("01JUTF8BCC", "ok@example.com")
	d.Job.Message.Bcc = []*emailsenderv1.Address{{Address: "用户@example.com"}}
	d.Recipients = []string{"ok@example.com", "用户@example.com"}
	out = b.sender.Send(ctx(t), d)
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
	require.Len(t, out.Rejected, 1)
	require.Contains(t, out.Rejected["用户@example.com"], "SMTPUTF8")
	require.Equal(t, [][]string{{"ok@example.com"}}, arrived(b.sink, "01JUTF8BCC"))

	d = b.delivery("01JUTF8FROM", "ok@example.com")
	d.Job.Message.From = &emailsenderv1.Address{Address: "jörg@example.com"}
	out = b.sender.Send(ctx(t), d)
	require.Equal(t, provider.Permanent, out.Class, "err: %v", out.Err)
	require.ErrorAs(t, out.Err, &ue)

	// The same server takes an ASCII message on the same (clean) connection.
	out = b.sender.Send(ctx(t), b.delivery("01JUTF8OK", "ok@example.com"))
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
}

// The envelope as a strict server wants it, read from the wire: bracketed
// paths, SIZE declared, SMTPUTF8 only when the message needs it, the
// configured EHLO name, and <> for automatic replies.
func TestSend_EnvelopeOnTheWire(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tap := startTap(t, b.sink.Port())
	b.cfg = config(t, map[string]any{"host": "127.0.0.1", "port": tap.port, "tls": "none", "username": user,
		"pool_size": 1, "helo": "worker.test", "timeout_seconds": 5}, password)

	out := b.sender.Send(ctx(t), b.delivery("01JWIRE1", "jane@bücher.example"))
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
	d := b.delivery("01JWIRE2", "jörg@example.com")
	d.Job.Message.Headers = []*emailsenderv1.Header{{Name: "Auto-Submitted", Value: "auto-replied"}}
	out = b.sender.Send(ctx(t), d)
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)

	lines := tap.commands()
	require.Contains(t, lines, "EHLO worker.test")
	var mails, rcpts []string
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "MAIL FROM:"):
			mails = append(mails, l)
		case strings.HasPrefix(l, "RCPT TO:"):
			rcpts = append(rcpts, l)
		}
	}
	require.Len(t, mails, 2)
	require.Regexp(t, `^MAIL FROM:<sender@conformance\.test> SIZE=\d+ BODY=8BITMIME$`, mails[0], "ASCII: no SMTPUTF8")
	require.Regexp(t, `^MAIL FROM:<> SIZE=\d+ BODY=8BITMIME SMTPUTF8$`, mails[1], "auto-reply with an internationalised recipient")
	require.Equal(t, []string{"RCPT TO:<jane@xn--bcher-kva.example>", "RCPT TO:<jörg@example.com>"}, rcpts)
}

// A message larger than the server's SIZE fails before MAIL, permanently,
// saying so; the connection stays usable.
func TestSend_OverServerSize(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{sink: smtpsink.Options{MaxMessageBytes: 4096}})
	d := b.delivery("01JSIZE", "bob@example.org")
	d.Job.Message.TextBody = strings.Repeat("x", 8000)
	out := b.sender.Send(ctx(t), d)
	require.Equal(t, provider.Permanent, out.Class, "err: %v", out.Err)
	var se *smtp.SizeError
	require.ErrorAs(t, out.Err, &se)
	require.EqualValues(t, 4096, se.Limit)
	require.Empty(t, b.sink.Messages())
	out = b.sender.Send(ctx(t), b.delivery("01JSIZEOK", "bob@example.org"))
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
}

// The EHLO name without a configured one: never localhost.
func TestSend_DefaultEHLO(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tap := startTap(t, b.sink.Port())
	b.cfg = config(t, map[string]any{"host": "127.0.0.1", "port": tap.port, "tls": "none", "username": user}, password)
	out := b.sender.Send(ctx(t), b.delivery("01JEHLO", "bob@example.org"))
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
	var ehlo string
	for _, l := range tap.commands() {
		if strings.HasPrefix(l, "EHLO ") {
			ehlo = strings.TrimPrefix(l, "EHLO ")
		}
	}
	require.NotEmpty(t, ehlo)
	require.NotEqual(t, "localhost", ehlo)
	require.True(t, strings.Contains(ehlo, ".") || strings.HasPrefix(ehlo, "["), "an FQDN or an address literal, got %q", ehlo)
}

// tap relays one connection at a time to a server and records the lines the
// client sends (commands; message data too, which tests ignore).
type tap struct {
	port  int
	mu    sync.Mutex
	lines []string
}

func (tp *tap) commands() []string {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return slices.Clone(tp.lines)
}

func startTap(t *testing.T, upstream int) *tap {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tp := &tap{port: l.Addr().(*net.TCPAddr).Port}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", upstream))
			if err != nil {
				_ = c.Close()
				continue
			}
			go func() { _, _ = io.Copy(c, up); _ = c.Close() }()
			go func() {
				defer up.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if line != "" {
						tp.mu.Lock()
						tp.lines = append(tp.lines, strings.TrimRight(line, "\r\n"))
						tp.mu.Unlock()
						if _, werr := up.Write([]byte(line)); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return tp
}

// With a bounce domain (VERP), the envelope sender is the message's signed
// bounce address: bound to the recipient of a one-recipient envelope, to the
// message otherwise; an automatic reply keeps <>; the From header stays.
func TestSend_VERPEnvelopeSender(t *testing.T) {
	t.Parallel()
	signer, err := verp.New("bounces.example.net", bytes.Repeat([]byte{7}, 32))
	require.NoError(t, err)
	b := setup(t, setupOpts{sender: smtp.Options{VERP: signer}})

	one, two, auto := uuid.NewString(), uuid.NewString(), uuid.NewString()
	out := b.sender.Send(ctx(t), b.delivery(one, "Jane@Example.org"))
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
	out = b.sender.Send(ctx(t), b.delivery(two, "a@example.org", "b@example.org"))
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
	d := b.delivery(auto, "c@example.org")
	d.Job.Message.Headers = []*emailsenderv1.Header{{Name: "Auto-Submitted", Value: "auto-replied"}}
	out = b.sender.Send(ctx(t), d)
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)

	msgs, err := b.sink.WaitFor(ctx(t), 3)
	require.NoError(t, err)
	byID := map[string]smtpsink.Message{}
	for _, m := range msgs {
		for _, id := range []string{one, two, auto} {
			if bytes.Contains(m.Data, []byte(id)) {
				byID[id] = m
			}
		}
	}
	require.Len(t, byID, 3)

	tok, err := signer.Parse(byID[one].From)
	require.NoError(t, err, "envelope sender %q", byID[one].From)
	require.Equal(t, one, tok.MessageID)
	require.True(t, tok.For("jane@example.org"))
	require.Contains(t, string(byID[one].Data), "sender@conformance.test", "From header unchanged")

	tok, err = signer.Parse(byID[two].From)
	require.NoError(t, err)
	require.Equal(t, two, tok.MessageID)
	require.False(t, tok.Bound())

	require.Empty(t, byID[auto].From, "auto-reply: null reverse-path")
}
