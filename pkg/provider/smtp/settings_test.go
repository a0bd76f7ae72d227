package smtp_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/smtp"
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
