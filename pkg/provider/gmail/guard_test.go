package gmail_test

import (
	"errors"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/netguard"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/gmail"
	"github.com/namirasoft/email-sender/pkg/testkit/gmailtest"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// TestSettings_EndpointsAreNotTenantSettings: token_url and api_endpoint in a
// configuration are refused by name; stored ones (an earlier version) are
// ignored in favour of the operator's.
func TestSettings_EndpointsAreNotTenantSettings(t *testing.T) {
	t.Parallel()
	for field, in := range map[string]*emailsenderv1.GmailSettings{
		"token_url":    {TokenUrl: "http://169.254.169.254/token"},
		"api_endpoint": {ApiEndpoint: "http://10.0.0.1/"},
	} {
		in.ClientId, in.ClientSecret, in.RefreshToken = "id", "secret", "refresh"
		s, sec := gmail.FromAPI(in, gmail.Secret{})
		err := s.Normalize(sec)
		var fe *provider.FieldError
		require.True(t, errors.As(err, &fe), "%s: err %v", field, err)
		require.Equal(t, field, fe.Field)
		require.Contains(t, fe.Error(), "operator setting")
	}

	b := setup(t)
	b.cfg.Settings = []byte(`{"client_id":"` + b.fake.Options().ClientID + `","sender_user":"me","token_url":"http://169.254.169.254/token","api_endpoint":"http://10.0.0.1/"}`)
	out := b.sender.Send(ctx(t), b.delivery("01JGMAILLEGACY", "someone@example.org"))
	require.Equal(t, provider.Sent, out.Class, "err: %v", out.Err)
}

// TestSend_GuardRefusesInternalEndpoint: the token and API requests dial
// through the guard; endpoints on loopback without OUTBOUND_ALLOW_NETS fail
// the message permanently and the check says so, without connecting.
func TestSend_GuardRefusesInternalEndpoint(t *testing.T) {
	t.Parallel()
	fake := gmailtest.StartTest(t)
	s := gmail.New(gmail.Options{TokenURL: fake.TokenURL(), APIEndpoint: fake.APIEndpoint(), Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { _ = s.Close() })
	b := &testBundle{fake: fake, sender: s, cfg: config(t, fake, gmailtest.DefaultRefreshToken)}
	out := s.Send(ctx(t), b.delivery("01JGMAILGUARD", "someone@example.org"))
	require.Equal(t, provider.Permanent, out.Class, "err: %v", out.Err)
	require.ErrorIs(t, out.Err, netguard.ErrRefused)

	v := s.Check(ctx(t), b.cfg)
	require.False(t, v.OK)
	require.Contains(t, v.Detail, "refused by policy")
}
