package smtp_test

import (
	"encoding/base64"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/netguard"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/smtp"
)

// echoServer refuses every login and repeats what it was given in its 535
// reply: decoded and as sent (base64).
func echoServer(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				tp := textproto.NewConn(c)
				_ = tp.PrintfLine("220 echo.test ESMTP")
				for {
					line, err := tp.ReadLine()
					if err != nil {
						return
					}
					verb, arg, _ := strings.Cut(line, " ")
					switch strings.ToUpper(verb) {
					case "EHLO", "HELO":
						_ = tp.PrintfLine("250-echo.test\r\n250 AUTH PLAIN")
					case "AUTH":
						_, blob, _ := strings.Cut(arg, " ")
						dec, _ := base64.StdEncoding.DecodeString(blob)
						_ = tp.PrintfLine("535 5.7.8 bad credentials %q (%s)", strings.ReplaceAll(string(dec), "\x00", " "), blob)
					case "QUIT":
						_ = tp.PrintfLine("221 bye")
						return
					default:
						_ = tp.PrintfLine("530 5.7.0 Authentication required")
					}
				}
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// TestServerEchoingCredentialsIsRedacted: a server that repeats the password
// (plain, or as the base64 AUTH PLAIN blob) in its refusal leaks it neither
// through Send's error and response (stored as the provider's answer) nor
// through Verify's error.
func TestServerEchoingCredentialsIsRedacted(t *testing.T) {
	t.Parallel()
	cfg := config(t, map[string]any{"host": "127.0.0.1", "port": echoServer(t), "tls": "none", "username": user}, password)
	blob := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
	leaks := func(s string) {
		t.Helper()
		require.Contains(t, s, "535")
		require.Contains(t, s, "[redacted]")
		for _, secret := range []string{password, blob, strings.TrimRight(blob, "=")} {
			require.NotContains(t, s, secret)
		}
	}
	sender := smtp.New(smtp.Options{Guard: netguard.AllowAll()})
	t.Cleanup(func() { _ = sender.Close() })

	b := &testBundle{cfg: cfg}
	out := sender.Send(ctx(t), b.delivery("m-echo", "to@example.org"))
	require.Equal(t, provider.Credentials, out.Class, "%v", out.Err)
	leaks(out.Err.Error())
	leaks(out.Response)
	require.ErrorIs(t, out.Err, smtp.ErrAuth, "redaction keeps the cause")

	err := sender.Verify(ctx(t), cfg)
	require.ErrorIs(t, err, smtp.ErrAuth)
	leaks(err.Error())
}
