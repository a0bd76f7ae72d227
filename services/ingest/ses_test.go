package ingest_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/namirasoft/email-sender/pkg/provider/kinds"
	"github.com/namirasoft/email-sender/pkg/testkit/sestest"
	"github.com/namirasoft/email-sender/pkg/testkit/statustest"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// TestVerifyProviderSES: VerifyProvider of an SES configuration calls
// GetAccount (a local fake) and returns and stores the sending quota and
// status; refused keys or paused sending mark the configuration unhealthy, a
// 5xx says nothing about it.
func TestVerifyProviderSES(t *testing.T) {
	t.Parallel()
	fake := sestest.NewFake(t)
	b := setupAccounts(t, accOptions{outbound: kinds.Config{SESEndpoint: fake.URL}})
	ctx, acc := b.admin(t), b.acc[0]
	fake.SetAccount(sestest.Account{Max24HourSend: 200, MaxSendRate: 1, SentLast24Hours: 7, SendingEnabled: true, EnforcementStatus: "HEALTHY"})
	fake.FailAccessKey("AKIABAD", sestest.ErrUnrecognizedKey)
	put := func(name, key string) string {
		r, err := acc.PutProvider(ctx, &v1.PutProviderRequest{Name: name, Settings: &v1.PutProviderRequest_Ses{Ses: &v1.SesSettings{
			Region: "eu-west-1", AccessKeyId: key, SecretAccessKey: "very-secret-key",
		}}})
		require.NoError(t, err)
		return r.GetProvider().GetId()
	}
	good, bad := put("good", "AKIAGOOD"), put("bad", "AKIABAD")

	res, err := acc.VerifyProvider(ctx, &v1.VerifyProviderRequest{Id: good})
	require.NoError(t, err)
	r := res.GetResult()
	require.True(t, r.GetOk(), r.GetDetail())
	require.Contains(t, r.GetDetail(), "sandbox account")
	require.Equal(t, 200.0, r.GetSes().GetMax_24HourSend())
	require.Equal(t, 1.0, r.GetSes().GetMaxSendRate())
	require.Equal(t, 7.0, r.GetSes().GetSentLast_24Hours())
	require.False(t, r.GetSes().GetProductionAccess())
	require.True(t, r.GetSes().GetSendingEnabled())

	res, err = acc.VerifyProvider(ctx, &v1.VerifyProviderRequest{Id: bad})
	require.NoError(t, err)
	require.False(t, res.GetResult().GetOk())
	require.Contains(t, res.GetResult().GetDetail(), "UnrecognizedClientException")
	require.NotContains(t, res.GetResult().GetDetail(), "very-secret-key")

	fake.FailNext(sestest.OpGetAccount, 1, sestest.Error{Status: 503})
	down := put("down", "AKIADOWN")
	res, err = acc.VerifyProvider(ctx, &v1.VerifyProviderRequest{Id: down})
	require.NoError(t, err)
	require.False(t, res.GetResult().GetOk())

	list, err := acc.ListProviders(ctx, &v1.ListProvidersRequest{})
	require.NoError(t, err)
	byID := map[string]*v1.Provider{}
	for _, p := range list.GetProviders() {
		byID[p.GetId()] = p
	}
	require.True(t, byID[good].GetHealthy())
	require.Equal(t, 1.0, byID[good].GetLastVerify().GetSes().GetMaxSendRate(), "the quota is stored")
	require.False(t, byID[bad].GetHealthy())
	require.True(t, byID[down].GetHealthy(), "a 5xx says nothing about the credentials")

	// Sending paused: not ok, unhealthy.
	fake.SetAccount(sestest.Account{MaxSendRate: 14, SendingEnabled: false, ProductionAccess: true})
	res, err = acc.VerifyProvider(ctx, &v1.VerifyProviderRequest{Id: good})
	require.NoError(t, err)
	require.False(t, res.GetResult().GetOk())
	require.False(t, res.GetResult().GetSes().GetSendingEnabled())
	list, err = acc.ListProviders(ctx, &v1.ListProvidersRequest{})
	require.NoError(t, err)
	for _, p := range list.GetProviders() {
		if p.GetId() == good {
			require.False(t, p.GetHealthy())
		}
	}
}

// TestSenderSESIdentity: with an SES provider, a sender whose address or
// domain is an identity verified in SES is verified at once (method
// ses_identity, nothing mailed); otherwise it stays pending.
func TestSenderSESIdentity(t *testing.T) {
	t.Parallel()
	fake := sestest.NewFake(t)
	b := setupAccounts(t, accOptions{outbound: kinds.Config{SESEndpoint: fake.URL}})
	ctx, acc := b.admin(t), b.acc[0]
	fake.SetIdentity("verified.example", true)
	fake.SetIdentity("solo@other.example", true)
	fake.SetIdentity("pending.example", false)
	prov, err := acc.PutProvider(ctx, &v1.PutProviderRequest{Name: "ses", Settings: &v1.PutProviderRequest_Ses{Ses: &v1.SesSettings{
		Region: "eu-west-1", AccessKeyId: "AKIAGOOD", SecretAccessKey: "very-secret-key",
	}}})
	require.NoError(t, err)
	pid := prov.GetProvider().GetId()

	for _, tc := range []struct {
		address, status string
	}{
		{"verified.example", "verified"},      // the domain identity
		{"News@Verified.example", "verified"}, // an address of a verified domain
		{"solo@other.example", "verified"},    // the address identity
		{"pending.example", "pending"},        // not verified yet in SES
		{"unknown-domain.example", "pending"}, // unknown to SES
	} {
		r, err := acc.AddSender(ctx, &v1.AddSenderRequest{Address: tc.address, ProviderId: pid})
		require.NoError(t, err, tc.address)
		require.Equal(t, tc.status, r.GetSender().GetStatus(), tc.address)
		require.Equal(t, "ses_identity", r.GetSender().GetMethod(), tc.address)
		require.Equal(t, pid, r.GetSender().GetProviderId())
		if tc.status == "verified" {
			require.NotNil(t, r.GetSender().GetVerifiedAt())
		}
	}
	require.Zero(t, fake.Calls(sestest.OpSendEmail), "no code was mailed")

	_, err = acc.AddSender(ctx, &v1.AddSenderRequest{Address: "verified.example", ProviderId: pid})
	statustest.RequireField(t, err, codes.AlreadyExists, "address")
}
