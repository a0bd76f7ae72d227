package validate

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/mime"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// ValidRequest is a request every rule accepts; tests mutate a copy of it.
func validRequest() *emailsenderv1.SendEmailRequest {
	return &emailsenderv1.SendEmailRequest{
		Message: &emailsenderv1.EmailMessage{
			From:     &emailsenderv1.Address{Address: "sender@example.com", Name: "Sender"},
			ReplyTo:  []*emailsenderv1.Address{{Address: "reply@example.com"}},
			To:       []*emailsenderv1.Address{{Address: "Jane@Example.com", Name: "Jane Doe"}},
			Cc:       []*emailsenderv1.Address{{Address: "cc@bücher.example", Name: "Jörg Müller"}},
			Bcc:      []*emailsenderv1.Address{{Address: `"b c"@example.com`}},
			Subject:  "Hello ✓",
			TextBody: "hi",
			HtmlBody: "<p>hi <img src=\"cid:logo\"></p>",
			Headers:  []*emailsenderv1.Header{{Name: "X-Campaign", Value: "spring"}},
			Attachments: []*emailsenderv1.Attachment{
				{Filename: "a.pdf", ContentType: "application/pdf", Content: []byte("%PDF")},
				{Filename: "logo.png", ContentType: "image/png", Content: []byte{1, 2}, ContentId: "logo"},
			},
			Tags: map[string]string{"campaign": "spring"},
		},
		IdempotencyKey: "key-1",
	}
}

func TestSendEmailValid(t *testing.T) {
	t.Parallel()
	req := validRequest()
	got, err := SendEmail(req, Limits{}, now)
	require.NoError(t, err)
	require.Equal(t, []Recipient{
		{Kind: KindTo, Address: "jane@example.com", Name: "Jane Doe"},
		{Kind: KindCc, Address: "cc@xn--bcher-kva.example", Name: "Jörg Müller"},
		{Kind: KindBcc, Address: `"b c"@example.com`},
	}, got.Recipients)
	require.Equal(t, "cc@xn--bcher-kva.example", got.Message.GetCc()[0].GetAddress(), "IDN domain sent in ASCII form")
	require.Equal(t, "Jane@example.com", got.Message.GetTo()[0].GetAddress(), "local part keeps its case")
	require.Equal(t, "cc@bücher.example", req.GetMessage().GetCc()[0].GetAddress(), "the request itself is not changed")
	require.True(t, got.SendAt.IsZero())

	req.SendAt = timestamppb.New(now.Add(time.Hour))
	got, err = SendEmail(req, Limits{}, now)
	require.NoError(t, err)
	require.Equal(t, now.Add(time.Hour), got.SendAt)

	req.SendAt = timestamppb.New(now.Add(-time.Hour))
	got, err = SendEmail(req, Limits{}, now)
	require.NoError(t, err)
	require.True(t, got.SendAt.IsZero(), "a time in the past sends at once")
}

func TestSendEmailRules(t *testing.T) {
	t.Parallel()
	small := Limits{MaxMessageBytes: 4096, MaxAttachmentBytes: 100, MaxAttachments: 2, MaxRecipients: 3, MaxSubjectBytes: 20, MaxScheduleAhead: 24 * time.Hour, MaxTags: 2}
	tests := []struct {
		name   string
		mutate func(r *emailsenderv1.SendEmailRequest)
		limits Limits
		code   codes.Code
		field  string
	}{
		{"no message", func(r *emailsenderv1.SendEmailRequest) { r.Message = nil }, Limits{}, codes.InvalidArgument, "message"},
		{"message too big", func(r *emailsenderv1.SendEmailRequest) { r.Message.TextBody = strings.Repeat("x", 5000) }, small, codes.ResourceExhausted, "message"},
		{"default message limit", func(r *emailsenderv1.SendEmailRequest) {
			r.Message.Attachments = []*emailsenderv1.Attachment{{Filename: "a", Content: make([]byte, 6<<20)}, {Filename: "b", Content: make([]byte, 5<<20)}}
		}, Limits{}, codes.ResourceExhausted, "message"},
		{"too many attachments", func(r *emailsenderv1.SendEmailRequest) {
			r.Message.Attachments = append(r.Message.Attachments, &emailsenderv1.Attachment{Filename: "c"})
		}, small, codes.ResourceExhausted, "message.attachments"},
		{"too many to", func(r *emailsenderv1.SendEmailRequest) {
			r.Message.To = append(r.Message.To, r.Message.To[0], r.Message.To[0], r.Message.To[0])
		}, small, codes.ResourceExhausted, "message.to"},
		{"too many recipients in bcc", func(r *emailsenderv1.SendEmailRequest) {
			r.Message.Bcc = append(r.Message.Bcc, r.Message.To[0])
		}, small, codes.ResourceExhausted, "message.bcc"},
		{"default recipient limit", func(r *emailsenderv1.SendEmailRequest) {
			for range 49 {
				r.Message.Cc = append(r.Message.Cc, r.Message.To[0])
			}
		}, Limits{}, codes.ResourceExhausted, "message.cc"},
		{"no from", func(r *emailsenderv1.SendEmailRequest) { r.Message.From = nil }, Limits{}, codes.InvalidArgument, "message.from"},
		{"empty from address", func(r *emailsenderv1.SendEmailRequest) { r.Message.From.Address = "" }, Limits{}, codes.InvalidArgument, "message.from.address"},
		{"bad from address", func(r *emailsenderv1.SendEmailRequest) { r.Message.From.Address = "nope" }, Limits{}, codes.InvalidArgument, "message.from.address"},
		{"from name with LF", func(r *emailsenderv1.SendEmailRequest) { r.Message.From.Name = "a\nBcc: x@y.z" }, Limits{}, codes.InvalidArgument, "message.from.name"},
		{"bad reply_to", func(r *emailsenderv1.SendEmailRequest) { r.Message.ReplyTo[0].Address = "a@@b" }, Limits{}, codes.InvalidArgument, "message.reply_to[0].address"},
		{"bad to address", func(r *emailsenderv1.SendEmailRequest) {
			r.Message.To = append(r.Message.To, &emailsenderv1.Address{Address: "ok@example.com"}, &emailsenderv1.Address{Address: "x@example.com\r\nBcc: evil@x.com"})
		}, Limits{}, codes.InvalidArgument, "message.to[2].address"},
		{"to name with CR", func(r *emailsenderv1.SendEmailRequest) { r.Message.To[0].Name = "a\rb" }, Limits{}, codes.InvalidArgument, "message.to[0].name"},
		{"to name with NUL", func(r *emailsenderv1.SendEmailRequest) { r.Message.To[0].Name = "a\x00b" }, Limits{}, codes.InvalidArgument, "message.to[0].name"},
		{"bad cc domain", func(r *emailsenderv1.SendEmailRequest) { r.Message.Cc[0].Address = "a@-x.com" }, Limits{}, codes.InvalidArgument, "message.cc[0].address"},
		{"bad bcc", func(r *emailsenderv1.SendEmailRequest) { r.Message.Bcc[0].Address = `"unterminated@x.com` }, Limits{}, codes.InvalidArgument, "message.bcc[0].address"},
		{"no recipients", func(r *emailsenderv1.SendEmailRequest) { r.Message.To, r.Message.Cc, r.Message.Bcc = nil, nil, nil }, Limits{}, codes.InvalidArgument, "message.to"},
		{"subject too long", func(r *emailsenderv1.SendEmailRequest) { r.Message.Subject = strings.Repeat("s", 21) }, small, codes.ResourceExhausted, "message.subject"},
		{"default subject limit", func(r *emailsenderv1.SendEmailRequest) { r.Message.Subject = strings.Repeat("s", 999) }, Limits{}, codes.ResourceExhausted, "message.subject"},
		{"subject with CRLF", func(r *emailsenderv1.SendEmailRequest) { r.Message.Subject = "hi\r\nBcc: evil@x.com" }, Limits{}, codes.InvalidArgument, "message.subject"},
		{"no body", func(r *emailsenderv1.SendEmailRequest) { r.Message.TextBody, r.Message.HtmlBody = "", "" }, Limits{}, codes.InvalidArgument, "message.text_body"},
		{"text body not UTF-8", func(r *emailsenderv1.SendEmailRequest) { r.Message.TextBody = "\xff" }, Limits{}, codes.InvalidArgument, "message.text_body"},
		{"html body not UTF-8", func(r *emailsenderv1.SendEmailRequest) { r.Message.HtmlBody = "\xff" }, Limits{}, codes.InvalidArgument, "message.html_body"},
		{"header empty name", func(r *emailsenderv1.SendEmailRequest) { r.Message.Headers[0].Name = "" }, Limits{}, codes.InvalidArgument, "message.headers[0].name"},
		{"header name with colon", func(r *emailsenderv1.SendEmailRequest) { r.Message.Headers[0].Name = "X-A:b" }, Limits{}, codes.InvalidArgument, "message.headers[0].name"},
		{"header name with space", func(r *emailsenderv1.SendEmailRequest) { r.Message.Headers[0].Name = "X A" }, Limits{}, codes.InvalidArgument, "message.headers[0].name"},
		{"header name non-ASCII", func(r *emailsenderv1.SendEmailRequest) { r.Message.Headers[0].Name = "X-Ü" }, Limits{}, codes.InvalidArgument, "message.headers[0].name"},
		{"header name too long", func(r *emailsenderv1.SendEmailRequest) { r.Message.Headers[0].Name = "X-" + strings.Repeat("a", 80) }, Limits{}, codes.InvalidArgument, "message.headers[0].name"},
		{"reserved header Bcc", func(r *emailsenderv1.SendEmailRequest) { r.Message.Headers[0].Name = "bcc" }, Limits{}, codes.InvalidArgument, "message.headers[0].name"},
		{"reserved header Message-ID", func(r *emailsenderv1.SendEmailRequest) { r.Message.Headers[0].Name = "Message-ID" }, Limits{}, codes.InvalidArgument, "message.headers[0].name"},
		{"reserved header Content-Type", func(r *emailsenderv1.SendEmailRequest) { r.Message.Headers[0].Name = "content-type" }, Limits{}, codes.InvalidArgument, "message.headers[0].name"},
		{"reserved header Return-Path", func(r *emailsenderv1.SendEmailRequest) { r.Message.Headers[0].Name = "Return-Path" }, Limits{}, codes.InvalidArgument, "message.headers[0].name"},
		{"reserved header MIME-Version", func(r *emailsenderv1.SendEmailRequest) { r.Message.Headers[0].Name = "MIME-Version" }, Limits{}, codes.InvalidArgument, "message.headers[0].name"},
		{"reserved header Authentication-Results", func(r *emailsenderv1.SendEmailRequest) { r.Message.Headers[0].Name = "Authentication-Results" }, Limits{}, codes.InvalidArgument, "message.headers[0].name"},
		{"reserved header ARC-Seal", func(r *emailsenderv1.SendEmailRequest) { r.Message.Headers[0].Name = "ARC-Seal" }, Limits{}, codes.InvalidArgument, "message.headers[0].name"},
		{"reserved header arc-message-signature", func(r *emailsenderv1.SendEmailRequest) { r.Message.Headers[0].Name = "arc-message-signature" }, Limits{}, codes.InvalidArgument, "message.headers[0].name"},
		{"reserved header DKIM-Signature", func(r *emailsenderv1.SendEmailRequest) { r.Message.Headers[0].Name = "DKIM-Signature" }, Limits{}, codes.InvalidArgument, "message.headers[0].name"},
		{"reserved header Received", func(r *emailsenderv1.SendEmailRequest) { r.Message.Headers[0].Name = "Received" }, Limits{}, codes.InvalidArgument, "message.headers[0].name"},
		{"reserved header Received-SPF", func(r *emailsenderv1.SendEmailRequest) { r.Message.Headers[0].Name = "Received-SPF" }, Limits{}, codes.InvalidArgument, "message.headers[0].name"},
		{"reserved header X-SES-CONFIGURATION-SET", func(r *emailsenderv1.SendEmailRequest) { r.Message.Headers[0].Name = "X-SES-CONFIGURATION-SET" }, Limits{}, codes.InvalidArgument, "message.headers[0].name"},
		{"reserved header X-SES-Source-Arn", func(r *emailsenderv1.SendEmailRequest) { r.Message.Headers[0].Name = "X-SES-Source-Arn" }, Limits{}, codes.InvalidArgument, "message.headers[0].name"},
		{"reserved header X-Google-Original-From", func(r *emailsenderv1.SendEmailRequest) { r.Message.Headers[0].Name = "X-Google-Original-From" }, Limits{}, codes.InvalidArgument, "message.headers[0].name"},
		{"header value with LF", func(r *emailsenderv1.SendEmailRequest) {
			r.Message.Headers = append(r.Message.Headers, &emailsenderv1.Header{Name: "X-B", Value: "a\nBcc: evil@x.com"})
		}, Limits{}, codes.InvalidArgument, "message.headers[1].value"},
		{"attachment too big", func(r *emailsenderv1.SendEmailRequest) { r.Message.Attachments[1].Content = make([]byte, 101) }, small, codes.ResourceExhausted, "message.attachments[1].content"},
		{"default attachment limit", func(r *emailsenderv1.SendEmailRequest) { r.Message.Attachments[1].Content = make([]byte, 7<<20+1) }, Limits{}, codes.ResourceExhausted, "message.attachments[1].content"},
		{"attachment without filename", func(r *emailsenderv1.SendEmailRequest) { r.Message.Attachments[0].Filename = "" }, Limits{}, codes.InvalidArgument, "message.attachments[0].filename"},
		{"attachment filename with CRLF", func(r *emailsenderv1.SendEmailRequest) { r.Message.Attachments[0].Filename = "a\r\n.pdf" }, Limits{}, codes.InvalidArgument, "message.attachments[0].filename"},
		{"attachment filename with slash", func(r *emailsenderv1.SendEmailRequest) { r.Message.Attachments[0].Filename = "../etc/passwd" }, Limits{}, codes.InvalidArgument, "message.attachments[0].filename"},
		{"attachment bad content type", func(r *emailsenderv1.SendEmailRequest) { r.Message.Attachments[0].ContentType = "pdf" }, Limits{}, codes.InvalidArgument, "message.attachments[0].content_type"},
		{"attachment bad content id", func(r *emailsenderv1.SendEmailRequest) { r.Message.Attachments[1].ContentId = "lo go" }, Limits{}, codes.InvalidArgument, "message.attachments[1].content_id"},
		{"attachment content id with CRLF", func(r *emailsenderv1.SendEmailRequest) { r.Message.Attachments[1].ContentId = "a\r\nb" }, Limits{}, codes.InvalidArgument, "message.attachments[1].content_id"},
		{"attachment empty content id", func(r *emailsenderv1.SendEmailRequest) { r.Message.Attachments[1].ContentId = "<>" }, Limits{}, codes.InvalidArgument, "message.attachments[1].content_id"},
		{"attachment duplicate content id", func(r *emailsenderv1.SendEmailRequest) { r.Message.Attachments[0].ContentId = "<logo>" }, Limits{}, codes.InvalidArgument, "message.attachments[1].content_id"},
		{"too many tags", func(r *emailsenderv1.SendEmailRequest) {
			r.Message.Tags = map[string]string{"a": "1", "b": "2", "c": "3"}
		}, small, codes.ResourceExhausted, "message.tags"},
		{"empty tag name", func(r *emailsenderv1.SendEmailRequest) { r.Message.Tags = map[string]string{"": "1"} }, Limits{}, codes.InvalidArgument, "message.tags"},
		{"tag value with LF", func(r *emailsenderv1.SendEmailRequest) { r.Message.Tags = map[string]string{"k": "a\nb"} }, Limits{}, codes.InvalidArgument, `message.tags["k"]`},
		{"idempotency key too long", func(r *emailsenderv1.SendEmailRequest) { r.IdempotencyKey = strings.Repeat("k", 256) }, Limits{}, codes.InvalidArgument, "idempotency_key"},
		{"idempotency key with LF", func(r *emailsenderv1.SendEmailRequest) { r.IdempotencyKey = "a\nb" }, Limits{}, codes.InvalidArgument, "idempotency_key"},
		{"send_at too far", func(r *emailsenderv1.SendEmailRequest) { r.SendAt = timestamppb.New(now.Add(25 * time.Hour)) }, small, codes.InvalidArgument, "send_at"},
		{"default send_at limit", func(r *emailsenderv1.SendEmailRequest) { r.SendAt = timestamppb.New(now.Add(31 * 24 * time.Hour)) }, Limits{}, codes.InvalidArgument, "send_at"},
		{"send_at invalid", func(r *emailsenderv1.SendEmailRequest) { r.SendAt = &timestamppb.Timestamp{Nanos: -1} }, Limits{}, codes.InvalidArgument, "send_at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := validRequest()
			tt.mutate(req)
			_, err := SendEmail(req, tt.limits, now)
			require.Error(t, err)
			var verr *Error
			require.True(t, errors.As(err, &verr), "error %v is not *validate.Error", err)
			require.Equal(t, tt.field, verr.Field, "error: %v", err)
			require.Equal(t, tt.code, verr.Code, "error: %v", err)

			st := status.Convert(err)
			require.Equal(t, tt.code, st.Code())
			require.True(t, strings.HasPrefix(st.Message(), tt.field+": "), "status message %q names the field", st.Message())
			require.Len(t, st.Details(), 1)
			br, ok := st.Details()[0].(*errdetails.BadRequest)
			require.True(t, ok)
			require.Equal(t, tt.field, br.GetFieldViolations()[0].GetField())
		})
	}
}

func TestWithPrefix(t *testing.T) {
	t.Parallel()
	e := invalid("message.to[0].address", "bad")
	p := e.WithPrefix("messages[3].")
	require.Equal(t, "messages[3].message.to[0].address", p.Field)
	require.Equal(t, "message.to[0].address", e.Field)
	require.Equal(t, "messages[3].message.to[0].address: bad", status.Convert(p).Message())
}

// TestAcceptedMessagesBuild checks that validation is at least as strict as the
// message builder the workers use: what is accepted can be built.
func TestAcceptedMessagesBuild(t *testing.T) {
	t.Parallel()
	req := validRequest()
	req.Message.Bcc = []*emailsenderv1.Address{{Address: `"jane"@example.com`}}
	got, err := SendEmail(req, Limits{}, now)
	require.NoError(t, err)
	_, err = mime.Raw(got.Message, mime.Options{MessageID: "0190a0b0-0000-7000-8000-000000000000", Date: now})
	require.NoError(t, err)
}
