package ses_test

import (
	"errors"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/netguard"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/ses"
	"github.com/namirasoft/email-sender/pkg/testkit/sestest"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// TestSettings_EndpointIsNotATenantSetting: an endpoint in a configuration's
// settings is refused by name (the API and the admin bootstrap), and one
// stored by an earlier version is not used by the sender.
func TestSettings_EndpointIsNotATenantSetting(t *testing.T) {
	t.Parallel()
	s, sec := ses.FromAPI(&emailsenderv1.SesSettings{Region: "eu-west-1", AccessKeyId: "AKIA", SecretAccessKey: "x",
		Endpoint: "http://169.254.169.254/"}, ses.Secret{})
	err := s.Normalize(sec)
	var fe *provider.FieldError
	require.True(t, errors.As(err, &fe), "err %v", err)
	require.Equal(t, "endpoint", fe.Field)
	require.Contains(t, fe.Error(), "operator setting")

	// Stored by an earlier version: ignored, the operator's endpoint is used.
	fake := sestest.NewFake(t)
	stored := config(t, keyID, map[string]any{"endpoint": "http://169.254.169.254/"})
	out := newSender(t, fake.URL).Send(ctx(t), delivery(stored, "01JSESLEGACY", "a@example.org"))
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
	require.Equal(t, 1, fake.Calls(sestest.OpSendEmail))
}

// TestSend_GuardRefusesInternalEndpoint: the SES client dials through the
// guard; an endpoint on loopback without OUTBOUND_ALLOW_NETS fails the
// message permanently, and neither the send nor GetEmailIdentity connects.
func TestSend_GuardRefusesInternalEndpoint(t *testing.T) {
	t.Parallel()
	fake := sestest.NewFake(t)
	fake.SetIdentity("paypal.com", true)
	s := ses.New(ses.Options{Endpoint: fake.URL, Logger: slog.New(slog.DiscardHandler)}) // no guard: public only
	t.Cleanup(func() { _ = s.Close() })
	cfg := config(t, keyID, nil)
	out := s.Send(ctx(t), delivery(cfg, "01JSESGUARD", "a@example.org"))
	require.Equal(t, provider.Permanent, out.Class, "err: %v", out.Err)
	require.ErrorIs(t, out.Err, netguard.ErrRefused)

	ok, err := s.SenderVerified(ctx(t), cfg, "paypal.com", true)
	require.False(t, ok)
	require.ErrorIs(t, err, netguard.ErrRefused)
	require.Zero(t, fake.Calls(sestest.OpSendEmail)+fake.Calls(sestest.OpGetAccount)+fake.Calls(sestest.OpGetEmailIdentity))
}
