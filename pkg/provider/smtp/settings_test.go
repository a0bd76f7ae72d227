package smtp_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/smtp"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

func TestCheckHELO(t *testing.T) {
	t.Parallel()
	for h, ok := range map[string]bool{
		"mx.example.com": true, "relay-1.example": true, "[192.0.2.1]": true, "[IPv6:2001:db8::1]": true, "localhost": true,
		"": false, "two words": false, "-x.example": false, "x-.example": false, "a..b": false, "a_b.example": false,
		"[not-an-ip]": false, "[192.0.2.1": false, "a\r\nMAIL FROM:<x>": false,
	} {
		if err := smtp.CheckHELO(h); (err == nil) != ok {
			t.Errorf("CheckHELO(%q) = %v, want ok %v", h, err, ok)
		}
	}
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		in    smtp.Settings
		sec   smtp.Secret
		want  smtp.Settings
		field string
	}{
		{name: "defaults", in: smtp.Settings{Host: " mx.example.com "}, want: smtp.Settings{Host: "mx.example.com", Port: 587, TLS: "starttls", PoolSize: 4}},
		{name: "implicit port", in: smtp.Settings{Host: "h", TLS: "implicit"}, want: smtp.Settings{Host: "h", Port: 465, TLS: "implicit", PoolSize: 4}},
		{name: "plain port", in: smtp.Settings{Host: "h", TLS: "none"}, want: smtp.Settings{Host: "h", Port: 25, TLS: "none", PoolSize: 4}},
		{name: "login", in: smtp.Settings{Host: "h", Username: "u"}, sec: smtp.Secret{Password: "pw"}, want: smtp.Settings{Host: "h", Port: 587, TLS: "starttls", Username: "u", PoolSize: 4}},
		{name: "no host", in: smtp.Settings{}, field: "host"},
		{name: "bad host", in: smtp.Settings{Host: "a b"}, field: "host"},
		{name: "tls", in: smtp.Settings{Host: "h", TLS: "ssl"}, field: "tls_mode"},
		{name: "port", in: smtp.Settings{Host: "h", Port: 70000}, field: "port"},
		{name: "pool", in: smtp.Settings{Host: "h", PoolSize: 257}, field: "pool_size"},
		{name: "helo", in: smtp.Settings{Host: "h", HELO: "two words"}, field: "helo"},
		{name: "timeout", in: smtp.Settings{Host: "h", TimeoutSeconds: -1}, field: "timeout_seconds"},
		{name: "username without password", in: smtp.Settings{Host: "h", Username: "u"}, field: "password"},
		{name: "password without username", in: smtp.Settings{Host: "h"}, sec: smtp.Secret{Password: "s3cret"}, field: "username"},
		{name: "bounce imap defaults", in: smtp.Settings{Host: "h", BounceIMAPHost: " imap.example.com ", BounceIMAPUsername: "bounces"},
			sec: smtp.Secret{BounceIMAPPassword: "pw"},
			want: smtp.Settings{Host: "h", Port: 587, TLS: "starttls", PoolSize: 4, BounceIMAPHost: "imap.example.com", BounceIMAPPort: 993,
				BounceIMAPTLS: "implicit", BounceIMAPUsername: "bounces", BounceIMAPMailbox: "INBOX"}},
		{name: "bounce imap starttls", in: smtp.Settings{Host: "h", BounceIMAPHost: "imap.example.com", BounceIMAPTLS: "starttls", BounceIMAPUsername: "b", BounceIMAPMailbox: "Bounces"},
			sec: smtp.Secret{BounceIMAPPassword: "pw"},
			want: smtp.Settings{Host: "h", Port: 587, TLS: "starttls", PoolSize: 4, BounceIMAPHost: "imap.example.com", BounceIMAPPort: 143,
				BounceIMAPTLS: "starttls", BounceIMAPUsername: "b", BounceIMAPMailbox: "Bounces"}},
		{name: "bounce imap settings without host", in: smtp.Settings{Host: "h", BounceIMAPUsername: "b"}, field: "bounce_imap_host"},
		{name: "bounce imap password without host", in: smtp.Settings{Host: "h"}, sec: smtp.Secret{BounceIMAPPassword: "s3cret"}, field: "bounce_imap_host"},
		{name: "bounce imap bad host", in: smtp.Settings{Host: "h", BounceIMAPHost: "a/b", BounceIMAPUsername: "b"}, sec: smtp.Secret{BounceIMAPPassword: "s3cret"}, field: "bounce_imap_host"},
		{name: "bounce imap tls", in: smtp.Settings{Host: "h", BounceIMAPHost: "i", BounceIMAPTLS: "ssl", BounceIMAPUsername: "b"}, sec: smtp.Secret{BounceIMAPPassword: "s3cret"}, field: "bounce_imap_tls"},
		{name: "bounce imap port", in: smtp.Settings{Host: "h", BounceIMAPHost: "i", BounceIMAPPort: -1, BounceIMAPUsername: "b"}, sec: smtp.Secret{BounceIMAPPassword: "s3cret"}, field: "bounce_imap_port"},
		{name: "bounce imap username", in: smtp.Settings{Host: "h", BounceIMAPHost: "i"}, sec: smtp.Secret{BounceIMAPPassword: "s3cret"}, field: "bounce_imap_username"},
		{name: "bounce imap password", in: smtp.Settings{Host: "h", BounceIMAPHost: "i", BounceIMAPUsername: "b"}, field: "bounce_imap_password"},
		{name: "bounce imap password control", in: smtp.Settings{Host: "h", BounceIMAPHost: "i", BounceIMAPUsername: "b"}, sec: smtp.Secret{BounceIMAPPassword: "s3cret\r\nA1 LOGOUT"}, field: "bounce_imap_password"},
		{name: "bounce imap mailbox", in: smtp.Settings{Host: "h", BounceIMAPHost: "i", BounceIMAPUsername: "b", BounceIMAPMailbox: "a\nb"}, sec: smtp.Secret{BounceIMAPPassword: "s3cret"}, field: "bounce_imap_mailbox"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.in
			err := s.Normalize(tc.sec)
			if tc.field == "" {
				require.NoError(t, err)
				require.Equal(t, tc.want, s)
				return
			}
			var fe *provider.FieldError
			require.True(t, errors.As(err, &fe), "%v", err)
			require.Equal(t, tc.field, fe.Field)
			require.NotContains(t, err.Error(), "s3cret")
		})
	}
}

// The bounce mailbox round-trips through the API; its password is
// write-only and kept when the API leaves it empty.
func TestBounceIMAPFromAPI(t *testing.T) {
	t.Parallel()
	in := &emailsenderv1.SmtpSettings{Host: "h", BounceImapHost: "imap.example.com", BounceImapPort: 993, BounceImapTls: "implicit",
		BounceImapUsername: "b", BounceImapMailbox: "INBOX"}
	s, sec := smtp.FromAPI(in, smtp.Secret{Password: "p", BounceIMAPPassword: "kept"})
	require.Equal(t, "kept", sec.BounceIMAPPassword)
	require.Equal(t, []string{"password", "bounce_imap_password"}, sec.Fields())
	out := s.API()
	require.Equal(t, in.GetBounceImapHost(), out.GetBounceImapHost())
	require.Equal(t, in.GetBounceImapUsername(), out.GetBounceImapUsername())
	require.Equal(t, int32(993), out.GetBounceImapPort())
	require.Empty(t, out.GetBounceImapPassword())
	in.BounceImapPassword = "new"
	_, sec = smtp.FromAPI(in, smtp.Secret{BounceIMAPPassword: "kept"})
	require.Equal(t, "new", sec.BounceIMAPPassword)
	// Turned off: the password goes too.
	_, sec = smtp.FromAPI(&emailsenderv1.SmtpSettings{Host: "h"}, smtp.Secret{BounceIMAPPassword: "kept"})
	require.Empty(t, sec.BounceIMAPPassword)
}
