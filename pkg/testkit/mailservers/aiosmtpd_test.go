package mailservers

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/wneessen/go-mail/smtp"
)

const (
	aiosmtpdTestUser = "sender@example.com"
	aiosmtpdTestPass = "s3cret-Pässword"
	aiosmtpdTestMax  = 1 << 20
	aiosmtpdTestIdle = 2 * time.Second
)

func startTestAIOSMTPD(t *testing.T) (*Server, *CA) {
	t.Helper()
	ca := NewCA(t)
	srv := AIOSMTPD(t, Config{
		CA:              ca,
		Username:        aiosmtpdTestUser,
		Password:        aiosmtpdTestPass,
		MaxSize:         aiosmtpdTestMax,
		IdleTimeout:     aiosmtpdTestIdle,
		RefuseLocalPart: "refused",
	})
	return srv, ca
}

// aiosmtpdDial connects to mode's port (TLS first for Implicit) and says
// EHLO client.example.org.
func aiosmtpdDial(t *testing.T, srv *Server, ca *CA, mode Mode) *smtp.Client {
	t.Helper()
	port, ok := srv.Port(mode)
	require.True(t, ok, "no port for %s", mode)
	addr := net.JoinHostPort(srv.Host, strconv.Itoa(port))
	var conn net.Conn
	var err error
	if mode == Implicit {
		conn, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
			&tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	} else {
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
	}
	require.NoError(t, err)
	require.NoError(t, conn.SetDeadline(time.Now().Add(30*time.Second)))
	c, err := smtp.NewClient(conn, srv.Host)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.Hello("client.example.org"))
	return c
}

func aiosmtpdStartTLS(t *testing.T, c *smtp.Client, ca *CA) {
	t.Helper()
	ok, _ := c.Extension("STARTTLS")
	require.True(t, ok, "STARTTLS not offered")
	require.NoError(t, c.StartTLS(&tls.Config{RootCAs: ca.Pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}))
	state, ok := c.TLSConnectionState()
	require.True(t, ok)
	require.True(t, state.HandshakeComplete)
}

func aiosmtpdCode(t *testing.T, err error) int {
	t.Helper()
	require.Error(t, err)
	var te *textproto.Error
	require.True(t, errors.As(err, &te), "not an SMTP reply: %v", err)
	return te.Code
}

func aiosmtpdMessageID(t *testing.T) string {
	b := make([]byte, 8)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return fmt.Sprintf("<%s.%s@client.example.org>", strings.ReplaceAll(t.Name(), "/", "."), hex.EncodeToString(b))
}

// aiosmtpdSend runs one transaction: RCPT x@example.com accepted,
// refused@example.com refused with 5xx, then DATA. It checks what the server
// stored.
func aiosmtpdSend(t *testing.T, srv *Server, c *smtp.Client) {
	t.Helper()
	msgID := aiosmtpdMessageID(t)
	require.NoError(t, c.Mail("<a@example.com>"))
	require.NoError(t, c.Rcpt("<x@example.com>"))
	err := c.Rcpt("<refused@example.com>")
	code := aiosmtpdCode(t, err)
	require.True(t, code >= 500 && code < 600, "RCPT refused@: %v", err)
	require.Contains(t, err.Error(), "Recipient address rejected")

	msg := "From: a@example.com\r\n" +
		"To: x@example.com\r\n" +
		"Subject: aiosmtpd " + t.Name() + "\r\n" +
		"Message-ID: " + msgID + "\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"\r\n" +
		"Hello.\r\n" +
		".a line that starts with a dot\r\n" +
		"..\r\n" +
		"Bye.\r\n"
	w, err := c.Data()
	require.NoError(t, err)
	_, err = io.WriteString(w, msg)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	if dc, ok := w.(*smtp.DataCloser); ok {
		require.Contains(t, dc.ServerResponse(), "Ok: queued as")
	}

	got := srv.WaitFor(t, msgID, []string{"x@example.com"}, 30*time.Second)
	require.Len(t, got, 1)
	require.Equal(t, "a@example.com", got[0].EnvelopeFrom)
	require.Equal(t, []string{"x@example.com"}, got[0].Recipients)
	// Stored exactly as sent: CRLF kept, dots unstuffed, nothing prepended.
	require.Equal(t, msg, string(got[0].Raw))
	require.NoError(t, c.Quit())
}

func TestAIOSMTPD(t *testing.T) {
	srv, ca := startTestAIOSMTPD(t)
	require.Equal(t, "aiosmtpd", srv.Name)
	require.NotEmpty(t, srv.Version)
	require.Equal(t, "127.0.0.1", srv.Host)
	require.True(t, srv.SMTPUTF8)
	for _, m := range []Mode{Plain, StartTLSRequired, Implicit, LoginOnly} {
		_, ok := srv.Port(m)
		require.True(t, ok, "no port for %s", m)
	}
	t.Logf("aiosmtpd %s", srv.Version)

	t.Run("PlainAuthPlainWithoutTLS", func(t *testing.T) {
		t.Parallel()
		c := aiosmtpdDial(t, srv, ca, Plain)
		require.Contains(t, c.HelloResponse(), "mx.aiosmtpd.test")
		ok, size := c.Extension("SIZE")
		require.True(t, ok, "SIZE not offered")
		require.Equal(t, strconv.Itoa(aiosmtpdTestMax), size)
		ok, _ = c.Extension("SMTPUTF8")
		require.True(t, ok, "SMTPUTF8 not offered")
		ok, _ = c.Extension("STARTTLS")
		require.True(t, ok, "STARTTLS not offered")
		ok, mechs := c.Extension("AUTH")
		require.True(t, ok, "AUTH not offered")
		require.ElementsMatch(t, []string{"LOGIN", "PLAIN"}, strings.Fields(mechs))
		require.NoError(t, c.Auth(smtp.PlainAuth("", aiosmtpdTestUser, aiosmtpdTestPass, srv.Host, true)))
		aiosmtpdSend(t, srv, c)
	})

	t.Run("PlainStartTLSAuthPlain", func(t *testing.T) {
		t.Parallel()
		c := aiosmtpdDial(t, srv, ca, Plain)
		aiosmtpdStartTLS(t, c, ca)
		ok, _ := c.Extension("STARTTLS")
		require.False(t, ok, "STARTTLS offered again after STARTTLS")
		require.NoError(t, c.Auth(smtp.PlainAuth("", aiosmtpdTestUser, aiosmtpdTestPass, srv.Host, false)))
		aiosmtpdSend(t, srv, c)
	})

	t.Run("PlainWithoutAuth", func(t *testing.T) {
		t.Parallel()
		c := aiosmtpdDial(t, srv, ca, Plain)
		aiosmtpdSend(t, srv, c)
	})

	t.Run("WrongPassword", func(t *testing.T) {
		t.Parallel()
		c := aiosmtpdDial(t, srv, ca, Plain)
		err := c.Auth(smtp.PlainAuth("", aiosmtpdTestUser, "wrong", srv.Host, true))
		require.Equal(t, 535, aiosmtpdCode(t, err), "%v", err)
	})

	t.Run("MessageTooBig", func(t *testing.T) {
		t.Parallel()
		c := aiosmtpdDial(t, srv, ca, Plain)
		require.NoError(t, c.Mail("<a@example.com>"))
		require.NoError(t, c.Rcpt("<x@example.com>"))
		w, err := c.Data()
		require.NoError(t, err)
		line := strings.Repeat("x", 998) + "\r\n"
		_, err = io.WriteString(w, "Subject: big\r\n\r\n"+strings.Repeat(line, aiosmtpdTestMax/len(line)+10))
		require.NoError(t, err)
		err = w.Close()
		require.Equal(t, 552, aiosmtpdCode(t, err), "%v", err)
	})

	t.Run("StartTLSRequired", func(t *testing.T) {
		t.Parallel()
		c := aiosmtpdDial(t, srv, ca, StartTLSRequired)
		err := c.Mail("<a@example.com>")
		require.Equal(t, 530, aiosmtpdCode(t, err), "MAIL before STARTTLS: %v", err)

		c = aiosmtpdDial(t, srv, ca, StartTLSRequired)
		aiosmtpdStartTLS(t, c, ca)
		require.NoError(t, c.Auth(smtp.PlainAuth("", aiosmtpdTestUser, aiosmtpdTestPass, srv.Host, false)))
		aiosmtpdSend(t, srv, c)
	})

	t.Run("Implicit", func(t *testing.T) {
		t.Parallel()
		c := aiosmtpdDial(t, srv, ca, Implicit)
		state, ok := c.TLSConnectionState()
		require.True(t, ok)
		require.True(t, state.HandshakeComplete)
		ok, _ = c.Extension("STARTTLS")
		require.False(t, ok, "STARTTLS offered inside implicit TLS")
		require.NoError(t, c.Auth(smtp.PlainAuth("", aiosmtpdTestUser, aiosmtpdTestPass, srv.Host, false)))
		aiosmtpdSend(t, srv, c)
	})

	t.Run("LoginOnly", func(t *testing.T) {
		t.Parallel()
		c := aiosmtpdDial(t, srv, ca, LoginOnly)
		ok, mechs := c.Extension("AUTH")
		require.True(t, ok, "AUTH not offered")
		require.Contains(t, strings.Fields(mechs), "LOGIN")
		require.NotContains(t, strings.Fields(mechs), "PLAIN")
		err := c.Auth(smtp.PlainAuth("", aiosmtpdTestUser, aiosmtpdTestPass, srv.Host, true))
		require.Equal(t, 504, aiosmtpdCode(t, err), "AUTH PLAIN on LoginOnly: %v", err)

		// go-mail's Auth quits after a refusal: a new connection.
		c = aiosmtpdDial(t, srv, ca, LoginOnly)
		require.NoError(t, c.Auth(smtp.LoginAuth(aiosmtpdTestUser, aiosmtpdTestPass, srv.Host, true)))
		aiosmtpdSend(t, srv, c)
	})

	t.Run("NullSender", func(t *testing.T) {
		t.Parallel()
		c := aiosmtpdDial(t, srv, ca, Plain)
		msgID := aiosmtpdMessageID(t)
		require.NoError(t, c.Mail("<>"))
		require.NoError(t, c.Rcpt("<y@example.com>"))
		w, err := c.Data()
		require.NoError(t, err)
		_, err = io.WriteString(w, "Message-ID: "+msgID+"\r\nSubject: bounce\r\n\r\nbody\r\n")
		require.NoError(t, err)
		require.NoError(t, w.Close())
		got := srv.WaitFor(t, msgID, []string{"y@example.com"}, 30*time.Second)
		require.Equal(t, "", got[0].EnvelopeFrom)
	})

	t.Run("IdleTimeout", func(t *testing.T) {
		t.Parallel()
		port, _ := srv.Port(Plain)
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(srv.Host, strconv.Itoa(port)), 5*time.Second)
		require.NoError(t, err)
		defer conn.Close()
		r := bufio.NewReader(conn)
		require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
		greeting, err := r.ReadString('\n')
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(greeting, "220 "), greeting)
		_, err = io.WriteString(conn, "EHLO client.example.org\r\n")
		require.NoError(t, err)
		for {
			line, err := r.ReadString('\n')
			require.NoError(t, err)
			if strings.HasPrefix(line, "250 ") {
				break
			}
		}
		idleFrom := time.Now()
		require.NoError(t, conn.SetDeadline(idleFrom.Add(aiosmtpdTestIdle+5*time.Second)))
		rest, err := io.ReadAll(r)
		idle := time.Since(idleFrom)
		require.NoError(t, err, "connection not closed within %s of idleness", aiosmtpdTestIdle+5*time.Second)
		t.Logf("closed after %s idle; sent before closing: %q", idle.Round(time.Millisecond), rest)
		require.GreaterOrEqual(t, idle, aiosmtpdTestIdle-200*time.Millisecond)
		require.Less(t, idle, aiosmtpdTestIdle+3*time.Second)
		// aiosmtpd 1.4.3 just closes the transport (SMTP._timeout_cb): no 421.
		require.Empty(t, string(rest))
	})
}

// TestAIOSMTPDTwice starts two servers at once: separate ports and inboxes.
func TestAIOSMTPDTwice(t *testing.T) {
	t.Parallel()
	a, ca := startTestAIOSMTPD(t)
	b, _ := startTestAIOSMTPD(t)
	pa, _ := a.Port(Plain)
	pb, _ := b.Port(Plain)
	require.NotEqual(t, pa, pb)
	c := aiosmtpdDial(t, a, ca, Plain)
	aiosmtpdSend(t, a, c)
	got, err := b.Received(t.Context())
	require.NoError(t, err)
	require.Empty(t, got)
}
