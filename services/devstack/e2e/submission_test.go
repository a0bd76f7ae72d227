package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	gomail "github.com/wneessen/go-mail"

	"github.com/namirasoft/email-sender/pkg/testkit/testca"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/inbound/submission"
)

// submissionMaxBytes is the test listener's SIZE.
const submissionMaxBytes = 64 << 10

// startSubmission runs the SMTP submission listener, as cmd/inbound does,
// against the stack's ingest over gRPC, with a certificate of a test CA.
func startSubmission(t testing.TB, s *stack) (port int, ca *testca.CA) {
	t.Helper()
	ca = testca.New(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	sub, err := submission.New(submission.Config{
		Hostname: "submit.example.net", TLSCertFile: ca.CertFile, TLSKeyFile: ca.KeyFile,
		IngestTarget: s.ingestAddr, IngestInsecure: true, MaxMessageBytes: submissionMaxBytes,
	}, submission.Deps{Listener: lis})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("submission: %v", err)
		}
	})
	return lis.Addr().(*net.TCPAddr).Port, ca
}

var replyID = regexp.MustCompile(`OK <([0-9a-f-]{36})>`)

// goMailClient is an application's go-mail client: STARTTLS required, AUTH
// with the API key as the password.
func goMailClient(t testing.TB, port int, ca *testca.CA, authType gomail.SMTPAuthType, key string) *gomail.Client {
	t.Helper()
	c, err := gomail.NewClient("127.0.0.1", gomail.WithPort(port), gomail.WithTLSPolicy(gomail.TLSMandatory),
		gomail.WithTLSConfig(&tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}),
		gomail.WithSMTPAuth(authType), gomail.WithUsername("app"), gomail.WithPassword(key), gomail.WithTimeout(20*time.Second))
	require.NoError(t, err)
	return c
}

func goMailMsg(t testing.TB, from, to, bcc, msgID string, attachment []byte) *gomail.Msg {
	t.Helper()
	m := gomail.NewMsg()
	require.NoError(t, m.From(from))
	require.NoError(t, m.To(to))
	if bcc != "" {
		require.NoError(t, m.Bcc(bcc))
	}
	m.Subject("From go-mail")
	m.SetBodyString(gomail.TypeTextPlain, "Sent by go-mail through SMTP submission.")
	m.SetMessageIDWithValue(msgID)
	if attachment != nil {
		require.NoError(t, m.AttachReader("big.bin", bytes.NewReader(attachment)))
	}
	return m
}

// TestSMTPSubmission: applications that speak only SMTP submit through the
// listener with go-mail and with Python's smtplib (STARTTLS with the test
// CA, AUTH PLAIN and LOGIN with an API key); each message is accepted by
// ingest's SendEmail (the reply's id is the stored message's), delivered to
// the SMTP sink to the envelope's recipients (a Bcc included), and a
// resubmission with the same Message-ID answers the same id. A bad key is
// 535 5.7.8, AUTH before STARTTLS 538 5.7.11, an unverified sender 550
// 5.7.1 (ingest's FAILED_PRECONDITION), a message over SIZE 552 5.3.4.
func TestSMTPSubmission(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	port, ca := startSubmission(t, s)
	key := s.accounts["a"].APIKey

	// go-mail, AUTH PLAIN: accepted, the reply's id is the message's.
	c := goMailClient(t, port, ca, gomail.SMTPAuthPlain, key)
	m := goMailMsg(t, "App <app@example.com>", "jane@example.org", "hidden@example.org", "gomail-1@app.example.com", nil)
	require.NoError(t, c.DialAndSend(m))
	match := replyID.FindStringSubmatch(m.ServerResponse())
	require.NotNil(t, match, "reply %q", m.ServerResponse())
	id := match[1]
	resp := s.waitStatus("a", id, v1.MessageStatus_SENT)
	require.Equal(t, "app@example.com", resp.GetMessage().GetFrom().GetAddress())
	var rcpts []string
	for _, r := range resp.GetRecipients() {
		rcpts = append(rcpts, r.GetKind()+":"+r.GetAddress().GetAddress())
	}
	require.ElementsMatch(t, []string{"to:jane@example.org", "bcc:hidden@example.org"}, rcpts)
	var delivered bool
	for _, msg := range s.sink.Messages() {
		if bytes.Contains(msg.Data, []byte(id)) {
			delivered = true
			require.ElementsMatch(t, []string{"jane@example.org", "hidden@example.org"}, msg.To)
			require.NotContains(t, string(msg.Data), "hidden@example.org", "a bcc recipient is not in the headers")
			require.Contains(t, string(msg.Data), "Sent by go-mail through SMTP submission.")
		}
	}
	require.True(t, delivered, "the sink got no message %s", id)

	// The same Message-ID again: the same id, nothing new.
	again := goMailMsg(t, "App <app@example.com>", "jane@example.org", "hidden@example.org", "gomail-1@app.example.com", nil)
	require.NoError(t, c.DialAndSend(again))
	require.Contains(t, again.ServerResponse(), "<"+id+">")

	// go-mail, AUTH LOGIN, a bad key: 535 5.7.8.
	err := goMailClient(t, port, ca, gomail.SMTPAuthLogin, "es_not-a-key").DialAndSend(
		goMailMsg(t, "app@example.com", "jane@example.org", "", "gomail-2@app.example.com", nil))
	require.Error(t, err)
	require.Contains(t, err.Error(), "535")

	// Over SIZE: 552 5.3.4.
	big := bytes.Repeat([]byte("0123456789abcdef"), submissionMaxBytes/16+1)
	err = goMailClient(t, port, ca, gomail.SMTPAuthPlain, key).DialAndSend(
		goMailMsg(t, "app@example.com", "jane@example.org", "", "gomail-3@app.example.com", big))
	var se *gomail.SendError
	require.True(t, errors.As(err, &se), "%v", err)
	require.Equal(t, 552, se.ErrorCode(), "%v", err)
	require.Equal(t, "5.3.4", se.EnhancedStatusCode())

	// Python's smtplib.
	_, file, _, _ := runtime.Caller(0)
	cmd := exec.Command("/usr/bin/python3", filepath.Join(filepath.Dir(file), "testdata", "submit.py"), strconv.Itoa(port), ca.CAFile, key)
	out, err := cmd.Output()
	var stderr string
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		stderr = string(ee.Stderr)
	}
	require.NoError(t, err, "submit.py: %s", stderr)
	var py struct {
		AuthOfferedPlain bool           `json:"auth_offered_plain"`
		AuthPlaintext    int            `json:"auth_plaintext"`
		AuthOfferedTLS   string         `json:"auth_offered_tls"`
		BadKey           int            `json:"bad_key"`
		Sent             [][]any        `json:"sent"`
		Unverified       []any          `json:"unverified"`
		Login            int            `json:"login"`
		SendMessage      map[string]any `json:"send_message"`
	}
	require.NoError(t, json.Unmarshal(out, &py), "%s", out)
	require.False(t, py.AuthOfferedPlain, "AUTH is offered only after STARTTLS")
	require.Equal(t, 538, py.AuthPlaintext)
	require.Equal(t, "PLAIN LOGIN", strings.TrimSpace(py.AuthOfferedTLS))
	require.Equal(t, 535, py.BadKey)
	require.Len(t, py.Sent, 2)
	var pyIDs []string
	for _, r := range py.Sent {
		require.EqualValues(t, 250, r[0], "%v", r)
		m := replyID.FindStringSubmatch(r[1].(string))
		require.NotNil(t, m, "reply %v", r)
		require.True(t, strings.HasPrefix(r[1].(string), "2.0.0 OK <"), "%v", r)
		pyIDs = append(pyIDs, m[1])
	}
	require.Equal(t, pyIDs[0], pyIDs[1], "the same Message-ID answers the same id")
	require.EqualValues(t, 550, py.Unverified[0])
	require.Contains(t, py.Unverified[1], "5.7.1")
	require.Contains(t, py.Unverified[1], "not a verified sender")
	require.Equal(t, 235, py.Login)
	require.Empty(t, py.SendMessage, "send_message refused no recipient")

	resp = s.waitStatus("a", pyIDs[0], v1.MessageStatus_SENT)
	require.Len(t, resp.GetRecipients(), 2)
	require.Equal(t, "bcc", resp.GetRecipients()[1].GetKind())
	for _, msg := range s.sink.Messages() {
		if bytes.Contains(msg.Data, []byte(pyIDs[0])) {
			require.Contains(t, string(msg.Data), `filename="a.pdf"`)
		}
	}
}
