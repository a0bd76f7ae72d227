package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/provider/kinds"
	"github.com/namirasoft/email-sender/pkg/suppression"
	"github.com/namirasoft/email-sender/pkg/testkit/mailservers"
	"github.com/namirasoft/email-sender/pkg/verp"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/inbound"
)

// TestSMTPBouncesAndComplaintsByMail: the worker sends through the SMTP
// provider to Mailpit (a real server) with BOUNCE_DOMAIN set, so each
// message's envelope sender is its signed bounce address; the test reads
// that address back from what Mailpit stored, and delivers, over SMTP to the
// inbound service, what the receiving side would send there: a Postfix DSN
// (user unknown), a Spamhaus block DSN and an ARF abuse report. The report
// then shows BOUNCED with class hard_bounce (address suppressed, and the
// next message to it SUPPRESSED), BOUNCED policy_block (not suppressed) and
// COMPLAINED (suppressed). A bounce to a forged address is refused at RCPT.
func TestSMTPBouncesAndComplaintsByMail(t *testing.T) {
	t.Parallel()
	bounce := verp.Config{Domain: "bounces.example.net", Keys: base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32))}
	mp := mailservers.Mailpit(t, mailservers.Config{
		CA: mailservers.NewCA(t), Username: "acme", Password: "mailpit-Pa55",
		MaxSize: 10 << 20, IdleTimeout: time.Minute, RefuseLocalPart: "refused",
	})
	mpPort, _ := mp.Port(mailservers.Plain)
	s := newStack(t, stackOptions{outbound: kinds.Config{Bounce: bounce}})

	// The inbound service, as cmd/inbound runs it, on the stack's database and stream.
	lis := listen(t)
	svc, err := inbound.New(inbound.Config{Hostname: "mx.bounces.example.net", Bounce: bounce,
		Suppression: suppression.Config{SoftBounces: 3}}, inbound.Deps{Pool: s.db.Pool, JetStream: s.js, Listener: lis})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	actx := s.ctx("a")
	put, err := s.account.PutProvider(actx, &v1.PutProviderRequest{Name: "mailpit", Settings: &v1.PutProviderRequest_Smtp{Smtp: &v1.SmtpSettings{
		Host: mp.Host, Port: int32(mpPort), TlsMode: "none", Username: "acme", Password: "mailpit-Pa55", PoolSize: 2}}})
	require.NoError(t, err)
	providerID := put.GetProvider().GetId()

	// send sends one message to rcpt through Mailpit and returns its id and
	// the envelope sender Mailpit recorded.
	send := func(rcpt string) (string, string) {
		req := simple(rcpt)
		req.ProviderId = providerID
		id := s.sendOK("a", req)
		s.waitStatus("a", id, v1.MessageStatus_SENT)
		got := mp.WaitFor(t, id, []string{rcpt}, 20*time.Second)
		return id, got[0].EnvelopeFrom
	}
	corpus := func(path, local string) []byte {
		_, file, _, _ := runtime.Caller(0)
		raw, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "..", "pkg", "mailreport", "testdata", "corpus", path))
		require.NoError(t, err)
		return bytes.ReplaceAll(raw, []byte("jane@"), []byte(local+"@"))
	}
	suppressions := func() map[string]string {
		sups, err := s.account.ListSuppressions(actx, &v1.ListSuppressionsRequest{PageSize: 50})
		require.NoError(t, err)
		out := map[string]string{}
		for _, sp := range sups.GetSuppressions() {
			out[sp.GetAddress()] = sp.GetReason()
		}
		return out
	}
	event := func(resp *v1.GetMessageResponse, typ string) *v1.MessageEvent {
		for _, e := range resp.GetEvents() {
			if e.GetType() == typ {
				return e
			}
		}
		t.Fatalf("no %s event: %v", typ, eventTypes(resp))
		return nil
	}
	errorClass := func(resp *v1.GetMessageResponse, typ string) string { return event(resp, typ).GetErrorClass() }

	// Hard bounce.
	gone, envFrom := send("gone@example.org")
	tok, err := svc.Signer().Parse(envFrom)
	require.NoError(t, err, "envelope sender %q as Mailpit stored it", envFrom)
	require.Equal(t, gone, tok.MessageID)
	require.NoError(t, smtpDeliver(lis.Addr().String(), envFrom, corpus("hard_bounce/postfix-user-unknown.eml", "gone")))
	resp := s.waitStatus("a", gone, v1.MessageStatus_BOUNCED)
	require.Equal(t, "hard_bounce", errorClass(resp, "BOUNCED"))
	require.Equal(t, "hard bounce (5.1.1, by mail): address suppressed", event(resp, "BOUNCED").GetDetail())
	require.Contains(t, resp.GetRecipients()[0].GetDetail(), "User unknown")
	require.Equal(t, "bounce", suppressions()["gone@example.org"])

	// Policy block: bounced, never suppressed.
	blocked, envFrom := send("blocked@example.org")
	require.NoError(t, smtpDeliver(lis.Addr().String(), envFrom, corpus("policy_block/postfix-spamhaus.eml", "blocked")))
	resp = s.waitStatus("a", blocked, v1.MessageStatus_BOUNCED)
	require.Equal(t, "policy_block", errorClass(resp, "BOUNCED"))

	// Complaint (ARF).
	angry, envFrom := send("angry@example.org")
	require.NoError(t, smtpDeliver(lis.Addr().String(), envFrom, corpus("complaint/rfc5965-abuse.eml", "angry")))
	resp = s.waitStatus("a", angry, v1.MessageStatus_COMPLAINED)
	require.Equal(t, "complaint", errorClass(resp, "COMPLAINED"))

	sups := suppressions()
	require.Equal(t, "complaint", sups["angry@example.org"])
	require.NotContains(t, sups, "blocked@example.org")

	// Forged: a bounce address made with another key is refused at RCPT.
	forger, err := verp.New(bounce.Domain, bytes.Repeat([]byte{1}, 32))
	require.NoError(t, err)
	victim, _ := send("victim@example.org")
	forged, err := forger.Address(victim, "victim@example.org")
	require.NoError(t, err)
	err = smtpDeliver(lis.Addr().String(), forged, corpus("hard_bounce/postfix-user-unknown.eml", "victim"))
	var pe *textproto.Error
	require.True(t, errors.As(err, &pe), "%v", err)
	require.Equal(t, 550, pe.Code)
	require.NotContains(t, suppressions(), "victim@example.org")
	require.Equal(t, v1.MessageStatus_SENT, s.waitStatus("a", victim, v1.MessageStatus_SENT).GetMessage().GetStatus())

	// The suppressed address gets nothing more.
	next := simple("gone@example.org")
	next.ProviderId = providerID
	s.waitStatus("a", s.sendOK("a", next), v1.MessageStatus_SUPPRESSED)
}

// smtpDeliver sends raw to rcpt as a bouncing MTA does (MAIL FROM:<>).
func smtpDeliver(addr, rcpt string, raw []byte) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	c, err := smtp.NewClient(conn, "mx.bounces.example.net")
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("mx.example.org"); err != nil {
		return err
	}
	if err := c.Mail(""); err != nil {
		return err
	}
	if err := c.Rcpt(rcpt); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(raw); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}
