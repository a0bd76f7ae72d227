package e2e

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/testkit/smtpsink"
	"github.com/namirasoft/email-sender/pkg/testkit/statustest"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// senderCodeRE finds the verification code in the raw mail (a line of its own).
var senderCodeRE = regexp.MustCompile(`(?m)^\s+(\d{8})\s*$`)

// TestSenderVerification mails a code through the account's SMTP provider (a
// sink), reads it there, and confirms the sender with it.
func TestSenderVerification(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	ctx, acc := s.ctx("a"), s.account
	sink := smtpsink.StartTest(t)
	prov, err := acc.PutProvider(ctx, &v1.PutProviderRequest{Name: "sink", MakeDefault: true, Settings: &v1.PutProviderRequest_Smtp{Smtp: &v1.SmtpSettings{
		Host: sink.Host(), Port: int32(sink.Port()), TlsMode: "none",
	}}})
	require.NoError(t, err)

	newsletter := func() *v1.SendEmailRequest {
		return &v1.SendEmailRequest{Message: &v1.EmailMessage{
			From: &v1.Address{Address: "News@Acme.example"}, To: []*v1.Address{{Address: "reader@example.org"}},
			Subject: "news", TextBody: "hello",
		}}
	}
	_, err = s.send.SendEmail(ctx, newsletter())
	statustest.RequireField(t, err, codes.FailedPrecondition, "message.from.address")
	require.Contains(t, status.Convert(err).Message(), "News@acme.example")

	added, err := acc.AddSender(ctx, &v1.AddSenderRequest{Address: "News@Acme.example"})
	require.NoError(t, err)
	sender := added.GetSender()
	require.Equal(t, "news@acme.example", sender.GetAddress())
	require.Equal(t, "pending", sender.GetStatus())
	require.Equal(t, "code", sender.GetMethod())
	require.Equal(t, prov.GetProvider().GetId(), sender.GetProviderId())

	msgs, err := sink.WaitFor(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, "News@acme.example", msgs[0].From, "mailed from the address itself")
	require.Equal(t, []string{"news@acme.example"}, msgs[0].To)
	m := senderCodeRE.FindSubmatch(msgs[0].Data)
	require.NotNil(t, m, "code in %s", msgs[0].Data)
	code := string(m[1])

	// Only a hash of the code is stored.
	var hash []byte
	require.NoError(t, s.db.Pool.QueryRow(t.Context(), `SELECT code_hash FROM senders WHERE id = $1`, sender.GetId()).Scan(&hash))
	require.NotContains(t, string(hash), code)

	wrong := "00000000"
	if code == wrong {
		wrong = "11111111"
	}
	_, err = acc.VerifySender(ctx, &v1.VerifySenderRequest{Id: sender.GetId(), Code: wrong})
	statustest.RequireField(t, err, codes.InvalidArgument, "code")
	require.Contains(t, status.Convert(err).Message(), "4 attempts left")
	_, err = acc.VerifySender(ctx, &v1.VerifySenderRequest{Id: sender.GetId()})
	statustest.RequireField(t, err, codes.InvalidArgument, "code")
	_, err = acc.VerifySender(ctx, &v1.VerifySenderRequest{Id: "0190d1d6-0000-7000-8000-000000000000", Code: code})
	statustest.RequireField(t, err, codes.NotFound, "id")
	ok, err := acc.VerifySender(ctx, &v1.VerifySenderRequest{Id: sender.GetId(), Code: code})
	require.NoError(t, err)
	require.Equal(t, "verified", ok.GetSender().GetStatus())
	require.NotNil(t, ok.GetSender().GetVerifiedAt())

	_, err = s.send.SendEmail(ctx, newsletter())
	require.NoError(t, err)
	_, err = acc.AddSender(ctx, &v1.AddSenderRequest{Address: "news@acme.example"})
	statustest.RequireField(t, err, codes.AlreadyExists, "address")

	// Five wrong codes kill the code; the right one no longer works.
	added, err = acc.AddSender(ctx, &v1.AddSenderRequest{Address: "billing@acme.example"})
	require.NoError(t, err)
	msgs, err = sink.WaitFor(ctx, 3)
	require.NoError(t, err)
	var code2 string
	for _, mm := range msgs {
		if mm.To[0] == "billing@acme.example" {
			code2 = string(senderCodeRE.FindSubmatch(mm.Data)[1])
		}
	}
	require.NotEmpty(t, code2)
	bad := "99999999"
	if code2 == bad {
		bad = "88888888"
	}
	for range 5 {
		_, err = acc.VerifySender(ctx, &v1.VerifySenderRequest{Id: added.GetSender().GetId(), Code: bad})
		statustest.RequireField(t, err, codes.InvalidArgument, "code")
	}
	_, err = acc.VerifySender(ctx, &v1.VerifySenderRequest{Id: added.GetSender().GetId(), Code: code2})
	statustest.RequireField(t, err, codes.FailedPrecondition, "code")

	// Domains only for SES; bad input.
	_, err = acc.AddSender(ctx, &v1.AddSenderRequest{Address: "acme.example"})
	statustest.RequireField(t, err, codes.InvalidArgument, "address")
	_, err = acc.AddSender(ctx, &v1.AddSenderRequest{Address: "not an address@"})
	statustest.RequireField(t, err, codes.InvalidArgument, "address")
	_, err = acc.AddSender(ctx, &v1.AddSenderRequest{Address: "x@acme.example", ProviderId: "nope"})
	statustest.RequireField(t, err, codes.FailedPrecondition, "provider_id")

	list, err := acc.ListSenders(ctx, &v1.ListSendersRequest{})
	require.NoError(t, err)
	var addrs []string
	for _, x := range list.GetSenders() {
		addrs = append(addrs, x.GetAddress()+"/"+x.GetStatus())
	}
	require.Equal(t, []string{"billing@acme.example/pending", "example.com/verified", "news@acme.example/verified"}, addrs)

	_, err = acc.RemoveSender(ctx, &v1.RemoveSenderRequest{Id: sender.GetId()})
	require.NoError(t, err)
	_, err = acc.RemoveSender(ctx, &v1.RemoveSenderRequest{Id: sender.GetId()})
	statustest.RequireField(t, err, codes.NotFound, "id")
	_, err = s.send.SendEmail(ctx, newsletter())
	statustest.RequireField(t, err, codes.FailedPrecondition, "message.from.address")
	// In a batch, the item is named.
	batch, err := s.send.SendBatch(ctx, &v1.SendBatchRequest{Messages: []*v1.SendEmailRequest{newsletter(), simple("jane@example.com")}})
	require.NoError(t, err)
	require.EqualValues(t, codes.FailedPrecondition, batch.GetResults()[0].GetErrorCode())
	require.Contains(t, batch.GetResults()[0].GetErrorMessage(), "messages[0].message.from.address")
	require.NotNil(t, batch.GetResults()[1].GetAccepted())
}
