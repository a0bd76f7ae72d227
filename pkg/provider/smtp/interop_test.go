package smtp_test

// The interoperability matrix: the SMTP provider against SMTP servers nobody
// here wrote (pkg/mailservers: Mailpit, Postfix, aiosmtpd), every delivered
// message read back from the server and checked by an independent MIME parser
// (pkg/mimecheck: Python's email package) against what was sent.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/address"
	"github.com/namirasoft/email-sender/pkg/mime"
	"github.com/namirasoft/email-sender/pkg/netguard"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/smtp"
	"github.com/namirasoft/email-sender/pkg/testkit/mailservers"
	"github.com/namirasoft/email-sender/pkg/testkit/mimecheck"
	"github.com/namirasoft/email-sender/pkg/testkit/tcprelay"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// interopServers are the implementations of the matrix.
var interopServers = []struct {
	name  string
	start func(testing.TB, mailservers.Config) *mailservers.Server
}{
	{"mailpit", mailservers.Mailpit},
	{"postfix", mailservers.Postfix},
	{"aiosmtpd", mailservers.AIOSMTPD},
}

const (
	interopUser     = "interop-user"
	interopPassword = "interop-Pa55word!"
	interopMaxSize  = 15 << 20
	// interopIdle is the idle timeout of the servers most cases use: long,
	// since aiosmtpd counts a long DATA transfer as idle time (its timer is
	// reset by commands only) and a 10 MB message on a loaded machine takes
	// seconds. The idle-connection case starts a server of its own with
	// shortIdle.
	interopIdle = 30 * time.Second
	shortIdle   = 2 * time.Second
)

// interopEnv is what a case gets: one running server, and how to start
// another of the same kind.
type interopEnv struct {
	srv   *mailservers.Server
	ca    *mailservers.CA
	cfg   mailservers.Config
	start func(testing.TB, mailservers.Config) *mailservers.Server
}

// interopCase is one cell of the matrix per server. modes lists the listener
// modes it needs; a server without one of them has no such cell.
type interopCase struct {
	name  string
	modes []mailservers.Mode
	// notFor names servers that cannot be set up for the case, and why.
	notFor map[string]string
	run    func(t *testing.T, e interopEnv)
}

func TestInterop(t *testing.T) {
	t.Parallel()
	ca := mailservers.NewCA(t)
	cfg := mailservers.Config{
		CA: ca, Username: interopUser, Password: interopPassword,
		MaxSize: interopMaxSize, IdleTimeout: interopIdle, RefuseLocalPart: "refused",
	}
	var mu sync.Mutex
	matrix := map[string]map[string]string{} // case -> server -> result
	record := func(c, s, r string) {
		mu.Lock()
		defer mu.Unlock()
		if matrix[c] == nil {
			matrix[c] = map[string]string{}
		}
		matrix[c][s] = r
	}
	t.Cleanup(func() { t.Log("interoperability matrix\n" + matrixTable(matrix)) })

	for _, is := range interopServers {
		t.Run(is.name, func(t *testing.T) {
			t.Parallel()
			srv := is.start(t, cfg)
			t.Logf("%s %s", srv.Name, srv.Version)
			e := interopEnv{srv: srv, ca: ca, cfg: cfg, start: is.start}
			for _, c := range interopCases {
				missing := ""
				for _, m := range c.modes {
					if _, ok := srv.Port(m); !ok {
						missing = string(m)
					}
				}
				if why, ok := c.notFor[is.name]; ok {
					record(c.name, is.name, "n/a ("+why+")")
					continue
				}
				if missing != "" {
					// Not a skip: the implementation has no such listener
					// (see its starter's doc); the matrix says so.
					record(c.name, is.name, "n/a ("+missing+")")
					continue
				}
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					t.Cleanup(func() {
						r := "pass"
						if t.Failed() {
							r = "FAIL"
						}
						record(c.name, is.name, r)
					})
					c.run(t, e)
				})
			}
		})
	}
}

func matrixTable(m map[string]map[string]string) string {
	var b strings.Builder
	b.WriteString("| case |")
	for _, s := range interopServers {
		b.WriteString(" " + s.name + " |")
	}
	b.WriteString("\n|---|")
	for range interopServers {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, c := range interopCases {
		b.WriteString("| " + c.name + " |")
		for _, s := range interopServers {
			r := m[c.name][s.name]
			if r == "" {
				r = "not run"
			}
			b.WriteString(" " + r + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}

var interopCases = []interopCase{
	{name: "plain ASCII", modes: []mailservers.Mode{mailservers.Plain}, run: func(t *testing.T, e interopEnv) {
		m := baseMessage()
		deliverAndCheck(t, e, e.settings(mailservers.Plain, smtp.TLSNone, true), m)
	}},
	{name: "unicode names, subject, body", modes: []mailservers.Mode{mailservers.Plain}, run: func(t *testing.T, e interopEnv) {
		m := baseMessage()
		m.From.Name = "Jörg Müller-Lüdenscheidt"
		m.To = []*emailsenderv1.Address{{Address: "anna@example.com", Name: "Ánna Øster 用户"}}
		m.Subject = "Grüße aus Köln 🌍: ünïcödé — and a long subject that has to be folded over more than one header line"
		m.TextBody = "Grüße! Ελληνικά, Русский, 中文, العربية 🌍\nSecond line."
		m.HtmlBody = "<p>Grüße! <b>Ελληνικά</b> 🌍</p>"
		deliverAndCheck(t, e, e.settings(mailservers.Plain, smtp.TLSNone, true), m)
	}},
	{name: "IDN domains", modes: []mailservers.Mode{mailservers.Plain}, run: func(t *testing.T, e interopEnv) {
		m := baseMessage()
		m.From = &emailsenderv1.Address{Address: "news@bücher.example", Name: "Bücher"}
		m.To = []*emailsenderv1.Address{{Address: "jane@例え.jp"}, {Address: "joe@müller.example", Name: "Joe"}}
		deliverAndCheck(t, e, e.settings(mailservers.Plain, smtp.TLSNone, true), m)
	}},
	{name: "internationalised local part (SMTPUTF8)", modes: []mailservers.Mode{mailservers.Plain}, run: func(t *testing.T, e interopEnv) {
		require.True(t, e.srv.SMTPUTF8, "every server of the matrix offers SMTPUTF8")
		m := baseMessage()
		m.To = []*emailsenderv1.Address{{Address: "jörg@bücher.example", Name: "Jörg"}}
		m.Bcc = []*emailsenderv1.Address{{Address: "用户@example.com"}}
		deliverAndCheck(t, e, e.settings(mailservers.Plain, smtp.TLSNone, true), m)
	}},
	{name: "to/cc/bcc, one refused (partial)", modes: []mailservers.Mode{mailservers.Plain}, run: func(t *testing.T, e interopEnv) {
		m := baseMessage()
		m.To = []*emailsenderv1.Address{{Address: "to1@example.com", Name: "To One"}, {Address: "refused@example.com"}}
		m.Cc = []*emailsenderv1.Address{{Address: "cc1@example.org", Name: "Cc One"}, {Address: "cc2@example.org"}}
		m.Bcc = []*emailsenderv1.Address{{Address: "bcc1@example.net", Name: "Hidden"}, {Address: "bcc2@example.net"}}
		out := deliverAndCheck(t, e, e.settings(mailservers.Plain, smtp.TLSNone, true), m)
		require.Len(t, out.Rejected, 1, "rejected: %v", out.Rejected)
		require.Contains(t, out.Rejected, "refused@example.com")
		require.Regexp(t, `^5\d\d `, out.Rejected["refused@example.com"])
	}},
	{name: "STARTTLS required", modes: []mailservers.Mode{mailservers.StartTLSRequired}, run: func(t *testing.T, e interopEnv) {
		deliverAndCheck(t, e, e.settings(mailservers.StartTLSRequired, smtp.TLSStartTLS, false), baseMessage())
		// Without TLS the server refuses the transaction.
		out := e.send(t, e.settings(mailservers.StartTLSRequired, smtp.TLSNone, false), baseMessage())
		require.NotEqual(t, provider.Sent, out.Class, "a server requiring STARTTLS took a message in the clear: %s", out.Response)
	}},
	{name: "STARTTLS opportunistic", modes: []mailservers.Mode{mailservers.Plain}, run: func(t *testing.T, e interopEnv) {
		deliverAndCheck(t, e, e.settings(mailservers.Plain, smtp.TLSStartTLSOpportunistic, true), baseMessage())
	}},
	{name: "implicit TLS (465)", modes: []mailservers.Mode{mailservers.Implicit}, run: func(t *testing.T, e interopEnv) {
		deliverAndCheck(t, e, e.settings(mailservers.Implicit, smtp.TLSImplicit, false), baseMessage())
	}},
	{name: "AUTH PLAIN", modes: []mailservers.Mode{mailservers.Plain}, run: func(t *testing.T, e interopEnv) {
		deliverAndCheck(t, e, e.settings(mailservers.Plain, smtp.TLSStartTLS, true), baseMessage())
		s := e.settings(mailservers.Plain, smtp.TLSStartTLS, true)
		s.password = "wrong-password"
		out := e.send(t, s, baseMessage())
		require.Equal(t, provider.Credentials, out.Class, "err %v, response %q", out.Err, out.Response)
		require.NotContains(t, fmt.Sprint(out.Err)+out.Response, "wrong-password")
	}},
	{name: "AUTH LOGIN", modes: []mailservers.Mode{mailservers.LoginOnly}, run: func(t *testing.T, e interopEnv) {
		deliverAndCheck(t, e, e.settings(mailservers.LoginOnly, smtp.TLSStartTLS, true), baseMessage())
		s := e.settings(mailservers.LoginOnly, smtp.TLSStartTLS, true)
		s.password = "wrong-password"
		out := e.send(t, s, baseMessage())
		require.Equal(t, provider.Credentials, out.Class, "err %v, response %q", out.Err, out.Response)
	}},
	{name: "over the server's SIZE", modes: []mailservers.Mode{mailservers.Plain}, run: func(t *testing.T, e interopEnv) {
		m := baseMessage()
		m.Attachments = []*emailsenderv1.Attachment{{Filename: "big.bin", ContentType: "application/octet-stream", Content: randomBytes(t, interopMaxSize)}}
		out := e.send(t, e.settings(mailservers.Plain, smtp.TLSNone, true), m)
		require.Equal(t, provider.Permanent, out.Class, "err %v, response %q", out.Err, out.Response)
		var se *smtp.SizeError
		require.ErrorAs(t, out.Err, &se, "refused before DATA, saying so: %v", out.Err)
		require.EqualValues(t, interopMaxSize, se.Limit)
		require.Contains(t, out.Err.Error(), "SIZE")
	}},
	{name: "100 KB attachment and inline image", modes: []mailservers.Mode{mailservers.Plain}, run: func(t *testing.T, e interopEnv) {
		m := baseMessage()
		m.HtmlBody = `<p>Logo: <img src="cid:logo@interop"></p>`
		m.Attachments = []*emailsenderv1.Attachment{
			{Filename: "report.pdf", ContentType: "application/pdf", Content: randomBytes(t, 100<<10)},
			{Filename: "logo.png", ContentType: "image/png", Content: randomBytes(t, 3000), ContentId: "logo@interop"},
			{Filename: "notes-ü.txt", ContentType: "text/plain", Content: []byte("line one\r\n.line two starts with a dot\r\n")},
		}
		deliverAndCheck(t, e, e.settings(mailservers.Plain, smtp.TLSNone, true), m)
	}},
	{name: "10 MB attachment", modes: []mailservers.Mode{mailservers.Plain}, run: func(t *testing.T, e interopEnv) {
		m := baseMessage()
		m.Attachments = []*emailsenderv1.Attachment{{Filename: "archive.zip", ContentType: "application/zip", Content: randomBytes(t, 10<<20)}}
		deliverAndCheck(t, e, e.settings(mailservers.Plain, smtp.TLSNone, true), m)
	}},
	{name: "lines starting with a dot", modes: []mailservers.Mode{mailservers.Plain}, run: func(t *testing.T, e interopEnv) {
		m := baseMessage()
		m.TextBody = ".\n..\n.leading dot\nmiddle\n. \n...three"
		raw, err := mime.Raw(m, mime.Options{MessageID: "probe"})
		require.NoError(t, err)
		require.True(t, bytes.Contains(raw, []byte("\r\n.\r\n")) && bytes.Contains(raw, []byte("\r\n.leading")),
			"the built message must have lines starting with a dot for this case to test dot-stuffing:\n%s", raw)
		deliverAndCheck(t, e, e.settings(mailservers.Plain, smtp.TLSNone, true), m)
	}},
	{name: "null reverse-path (auto-reply)", modes: []mailservers.Mode{mailservers.Plain}, run: func(t *testing.T, e interopEnv) {
		m := baseMessage()
		m.Headers = []*emailsenderv1.Header{{Name: "Auto-Submitted", Value: "auto-replied"}}
		deliverAndCheck(t, e, e.settings(mailservers.Plain, smtp.TLSNone, true), m)
	}},
	{name: "many messages, one pooled connection (RSET between)", modes: []mailservers.Mode{mailservers.Plain}, run: func(t *testing.T, e interopEnv) {
		p := tcprelay.Start(t, "127.0.0.1:0", net.JoinHostPort(e.srv.Host, fmt.Sprint(mustPort(t, e.srv, mailservers.Plain))))
		s := e.settings(mailservers.Plain, smtp.TLSNone, true)
		s.port = p.Port
		s.poolSize = 1
		sender := e.sender(t)
		var ids []string
		for i := range 8 {
			m := baseMessage()
			if i == 3 {
				// Every recipient refused: the transaction is aborted with
				// RSET and the connection carries on.
				m.To = []*emailsenderv1.Address{{Address: "refused@example.com"}}
				out := sendWith(t, sender, s, m)
				require.Equal(t, provider.Permanent, out.Class, "err %v", out.Err)
				continue
			}
			out := sendWith(t, sender, s, m)
			require.Equal(t, provider.Sent, out.Class, "message %d: err %v, response %q", i, out.Err, out.Response)
			ids = append(ids, markerOf(out))
		}
		for _, id := range ids {
			e.srv.WaitFor(t, id, []string{"someone@example.com"}, 30*time.Second)
		}
		require.EqualValues(t, 1, p.Conns(), "8 transactions over one connection")
	}},
	{name: "server closes idle connections", modes: []mailservers.Mode{mailservers.Plain}, notFor: map[string]string{"mailpit": "its idle timeout cannot be set"}, run: func(t *testing.T, e interopEnv) {
		cfg := e.cfg
		cfg.IdleTimeout = shortIdle
		e.srv = e.start(t, cfg)
		p := tcprelay.Start(t, "127.0.0.1:0", net.JoinHostPort(e.srv.Host, fmt.Sprint(mustPort(t, e.srv, mailservers.Plain))))
		s := e.settings(mailservers.Plain, smtp.TLSNone, true)
		s.port = p.Port
		s.poolSize = 1
		sender := e.sender(t)
		first := sendWith(t, sender, s, baseMessage())
		require.Equal(t, provider.Sent, first.Class, "err %v", first.Err)
		time.Sleep(shortIdle + 1500*time.Millisecond) // the server hangs up meanwhile
		second := sendWith(t, sender, s, baseMessage())
		require.Equal(t, provider.Sent, second.Class, "after the server closed the idle connection: err %v, response %q", second.Err, second.Response)
		e.srv.WaitFor(t, markerOf(second), []string{"someone@example.com"}, 30*time.Second)
		require.EqualValues(t, 2, p.Conns(), "a second connection after the server closed the first")
	}},
}

// interopSettings are the settings of one provider configuration.
type interopSettings struct {
	host     string
	port     int
	tls      string
	auth     bool
	password string
	poolSize int
}

func (e interopEnv) settings(m mailservers.Mode, tls string, auth bool) interopSettings {
	return interopSettings{host: e.srv.Host, port: mustPortOK(e.srv, m), tls: tls, auth: auth, password: interopPassword, poolSize: 2}
}

func mustPortOK(s *mailservers.Server, m mailservers.Mode) int {
	p, _ := s.Port(m)
	return p
}

func mustPort(t *testing.T, s *mailservers.Server, m mailservers.Mode) int {
	p, ok := s.Port(m)
	require.True(t, ok, "%s has no %s listener", s.Name, m)
	return p
}

func (s interopSettings) config(t *testing.T) provider.Config {
	set := map[string]any{"host": s.host, "port": s.port, "tls": s.tls, "pool_size": s.poolSize, "timeout_seconds": 60}
	var secret []byte
	if s.auth {
		set["username"] = interopUser
		secret, _ = json.Marshal(map[string]string{"password": s.password})
	}
	b, err := json.Marshal(set)
	require.NoError(t, err)
	return provider.Config{ID: "interop-" + s.host, AccountID: "acc-interop", Kind: "smtp", Settings: b, Secret: secret, Version: time.Unix(1, 0)}
}

func (e interopEnv) sender(t *testing.T) *smtp.Sender {
	s := smtp.New(smtp.Options{RootCAs: e.ca.Pool, Guard: netguard.AllowAll()})
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// send sends m once with a sender of its own.
func (e interopEnv) send(t *testing.T, s interopSettings, m *emailsenderv1.EmailMessage) provider.Outcome {
	return sendWith(t, e.sender(t), s, m)
}

var interopSeq atomic.Int64

func sendWith(t *testing.T, sender *smtp.Sender, s interopSettings, m *emailsenderv1.EmailMessage) provider.Outcome {
	t.Helper()
	id := fmt.Sprintf("interop-%d-%d", time.Now().UnixNano(), interopSeq.Add(1))
	var rcpts []string
	for _, l := range [][]*emailsenderv1.Address{m.GetTo(), m.GetCc(), m.GetBcc()} {
		for _, a := range l {
			p, err := address.Parse(a.GetAddress())
			require.NoError(t, err)
			rcpts = append(rcpts, p.Lower())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := sender.Send(ctx, &provider.Delivery{
		Job:        &queuev1.SendJob{MessageId: id, AccountId: "acc-interop", Message: m, AcceptedAt: timestamppb.Now()},
		Attempt:    1,
		Recipients: rcpts,
		Config:     s.config(t),
	})
	out.MessageID = id + "|" + out.MessageID // markerOf splits it off again
	return out
}

// markerOf is the service's message id of an outcome of sendWith: it is in
// the Message-ID header, so it finds the message at the server.
func markerOf(out provider.Outcome) string {
	id, _, _ := strings.Cut(out.MessageID, "|")
	return id
}

func baseMessage() *emailsenderv1.EmailMessage {
	return &emailsenderv1.EmailMessage{
		From:     &emailsenderv1.Address{Address: "sender@interop.example", Name: "Interop Sender"},
		To:       []*emailsenderv1.Address{{Address: "someone@example.com", Name: "Someone"}},
		Subject:  "Interop test",
		TextBody: "Hello from Email Sender.\nSecond line.",
	}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	_, err := io.ReadFull(rand.Reader, b)
	require.NoError(t, err)
	return b
}

// deliverAndCheck sends m, expects it sent, reads it back from the server and
// checks it with the independent parser. It returns the outcome.
func deliverAndCheck(t *testing.T, e interopEnv, s interopSettings, m *emailsenderv1.EmailMessage) provider.Outcome {
	t.Helper()
	out := e.send(t, s, m)
	require.Equal(t, provider.Sent, out.Class, "err %v, response %q", out.Err, out.Response)
	require.Regexp(t, `^250 `, out.Response)
	id := markerOf(out)

	var want []string
	for _, l := range [][]*emailsenderv1.Address{m.GetTo(), m.GetCc(), m.GetBcc()} {
		for _, a := range l {
			p, err := address.Parse(a.GetAddress())
			require.NoError(t, err)
			if p.Local == "refused" {
				continue
			}
			want = append(want, p.String())
		}
	}
	copies := e.srv.WaitFor(t, id, want, 60*time.Second)

	// Every copy went to one of the wanted recipients and none to a refused one.
	var got []string
	for _, c := range copies {
		for _, r := range c.Recipients {
			got = append(got, strings.ToLower(r))
		}
	}
	if e.srv.Name != "mailpit" { // Mailpit lists the header recipients, not the envelope's
		for _, r := range got {
			require.NotContains(t, r, "refused@", "a refused recipient got the message")
		}
	}

	// The envelope sender, where the server keeps it.
	if e.srv.Name != "mailpit" {
		wantFrom, err := mime.CanonicalAddress(m.GetFrom().GetAddress())
		require.NoError(t, err)
		for _, h := range m.GetHeaders() {
			if h.GetName() == "Auto-Submitted" {
				wantFrom = ""
			}
		}
		for _, c := range copies {
			require.Equal(t, strings.ToLower(wantFrom), strings.ToLower(c.EnvelopeFrom), "envelope sender")
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	parsed, err := mimecheck.ParseOne(ctx, copies[0].Raw)
	require.NoError(t, err)
	checkParsed(t, parsed, m, id)
	return out
}

// checkParsed compares the independent reading with the message sent.
func checkParsed(t *testing.T, p *mimecheck.Message, m *emailsenderv1.EmailMessage, id string) {
	t.Helper()
	require.Empty(t, p.Defects, "the parser found defects")
	require.Contains(t, p.MessageID, id)
	require.Equal(t, m.GetSubject(), p.Subject)

	addrs := func(in []*emailsenderv1.Address) []mimecheck.Address {
		var out []mimecheck.Address
		for _, a := range in {
			c, err := mime.CanonicalAddress(a.GetAddress())
			require.NoError(t, err)
			out = append(out, mimecheck.Address{Name: a.GetName(), Address: c})
		}
		return out
	}
	require.Equal(t, addrs([]*emailsenderv1.Address{m.GetFrom()}), p.Addresses["from"], "From")
	require.Equal(t, addrs(m.GetTo()), p.Addresses["to"], "To")
	require.Equal(t, addrs(m.GetCc()), p.Addresses["cc"], "Cc")
	require.NotContains(t, p.Addresses, "bcc", "Bcc recipients must not be in the headers")
	for _, h := range p.Headers {
		require.NotEqual(t, "bcc", strings.ToLower(h[0]), "a Bcc header reached the server")
	}
	for _, h := range m.GetHeaders() {
		require.Contains(t, p.Header(h.GetName()), h.GetValue(), "header %s", h.GetName())
	}

	var texts, htmls []string
	byName := map[string]mimecheck.Part{}
	for _, l := range p.Leaves() {
		switch {
		case l.Filename != "":
			byName[l.Filename] = l
		case l.ContentType == "text/plain":
			texts = append(texts, l.Text)
		case l.ContentType == "text/html":
			htmls = append(htmls, l.Text)
		}
	}
	norm := func(s string) string { return strings.TrimRight(strings.ReplaceAll(s, "\r\n", "\n"), "\n") }
	if m.GetTextBody() != "" {
		require.Len(t, texts, 1)
		require.Equal(t, norm(m.GetTextBody()), norm(texts[0]), "text body")
	}
	if m.GetHtmlBody() != "" {
		require.Len(t, htmls, 1)
		require.Equal(t, norm(m.GetHtmlBody()), norm(htmls[0]), "html body")
	}
	require.Len(t, byName, len(m.GetAttachments()), "attachments: %v", keysOf(byName))
	for _, a := range m.GetAttachments() {
		got, ok := byName[a.GetFilename()]
		require.True(t, ok, "attachment %q missing; have %v", a.GetFilename(), keysOf(byName))
		sum := sha256.Sum256(a.GetContent())
		require.Equal(t, hex.EncodeToString(sum[:]), got.SHA256, "attachment %q bytes", a.GetFilename())
		require.Equal(t, len(a.GetContent()), got.Size)
		require.Equal(t, a.GetContentType(), got.ContentType)
		if a.GetContentId() != "" {
			require.Equal(t, "<"+a.GetContentId()+">", got.ContentID)
			require.Equal(t, "inline", got.Disposition)
		} else {
			require.Equal(t, "attachment", got.Disposition)
		}
	}
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// BenchmarkInterop measures the delivery rate of the SMTP provider to each
// server of the matrix: 1 KB messages, 8 pooled connections, over loopback
// with no TLS and AUTH PLAIN once per connection. `make bench` runs it.
func BenchmarkInterop(b *testing.B) {
	ca := mailservers.NewCA(b)
	cfg := mailservers.Config{
		CA: ca, Username: interopUser, Password: interopPassword,
		MaxSize: interopMaxSize, IdleTimeout: time.Minute, RefuseLocalPart: "refused",
	}
	for _, is := range interopServers {
		b.Run(is.name, func(b *testing.B) {
			srv := is.start(b, cfg)
			port, _ := srv.Port(mailservers.Plain)
			set, err := json.Marshal(map[string]any{"host": srv.Host, "port": port, "tls": smtp.TLSNone,
				"username": interopUser, "pool_size": 8, "timeout_seconds": 30})
			require.NoError(b, err)
			secret, err := json.Marshal(map[string]string{"password": interopPassword})
			require.NoError(b, err)
			pc := provider.Config{ID: "bench-" + is.name, AccountID: "acc-bench", Kind: "smtp", Settings: set, Secret: secret, Version: time.Unix(1, 0)}
			sender := smtp.New(smtp.Options{RootCAs: ca.Pool, Guard: netguard.AllowAll()})
			b.Cleanup(func() { _ = sender.Close() })
			m := baseMessage()
			m.TextBody = strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing. ", 20) // ~1 KB
			var seq atomic.Int64
			b.SetParallelism(8 / max(1, runtimeProcs()))
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := fmt.Sprintf("bench-%s-%d", is.name, seq.Add(1))
					out := sender.Send(context.Background(), &provider.Delivery{
						Job:        &queuev1.SendJob{MessageId: id, AccountId: "acc-bench", Message: m, AcceptedAt: timestamppb.Now()},
						Attempt:    1,
						Recipients: []string{"someone@example.com"},
						Config:     pc,
					})
					if out.Class != provider.Sent {
						b.Errorf("send: %v %v", out.Class, out.Err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
