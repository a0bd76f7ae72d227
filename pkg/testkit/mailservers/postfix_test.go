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
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/wneessen/go-mail/smtp"
)

const (
	postfixTestUser = "sender"
	postfixTestPass = "s3cret pass:word"
)

func TestPostfix(t *testing.T) {
	t.Parallel()
	ca := NewCA(t)
	cfg := Config{
		CA:              ca,
		Username:        postfixTestUser,
		Password:        postfixTestPass,
		MaxSize:         1 << 20,
		IdleTimeout:     2 * time.Second,
		RefuseLocalPart: "refused",
	}
	start := time.Now()
	srv := Postfix(t, cfg)
	t.Logf("postfix %s started in %s", srv.Version, time.Since(start).Round(time.Millisecond))

	require.Equal(t, "postfix", srv.Name)
	require.Regexp(t, `^\d+\.\d+(\.\d+)?`, srv.Version)
	require.Equal(t, "127.0.0.1", srv.Host)
	require.True(t, srv.SMTPUTF8)

	for _, mode := range []Mode{Plain, StartTLSRequired, Implicit, LoginOnly} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			c := postfixDial(t, srv, ca, mode)
			require.NoError(t, c.Hello("client.example.org"))
			ok, size := c.Extension("SIZE")
			require.True(t, ok, "SIZE advertised")
			require.Equal(t, "1048576", size)

			switch mode {
			case Plain, LoginOnly:
				ok, _ := c.Extension("STARTTLS")
				require.True(t, ok, "STARTTLS offered")
			case StartTLSRequired:
				ok, _ := c.Extension("STARTTLS")
				require.True(t, ok, "STARTTLS offered")
				requireCode(t, c.Mail("<a@example.com>"), 5)
				require.NoError(t, c.StartTLS(postfixTLS(ca)))
			}

			_, auth := c.Extension("AUTH")
			mechs := strings.Fields(auth)
			switch mode {
			case LoginOnly:
				require.Equal(t, []string{"LOGIN"}, mechs)
				require.NoError(t, c.Auth(smtp.LoginAuth(postfixTestUser, postfixTestPass, "127.0.0.1", true)))
			default:
				require.ElementsMatch(t, []string{"PLAIN", "LOGIN"}, mechs)
				require.NoError(t, c.Auth(smtp.PlainAuth("", postfixTestUser, postfixTestPass, "127.0.0.1", true)))
			}

			id := postfixSend(t, c, "<a@example.com>", []string{"<x@example.com>"}, string(mode))
			require.NoError(t, c.Quit())

			got := srv.WaitFor(t, id, []string{"x@example.com"}, 30*time.Second)
			require.Len(t, got, 1)
			require.Equal(t, "a@example.com", got[0].EnvelopeFrom)
			require.Equal(t, []string{"x@example.com"}, got[0].Recipients)
			require.Contains(t, string(got[0].Raw), "Subject: "+string(mode))
		})
	}

	t.Run("strict", func(t *testing.T) {
		t.Parallel()
		c := postfixDial(t, srv, ca, Plain)
		require.NoError(t, c.Hello("client.example.org"))
		// RFC 5321 syntax: the reverse-path needs its angle brackets.
		requireCode(t, c.Mail("a@example.com"), 501)
		require.NoError(t, c.Mail("<a@example.com>"))
		require.NoError(t, c.Quit())

		// A HELO name that is not fully qualified: refused at RCPT TO.
		c = postfixDial(t, srv, ca, Plain)
		require.NoError(t, c.Hello("localhost"))
		err := c.Mail("<a@example.com>")
		if err == nil {
			err = c.Rcpt("<x@example.com>")
		}
		requireCode(t, err, 5)
		require.Contains(t, err.Error(), "localhost")
		_ = c.Quit()
	})

	t.Run("plain-without-tls", func(t *testing.T) {
		t.Parallel()
		c := postfixDial(t, srv, ca, Plain)
		require.NoError(t, c.Hello("client.example.org"))
		id := postfixSend(t, c, "<>", []string{"<y@xn--bcher-kva.example>", "<lit@[127.0.0.1]>", "<Mixed.Case@Example.ORG>"}, "no tls")
		require.NoError(t, c.Quit())
		got := srv.WaitFor(t, id, []string{"y@xn--bcher-kva.example", "lit@[127.0.0.1]", "mixed.case@example.org"}, 30*time.Second)
		require.Len(t, got, 3)
		for _, r := range got {
			require.Equal(t, "", r.EnvelopeFrom)
			require.Len(t, r.Recipients, 1)
		}
	})

	t.Run("smtputf8", func(t *testing.T) {
		t.Parallel()
		c := postfixDial(t, srv, ca, Plain)
		require.NoError(t, c.Hello("client.example.org"))
		ok, _ := c.Extension("SMTPUTF8")
		require.True(t, ok)
		// go-mail adds the SMTPUTF8 parameter to MAIL FROM.
		id := postfixSend(t, c, "<jörg@bücher.example>", []string{"<müller@bücher.example>"}, "utf8")
		require.NoError(t, c.Quit())
		got := srv.WaitFor(t, id, []string{"müller@bücher.example"}, 30*time.Second)
		require.Equal(t, "jörg@bücher.example", got[0].EnvelopeFrom)
	})

	t.Run("auth-refused", func(t *testing.T) {
		t.Parallel()
		c := postfixDial(t, srv, ca, Plain)
		require.NoError(t, c.Hello("client.example.org"))
		requireCode(t, c.Auth(smtp.PlainAuth("", postfixTestUser, "wrong", "127.0.0.1", true)), 535)
		_ = c.Quit()
	})

	t.Run("size-limit", func(t *testing.T) {
		t.Parallel()
		c := postfixDial(t, srv, ca, Plain)
		require.NoError(t, c.Hello("client.example.org"))
		require.NoError(t, c.Mail("<a@example.com>"))
		require.NoError(t, c.Rcpt("<x@example.com>"))
		w, err := c.Data()
		require.NoError(t, err)
		_, err = fmt.Fprintf(w, "Subject: big\r\n\r\n%s", strings.Repeat(strings.Repeat("x", 998)+"\r\n", 1100))
		require.NoError(t, err)
		requireCode(t, w.Close(), 552)
		_ = c.Quit()
	})

	t.Run("idle-timeout", func(t *testing.T) {
		t.Parallel()
		port, _ := srv.Port(Plain)
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		require.NoError(t, err)
		defer conn.Close()
		r := bufio.NewReader(conn)
		greeting, err := r.ReadString('\n')
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(greeting, "220 "), greeting)
		begin := time.Now()
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(15*time.Second)))
		rest, err := io.ReadAll(r) // until the server closes
		require.NoError(t, err, "server did not close the idle connection (got %q)", rest)
		idle := time.Since(begin)
		require.GreaterOrEqual(t, idle, 1500*time.Millisecond)
		require.Less(t, idle, 8*time.Second)
		t.Logf("closed after %s: %q", idle.Round(time.Millisecond), rest)
	})
}

// TestPostfixRealmUser: a user name with a domain logs in as given, and two
// instances run side by side.
func TestPostfixRealmUser(t *testing.T) {
	t.Parallel()
	ca := NewCA(t)
	srv := Postfix(t, Config{
		CA:              ca,
		Username:        "sender@example.net",
		Password:        "pw",
		MaxSize:         10 << 20,
		IdleTimeout:     5 * time.Second,
		RefuseLocalPart: "no.body",
	})
	for _, mode := range []Mode{Plain, LoginOnly} {
		c := postfixDial(t, srv, ca, mode)
		require.NoError(t, c.Hello("client.example.org"))
		_, size := c.Extension("SIZE")
		require.Equal(t, "10485760", size)
		var a smtp.Auth = smtp.LoginAuth("sender@example.net", "pw", "127.0.0.1", true)
		if mode == Plain {
			a = smtp.PlainAuth("", "sender@example.net", "pw", "127.0.0.1", true)
		}
		require.NoError(t, c.Auth(a))
		require.NoError(t, c.Mail("<a@example.com>"))
		require.NoError(t, c.Rcpt("<refused@example.com>"))
		requireCode(t, c.Rcpt("<No.Body@example.org>"), 554)
		require.NoError(t, c.Quit())
	}
}

func postfixTLS(ca *CA) *tls.Config {
	return &tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

func postfixDial(t *testing.T, srv *Server, ca *CA, mode Mode) *smtp.Client {
	t.Helper()
	port, ok := srv.Port(mode)
	require.True(t, ok, "postfix listens in mode %s", mode)
	addr := net.JoinHostPort(srv.Host, fmt.Sprint(port))
	var conn net.Conn
	var err error
	if mode == Implicit {
		conn, err = tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, postfixTLS(ca))
	} else {
		conn, err = net.DialTimeout("tcp", addr, 10*time.Second)
	}
	require.NoError(t, err)
	require.NoError(t, conn.SetDeadline(time.Now().Add(30*time.Second)))
	c, err := smtp.NewClient(conn, srv.Host)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// postfixSend sends one message with a fresh Message-ID, checking that a
// RCPT TO of the refused local part gets a 5xx, and returns the ID.
func postfixSend(t *testing.T, c *smtp.Client, from string, to []string, subject string) string {
	t.Helper()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	id := fmt.Sprintf("<%s.postfix-test@client.example.org>", hex.EncodeToString(b))
	require.NoError(t, c.Mail(from))
	for _, r := range to {
		require.NoError(t, c.Rcpt(r))
	}
	requireCode(t, c.Rcpt("<refused@example.com>"), 5)
	w, err := c.Data()
	require.NoError(t, err)
	_, err = fmt.Fprintf(w, "From: a@example.com\r\nTo: x@example.com\r\nSubject: %s\r\nMessage-ID: %s\r\nDate: %s\r\n\r\nHello.\r\n",
		subject, id, time.Now().Format(time.RFC1123Z))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return id
}

// requireCode: err is an SMTP reply with code want, or of class want when
// want is a single digit.
func requireCode(t *testing.T, err error, want int) {
	t.Helper()
	var te *textproto.Error
	require.True(t, errors.As(err, &te), "want an SMTP %d reply, got %v", want, err)
	if want < 10 {
		require.Equal(t, want, te.Code/100, "reply %v", te)
	} else {
		require.Equal(t, want, te.Code, "reply %v", te)
	}
}
