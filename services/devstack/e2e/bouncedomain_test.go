package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/provider/kinds"
	"github.com/namirasoft/email-sender/pkg/suppression"
	"github.com/namirasoft/email-sender/pkg/testkit/mailservers"
	"github.com/namirasoft/email-sender/pkg/testkit/statustest"
	"github.com/namirasoft/email-sender/pkg/verp"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/inbound"
)

// TestBounceDomainPerAccount: account A registers its own bounce domain
// over HTTP/JSON, fails to verify it before publishing the TXT record, and
// verifies it once the stack's DNS server (miekg/dns) holds the record.
// Account B claims the same domain and publishes its own token too: its
// verification is refused (a domain belongs to one account). A's SMTP sends
// then go out through Mailpit with envelope senders at A's domain; a DSN
// delivered there to the inbound service (which learnt the domain from
// ingest's announcement, its periodic reload being an hour away) bounces A's
// message. An address at A's domain made for B's message is refused at RCPT;
// one claiming A for B's message passes RCPT (only the key could make it)
// and is dropped as an unknown message. After RemoveBounceDomain the inbound
// service refuses A's domain and sends use the operator's domain again.
func TestBounceDomainPerAccount(t *testing.T) {
	t.Parallel()
	bounce := verp.Config{Domain: "bounces.operator.example", Keys: base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{5}, 32))}
	signer, err := bounce.Signer()
	require.NoError(t, err)
	mp := mailservers.Mailpit(t, mailservers.Config{CA: mailservers.NewCA(t), Username: "acme", Password: "mailpit-Pa55", IdleTimeout: time.Minute})
	mpPort, _ := mp.Port(mailservers.Plain)
	s := newStack(t, stackOptions{outbound: kinds.Config{Bounce: bounce}, dns: true, http: true})

	lis := listen(t)
	svc, err := inbound.New(inbound.Config{Hostname: "mx.bounces.operator.example", Bounce: bounce, DomainsRefresh: time.Hour,
		Suppression: suppression.Config{SoftBounces: 3}}, inbound.Deps{Pool: s.db.Pool, JetStream: s.js, Listener: lis})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	actx, bctx := s.ctx("a"), s.ctx("b")
	accA, accB := s.accounts["a"].AccountID, s.accounts["b"].AccountID
	const domain = "bounces.customer-a.example"

	// Bad input names the field.
	for _, bad := range []string{"", "not a domain", "localhost", "user@" + domain, bounce.Domain, "x." + bounce.Domain} {
		_, err := s.account.SetBounceDomain(actx, &v1.SetBounceDomainRequest{Domain: bad})
		statustest.RequireField(t, err, codes.InvalidArgument, "domain")
	}
	_, err = s.account.GetBounceDomain(actx, &v1.GetBounceDomainRequest{})
	statustest.RequireField(t, err, codes.NotFound, "domain")

	// Registered over HTTP/JSON: pending, with the record to publish.
	code, body := httpRaw(t, "PUT", s.ingestURL+"/v1/bounceDomain", s.accounts["a"].APIKey, map[string]string{"domain": "Bounces.Customer-A.Example."})
	require.Equal(t, 200, code, "%s", body)
	var set struct {
		BounceDomain struct {
			Domain, Status, VerificationRecordName, VerificationRecordValue string
		}
	}
	require.NoError(t, json.Unmarshal(body, &set))
	require.Equal(t, domain, set.BounceDomain.Domain)
	require.Equal(t, "pending", set.BounceDomain.Status)
	require.Equal(t, "_emailsender."+domain, set.BounceDomain.VerificationRecordName)
	recordA := set.BounceDomain.VerificationRecordValue
	require.True(t, strings.HasPrefix(recordA, "emailsender-verification="), recordA)

	// Not yet in DNS: refused, saying what is missing; over HTTP a 400.
	_, err = s.account.VerifyBounceDomain(actx, &v1.VerifyBounceDomainRequest{})
	statustest.RequireField(t, err, codes.FailedPrecondition, "domain")
	require.Contains(t, status.Convert(err).Message(), "no TXT record at _emailsender."+domain)
	code, body = httpRaw(t, "POST", s.ingestURL+"/v1/bounceDomain:verify", s.accounts["a"].APIKey, map[string]any{})
	require.Equal(t, 400, code, "%s", body)
	got, err := s.account.GetBounceDomain(actx, &v1.GetBounceDomainRequest{})
	require.NoError(t, err)
	require.Contains(t, got.GetBounceDomain().GetLastCheck(), "no TXT record")

	// Another domain while one is registered: remove it first.
	_, err = s.account.SetBounceDomain(actx, &v1.SetBounceDomainRequest{Domain: "other.customer-a.example"})
	statustest.RequireField(t, err, codes.FailedPrecondition, "domain")

	// B claims the same domain (allowed, pending); A publishes its record
	// (next to an unrelated one) and verifies first.
	claimB, err := s.account.SetBounceDomain(bctx, &v1.SetBounceDomainRequest{Domain: domain})
	require.NoError(t, err)
	recordB := claimB.GetBounceDomain().GetVerificationRecordValue()
	require.NotEqual(t, recordA, recordB)
	s.dns.SetTXT("_emailsender."+domain, "v=spf1 -all", recordA)
	ver, err := s.account.VerifyBounceDomain(actx, &v1.VerifyBounceDomainRequest{})
	require.NoError(t, err)
	require.Equal(t, "verified", ver.GetBounceDomain().GetStatus())
	require.NotNil(t, ver.GetBounceDomain().GetVerifiedAt())
	code, body = httpRaw(t, "GET", s.ingestURL+"/v1/bounceDomain", s.accounts["a"].APIKey, nil)
	require.Equal(t, 200, code, "%s", body)
	require.Contains(t, string(body), `"status":"verified"`)
	// B's token in DNS too: still refused, the domain is A's.
	s.dns.SetTXT("_emailsender."+domain, recordA, recordB)
	_, err = s.account.VerifyBounceDomain(bctx, &v1.VerifyBounceDomainRequest{})
	statustest.RequireField(t, err, codes.AlreadyExists, "domain")
	_, err = s.account.RemoveBounceDomain(bctx, &v1.RemoveBounceDomainRequest{})
	require.NoError(t, err)

	// A sends through Mailpit: the envelope sender is at A's domain.
	put, err := s.account.PutProvider(actx, &v1.PutProviderRequest{Name: "mailpit", Settings: &v1.PutProviderRequest_Smtp{Smtp: &v1.SmtpSettings{
		Host: mp.Host, Port: int32(mpPort), TlsMode: "none", Username: "acme", Password: "mailpit-Pa55", PoolSize: 2}}})
	require.NoError(t, err)
	send := func(rcpt string) (string, string) {
		req := simple(rcpt)
		req.ProviderId = put.GetProvider().GetId()
		id := s.sendOK("a", req)
		s.waitStatus("a", id, v1.MessageStatus_SENT)
		return id, mp.WaitFor(t, id, []string{rcpt}, 20*time.Second)[0].EnvelopeFrom
	}
	gone, envFrom := send("gone@example.org")
	require.True(t, strings.HasSuffix(envFrom, "@"+domain), "envelope sender %q as Mailpit stored it", envFrom)
	require.Eventually(t, func() bool { _, err := svc.ParseAddress(envFrom); return err == nil }, 10*time.Second, 20*time.Millisecond,
		"the inbound service learns the verified domain from ingest's announcement")
	tok, err := svc.ParseAddress(envFrom)
	require.NoError(t, err)
	require.Equal(t, gone, tok.MessageID)
	require.Equal(t, accA, tok.AccountID)

	// A DSN to it bounces A's message.
	require.NoError(t, smtpDeliver(lis.Addr().String(), envFrom, dsnFor("gone@example.org")))
	resp := s.waitStatus("a", gone, v1.MessageStatus_BOUNCED)
	require.Equal(t, "hard_bounce", resp.GetEvents()[len(resp.GetEvents())-1].GetErrorClass())

	// B's message, at A's domain.
	idB := s.sendOK("b", simple("victim@example.org"))
	s.waitStatus("b", idB, v1.MessageStatus_SENT)
	forB, err := signer.AddressAt(domain, accB, idB, "victim@example.org")
	require.NoError(t, err)
	err = smtpDeliver(lis.Addr().String(), forB, dsnFor("victim@example.org"))
	var pe *textproto.Error
	require.True(t, errors.As(err, &pe), "an address made for B's message at A's domain: %v", err)
	require.Equal(t, 550, pe.Code)
	claimsA, err := signer.AddressAt(domain, accA, idB, "victim@example.org")
	require.NoError(t, err)
	require.NoError(t, smtpDeliver(lis.Addr().String(), claimsA, dsnFor("victim@example.org")),
		"an address that claims A passes RCPT (only the key makes one) ...")
	time.Sleep(500 * time.Millisecond)
	require.Equal(t, v1.MessageStatus_SENT, s.waitStatus("b", idB, v1.MessageStatus_SENT).GetMessage().GetStatus(),
		"... and is dropped: B's message is not A's")
	sups, err := s.account.ListSuppressions(bctx, &v1.ListSuppressionsRequest{})
	require.NoError(t, err)
	require.Empty(t, sups.GetSuppressions())
	// B's own address at the operator's domain still works.
	opB, err := signer.Address(idB, "victim@example.org")
	require.NoError(t, err)
	require.NoError(t, smtpDeliver(lis.Addr().String(), opB, dsnFor("victim@example.org")))
	s.waitStatus("b", idB, v1.MessageStatus_BOUNCED)

	// Removed: the inbound service refuses A's domain; sends go back to the
	// operator's (once the worker's configuration cache expires).
	_, err = s.account.RemoveBounceDomain(actx, &v1.RemoveBounceDomainRequest{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, err := svc.ParseAddress(envFrom); return err != nil }, 10*time.Second, 20*time.Millisecond)
	err = smtpDeliver(lis.Addr().String(), envFrom, dsnFor("gone@example.org"))
	require.True(t, errors.As(err, &pe), "%v", err)
	require.Equal(t, 550, pe.Code)
	require.Eventually(t, func() bool {
		_, from := send("later@example.org")
		return strings.HasSuffix(from, "@"+bounce.Domain)
	}, 30*time.Second, time.Second)
}

// dsnFor is a Postfix DSN (user unknown) for rcpt.
func dsnFor(rcpt string) []byte {
	return []byte(strings.ReplaceAll(`From: MAILER-DAEMON@mx.example.org (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: someone@example.com
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"

--B1
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org
Arrival-Date: Mon, 4 May 2026 10:00:00 +0000

Final-Recipient: rfc822; RCPT
Original-Recipient: rfc822;RCPT
Action: failed
Status: 5.1.1
Remote-MTA: dns; mail.example.org
Diagnostic-Code: smtp; 550 5.1.1 <RCPT>: Recipient address rejected: User unknown

--B1--
`, "RCPT", rcpt))
}
