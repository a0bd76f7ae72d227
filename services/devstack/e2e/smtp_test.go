package e2e

import (
	"bytes"
	"context"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/testkit/smtpsink"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

func waitCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestPlainSendIsSentWithSMTPReply(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	id := s.sendOK("a", simple("jane@example.com"))

	resp := s.waitStatus("a", id, v1.MessageStatus_SENT)
	msgs, err := s.sink.WaitFor(waitCtx(t), 1)
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	require.Equal(t, "sender@example.com", msgs[0].From)
	require.Equal(t, []string{"jane@example.com"}, msgs[0].To)

	var sent *v1.MessageEvent
	for _, e := range resp.GetEvents() {
		if e.GetType() == queue.EventSent {
			sent = e
		}
	}
	require.NotNil(t, sent, "timeline: %v", eventTypes(resp))
	require.Equal(t, "250 2.0.0 Ok: queued as "+msgs[0].QueueID, sent.GetProviderResponse())
	require.Equal(t, int32(1), sent.GetAttempt())
	require.Equal(t, msgs[0].QueueID, resp.GetMessage().GetProviderMessageId())
	require.Equal(t, []string{queue.EventAccepted, queue.EventStarted, queue.EventSent}, eventTypes(resp))

	m, err := mail.ReadMessage(bytes.NewReader(msgs[0].Data))
	require.NoError(t, err)
	require.Equal(t, "Hello", m.Header.Get("Subject"))
	require.Contains(t, m.Header.Get("Message-Id"), id)
	body, err := io.ReadAll(m.Body)
	require.NoError(t, err)
	require.Equal(t, "Hello there", strings.TrimRight(decodeQP(t, m.Header.Get("Content-Transfer-Encoding"), body), "\r\n"))
}

func TestTextHTMLAttachmentMIME(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	pdf := bytes.Repeat([]byte{0x25, 0x50, 0x44, 0x46, 0x00, 0xff, 0x10}, 3000)
	logo := []byte("\x89PNG\r\n\x1a\n-not-really-a-png-")
	req := &v1.SendEmailRequest{Message: &v1.EmailMessage{
		From:     &v1.Address{Address: "sender@example.com", Name: "Zoë Sender"},
		To:       []*v1.Address{{Address: "jane@example.com", Name: "Jane"}},
		Subject:  "Grüße — report",
		TextBody: "plain version",
		HtmlBody: `<p>html version <img src="cid:logo1"></p>`,
		Headers:  []*v1.Header{{Name: "X-Campaign", Value: "autumn"}},
		Attachments: []*v1.Attachment{
			{Filename: "report.pdf", ContentType: "application/pdf", Content: pdf},
			{Filename: "logo.png", ContentType: "image/png", Content: logo, ContentId: "logo1"},
		},
	}}
	id := s.sendOK("a", req)
	s.waitStatus("a", id, v1.MessageStatus_SENT)
	msgs, err := s.sink.WaitFor(waitCtx(t), 1)
	require.NoError(t, err)

	m, err := mail.ReadMessage(bytes.NewReader(msgs[0].Data))
	require.NoError(t, err)
	dec := new(mime.WordDecoder)
	subj, err := dec.DecodeHeader(m.Header.Get("Subject"))
	require.NoError(t, err)
	require.Equal(t, "Grüße — report", subj)
	from, err := mail.ParseAddress(m.Header.Get("From"))
	require.NoError(t, err)
	require.Equal(t, "Zoë Sender", from.Name)
	require.Equal(t, "autumn", m.Header.Get("X-Campaign"))

	parts := map[string][]byte{}
	var walk func(ct string, body io.Reader, hdr map[string][]string)
	walk = func(ct string, body io.Reader, hdr map[string][]string) {
		mt, params, err := mime.ParseMediaType(ct)
		require.NoError(t, err)
		if strings.HasPrefix(mt, "multipart/") {
			parts["container:"+mt] = nil
			mr := multipart.NewReader(body, params["boundary"])
			for {
				p, err := mr.NextPart()
				if err == io.EOF {
					return
				}
				require.NoError(t, err)
				walk(p.Header.Get("Content-Type"), p, p.Header)
			}
		}
		raw, err := io.ReadAll(body)
		require.NoError(t, err)
		cte := ""
		if vs := hdr["Content-Transfer-Encoding"]; len(vs) > 0 {
			cte = vs[0]
		}
		decoded := []byte(decodeQP(t, cte, raw))
		key := mt
		if vs := hdr["Content-Id"]; len(vs) > 0 {
			key = "cid:" + strings.Trim(vs[0], "<>")
		} else if _, p, err := mime.ParseMediaType(firstOr(hdr["Content-Disposition"])); err == nil && p["filename"] != "" {
			key = "file:" + p["filename"]
		}
		parts[key] = decoded
	}
	walk(m.Header.Get("Content-Type"), m.Body, m.Header)

	require.Contains(t, parts, "container:multipart/mixed")
	require.Contains(t, parts, "container:multipart/alternative")
	require.Equal(t, "plain version", strings.TrimRight(string(parts["text/plain"]), "\r\n"))
	require.Contains(t, string(parts["text/html"]), `cid:logo1`)
	require.Equal(t, pdf, parts["file:report.pdf"], "attachment bytes differ")
	require.Equal(t, logo, parts["cid:logo1"], "inline part bytes differ")
}

func firstOr(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func TestBccReceivesButIsNotInHeaders(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	req := simple("to@example.com")
	req.Message.Cc = []*v1.Address{{Address: "cc@example.com"}}
	req.Message.Bcc = []*v1.Address{{Address: "Hidden@Example.com", Name: "Hidden"}}
	id := s.sendOK("a", req)
	resp := s.waitStatus("a", id, v1.MessageStatus_SENT)
	msgs, err := s.sink.WaitFor(waitCtx(t), 1)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"to@example.com", "cc@example.com", "hidden@example.com"}, lower(msgs[0].To))

	header, _, _ := bytes.Cut(msgs[0].Data, []byte("\r\n\r\n"))
	require.NotContains(t, strings.ToLower(string(header)), "hidden", "bcc leaked into headers")
	require.NotContains(t, strings.ToLower(string(header)), "bcc:")
	require.Len(t, resp.GetRecipients(), 3)
	for _, r := range resp.GetRecipients() {
		require.Equal(t, v1.MessageStatus_SENT, r.GetStatus(), r.GetAddress().GetAddress())
	}
}

func lower(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = strings.ToLower(s)
	}
	return out
}

func TestTransientTwiceThenSent(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	s.sink.FailNext(2, smtpsink.Reply{Code: 451, Enhanced: "4.3.0", Message: "try again later"})
	id := s.sendOK("a", simple("jane@example.com"))
	resp := s.waitStatus("a", id, v1.MessageStatus_SENT)
	require.Equal(t, int32(3), resp.GetMessage().GetAttempts())
	require.Equal(t, 2, countType(resp, queue.EventRetry), "timeline: %v", eventTypes(resp))
	for _, e := range resp.GetEvents() {
		if e.GetType() == queue.EventRetry {
			require.Contains(t, e.GetDetail()+e.GetProviderResponse(), "451")
			require.Equal(t, "transient", e.GetErrorClass())
			require.NotNil(t, e.GetRetryAt())
		}
	}
	require.Equal(t, 1, s.sink.Count())
}

func TestPermanentFailsAfterOneAttempt(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	s.sink.FailNext(1, smtpsink.Reply{Code: 550, Enhanced: "5.1.1", Message: "no such user"})
	id := s.sendOK("a", simple("nobody@example.com"))
	resp := s.waitStatus("a", id, v1.MessageStatus_FAILED)
	require.Equal(t, int32(1), resp.GetMessage().GetAttempts())
	require.Contains(t, resp.GetMessage().GetLastError(), "550")
	last := resp.GetEvents()[len(resp.GetEvents())-1]
	require.Equal(t, queue.EventFailed, last.GetType())
	require.Equal(t, "permanent", last.GetErrorClass())
	require.Zero(t, s.sink.Count())
}

func TestSinkDownThenSent(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{maxAttempts: 20})
	s.sink.Stop()
	id := s.sendOK("a", simple("jane@example.com"))
	// Wait until at least two attempts failed against the closed port.
	require.Eventually(t, func() bool {
		resp, err := s.report.GetMessage(s.ctx("a"), &v1.GetMessageRequest{MessageId: id})
		return err == nil && countType(resp, queue.EventRetry) >= 2
	}, 20*time.Second, 20*time.Millisecond)
	require.NoError(t, s.sink.Start())
	resp := s.waitStatus("a", id, v1.MessageStatus_SENT)
	require.GreaterOrEqual(t, resp.GetMessage().GetAttempts(), int32(3))
	require.Equal(t, 1, s.sink.Count())
}

func TestAttemptsExhaustedFails(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{maxAttempts: 3})
	s.sink.FailNext(10, smtpsink.Reply{Code: 421, Enhanced: "4.7.0", Message: "busy"})
	id := s.sendOK("a", simple("jane@example.com"))
	resp := s.waitStatus("a", id, v1.MessageStatus_FAILED)
	require.Equal(t, int32(3), resp.GetMessage().GetAttempts())
	require.Equal(t, 2, countType(resp, queue.EventRetry))
	last := resp.GetEvents()[len(resp.GetEvents())-1]
	require.Equal(t, "attempts_exhausted", last.GetErrorClass())
	require.Zero(t, s.sink.Count())
}

func TestAmbiguousTimeoutPolicy(t *testing.T) {
	t.Parallel()
	t.Run("fail", func(t *testing.T) {
		t.Parallel()
		s := newStack(t, stackOptions{sendTimeout: 700 * time.Millisecond})
		s.sink.StallNext(1)
		id := s.sendOK("a", simple("jane@example.com"))
		resp := s.waitStatus("a", id, v1.MessageStatus_FAILED)
		last := resp.GetEvents()[len(resp.GetEvents())-1]
		require.Equal(t, "ambiguous", last.GetErrorClass())
		require.Equal(t, int32(1), resp.GetMessage().GetAttempts())
		s.sink.Release()
	})
	t.Run("retry", func(t *testing.T) {
		t.Parallel()
		s := newStack(t, stackOptions{sendTimeout: 700 * time.Millisecond, ambiguousPolicy: "retry"})
		s.sink.Script(smtpsink.Action{Stage: smtpsink.AtData, Stall: true, Drop: true})
		id := s.sendOK("a", simple("jane@example.com"))
		resp := s.waitStatus("a", id, v1.MessageStatus_SENT)
		require.Equal(t, int32(2), resp.GetMessage().GetAttempts())
		s.sink.Release()
	})
}

func decodeQP(t *testing.T, cte string, body []byte) string {
	t.Helper()
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "quoted-printable":
		b, err := io.ReadAll(newQPReader(body))
		require.NoError(t, err)
		return string(b)
	case "base64":
		b, err := decodeBase64(body)
		require.NoError(t, err)
		return string(b)
	}
	return string(body)
}

func TestInternationalAndQuotedAddresses(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	req := simple(`"jane doe"@example.com`)
	req.Message.To = append(req.Message.To, &v1.Address{Address: "zoë@bücher.example", Name: "Zoë"})
	req.Message.To[1].Address = "zoe@bücher.example"
	id := s.sendOK("a", req)
	s.waitStatus("a", id, v1.MessageStatus_SENT)
	msgs, err := s.sink.WaitFor(waitCtx(t), 1)
	require.NoError(t, err)
	// go-smtp hands the sink the RCPT address with its quoting removed.
	require.ElementsMatch(t, []string{"jane doe@example.com", "zoe@xn--bcher-kva.example"}, msgs[0].To)
	m, err := mail.ReadMessage(bytes.NewReader(msgs[0].Data))
	require.NoError(t, err)
	to, err := m.Header.AddressList("To")
	require.NoError(t, err)
	require.Len(t, to, 2)
	require.Equal(t, "Zoë", to[1].Name)
}
