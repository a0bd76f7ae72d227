package ingest_test

import (
	"net"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/namirasoft/email-sender/pkg/provider/kinds"
	"github.com/namirasoft/email-sender/pkg/testkit/sestest"
	"github.com/namirasoft/email-sender/pkg/testkit/statustest"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// internalBanner is what an internal non-SMTP service volunteers on connect
// (a NATS server's INFO line). It must never reach a verification's detail.
const internalBanner = `INFO {"server_id":"NDONOTLEAKTHISBANNER","version":"2.12.0","auth_required":false}`

// bannerListener is a loopback service that writes banner to each
// connection; conns counts the connections it accepted.
func bannerListener(t *testing.T, banner string) (port int, conns *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	conns = &atomic.Int32{}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			_, _ = c.Write([]byte(banner + "\r\n"))
			buf := make([]byte, 256)
			_, _ = c.Read(buf)
			_ = c.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port, conns
}

// TestVerifyProviderRefusesInternalHosts: with OUTBOUND_ALLOW_NETS unset
// (public internet only), VerifyProvider of an smtp configuration whose host
// is loopback, by address or by a name resolving there, connects nowhere:
// the listener sees no connection, and the detail says the policy refused
// it, with nothing of the banner the service would have sent.
func TestVerifyProviderRefusesInternalHosts(t *testing.T) {
	t.Parallel()
	port, conns := bannerListener(t, internalBanner)
	b := setupAccounts(t, accOptions{publicOnly: true})
	ctx, acc := b.admin(t), b.acc[0]
	for _, host := range []string{"127.0.0.1", "localhost"} {
		r, err := acc.PutProvider(ctx, &v1.PutProviderRequest{Name: "internal-" + host, Settings: &v1.PutProviderRequest_Smtp{Smtp: &v1.SmtpSettings{
			Host: host, Port: int32(port), TlsMode: "none",
		}}})
		require.NoError(t, err, host)
		res, err := acc.VerifyProvider(ctx, &v1.VerifyProviderRequest{Id: r.GetProvider().GetId()})
		require.NoError(t, err, host)
		d := res.GetResult().GetDetail()
		require.False(t, res.GetResult().GetOk(), host)
		require.Contains(t, d, "refused by policy", host)
		require.NotContains(t, d, "NDONOTLEAKTHISBANNER", host)
		require.NotContains(t, d, "INFO", host)
	}
	require.Zero(t, conns.Load(), "nothing connected to the internal service")
}

// TestVerifyProviderDetailHasNoBanner: where the operator allows the host
// (loopback here), what answers there is still not echoed: a non-SMTP banner
// is reported as such, in our words.
func TestVerifyProviderDetailHasNoBanner(t *testing.T) {
	t.Parallel()
	port, conns := bannerListener(t, internalBanner)
	b := setupAccounts(t, accOptions{}) // loopback allowed
	ctx, acc := b.admin(t), b.acc[0]
	r, err := acc.PutProvider(ctx, &v1.PutProviderRequest{Name: "nats", Settings: &v1.PutProviderRequest_Smtp{Smtp: &v1.SmtpSettings{
		Host: "127.0.0.1", Port: int32(port), TlsMode: "none",
	}}})
	require.NoError(t, err)
	res, err := acc.VerifyProvider(ctx, &v1.VerifyProviderRequest{Id: r.GetProvider().GetId()})
	require.NoError(t, err)
	require.False(t, res.GetResult().GetOk())
	require.Equal(t, int32(1), conns.Load())
	require.Contains(t, res.GetResult().GetDetail(), "did not answer as an SMTP server")
	require.NotContains(t, res.GetResult().GetDetail(), "NDONOTLEAKTHISBANNER")

	// And the listed result is the same text.
	list, err := acc.ListProviders(ctx, &v1.ListProvidersRequest{})
	require.NoError(t, err)
	for _, p := range list.GetProviders() {
		require.NotContains(t, p.GetLastVerify().GetDetail(), "NDONOTLEAKTHISBANNER")
	}
}

// TestPutProviderRefusesOperatorEndpoints: the SES endpoint and the Gmail
// token and API endpoints are operator settings (SES_ENDPOINT,
// GMAIL_TOKEN_URL, GMAIL_API_ENDPOINT): PutProvider refuses them by field,
// whatever they point at.
func TestPutProviderRefusesOperatorEndpoints(t *testing.T) {
	t.Parallel()
	b := setupAccounts(t, accOptions{})
	ctx, acc := b.admin(t), b.acc[0]
	for _, tc := range []struct {
		field string
		req   *v1.PutProviderRequest
	}{
		{"ses.endpoint", &v1.PutProviderRequest{Name: "ses", Settings: &v1.PutProviderRequest_Ses{Ses: &v1.SesSettings{
			Region: "eu-west-1", AccessKeyId: "AKIA", SecretAccessKey: "x", Endpoint: "http://169.254.169.254/"}}}},
		{"gmail.token_url", &v1.PutProviderRequest{Name: "gmail", Settings: &v1.PutProviderRequest_Gmail{Gmail: &v1.GmailSettings{
			ClientId: "c", ClientSecret: "s", RefreshToken: "r", TokenUrl: "http://127.0.0.1:4222/token"}}}},
		{"gmail.api_endpoint", &v1.PutProviderRequest{Name: "gmail", Settings: &v1.PutProviderRequest_Gmail{Gmail: &v1.GmailSettings{
			ClientId: "c", ClientSecret: "s", RefreshToken: "r", ApiEndpoint: "https://gmail.googleapis.com/"}}}},
	} {
		_, err := acc.PutProvider(ctx, tc.req)
		statustest.RequireField(t, err, codes.InvalidArgument, tc.field)
		require.Contains(t, status.Convert(err).Message(), "operator setting", tc.field)
	}
	list, err := acc.ListProviders(ctx, &v1.ListProvidersRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetProviders(), 1, "only the bootstrap's sandbox provider")
}

// TestSenderSESIdentityBoundToProvider: a sender verified because SES
// provider P's account has it as an identity is a verified sender for sends
// through P only: through the account's other provider it is refused with
// FAILED_PRECONDITION on message.from.address. A sender verified otherwise
// (the bootstrap's example.com, like a mailed code) goes through either.
func TestSenderSESIdentityBoundToProvider(t *testing.T) {
	t.Parallel()
	fake := sestest.NewFake(t)
	fake.SetIdentity("paypal.example", true)
	b := setupAccounts(t, accOptions{outbound: kinds.Config{SESEndpoint: fake.URL}})
	ctx, acc, send := b.admin(t), b.acc[0], b.send[0]
	p, err := acc.PutProvider(ctx, &v1.PutProviderRequest{Name: "ses", Settings: &v1.PutProviderRequest_Ses{Ses: &v1.SesSettings{
		Region: "eu-west-1", AccessKeyId: "AKIAGOOD", SecretAccessKey: "very-secret-key"}}})
	require.NoError(t, err)
	sesID, sandboxID := p.GetProvider().GetId(), b.acct.ProviderID

	s, err := acc.AddSender(ctx, &v1.AddSenderRequest{Address: "paypal.example", ProviderId: sesID})
	require.NoError(t, err)
	require.Equal(t, "verified", s.GetSender().GetStatus())
	require.Equal(t, "ses_identity", s.GetSender().GetMethod())
	require.Equal(t, sesID, s.GetSender().GetProviderId())

	msg := func(from string) *v1.EmailMessage {
		m := validMessage()
		m.From = &v1.Address{Address: from}
		return m
	}
	// Through the provider that verified it: accepted, and its job may not
	// fail over to another configuration.
	bound, err := send.SendEmail(ctx, &v1.SendEmailRequest{ProviderId: sesID, Message: msg("billing@paypal.example")})
	require.NoError(t, err)
	require.True(t, storedJob(t, b, bound.GetMessageId()).GetProviderBound(), "the job of an identity-bound sender is pinned to its provider")
	// Through the sandbox provider (explicitly, or as the default): refused.
	for _, pid := range []string{sandboxID, ""} {
		_, err = send.SendEmail(ctx, &v1.SendEmailRequest{ProviderId: pid, Message: msg("billing@paypal.example")})
		statustest.RequireField(t, err, codes.FailedPrecondition, "message.from.address")
		require.Contains(t, status.Convert(err).Message(), "verified only as an identity of provider "+sesID)
	}
	// In a batch, the item alone.
	batch, err := send.SendBatch(ctx, &v1.SendBatchRequest{Messages: []*v1.SendEmailRequest{
		{ProviderId: sandboxID, Message: msg("billing@paypal.example")},
		{ProviderId: sesID, Message: msg("billing@paypal.example")},
	}})
	require.NoError(t, err)
	require.Equal(t, int32(codes.FailedPrecondition), batch.GetResults()[0].GetErrorCode())
	require.Contains(t, batch.GetResults()[0].GetErrorMessage(), "messages[0].message.from.address")
	require.NotNil(t, batch.GetResults()[1].GetAccepted())

	// A sender verified for every provider goes through both, and may fail over.
	for _, pid := range []string{sandboxID, sesID} {
		free, err := send.SendEmail(ctx, &v1.SendEmailRequest{ProviderId: pid, Message: msg("sender@example.com")})
		require.NoError(t, err, pid)
		require.False(t, storedJob(t, b, free.GetMessageId()).GetProviderBound())
	}
}

// storedJob is the send job stored with message id.
func storedJob(t *testing.T, b *accBundle, id string) *queuev1.SendJob {
	t.Helper()
	var content []byte
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT content FROM message_contents WHERE message_id = $1`, id).Scan(&content))
	job := &queuev1.SendJob{}
	require.NoError(t, proto.Unmarshal(content, job))
	return job
}
