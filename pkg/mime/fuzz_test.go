package mime_test

import (
	"bytes"
	"encoding/base64"
	"io"
	"strings"
	"testing"

	"github.com/namirasoft/email-sender/pkg/mime"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

func base64Reader(b []byte) io.Reader {
	return base64.NewDecoder(base64.StdEncoding, bytes.NewReader(b))
}

// FuzzBuild checks that whatever Build accepts parses back, with the standard
// library, to the same subject, bodies and attachment bytes.
func FuzzBuild(f *testing.F) {
	f.Add("Hello", "Hi Bob,\nsee you.\n", "", []byte(nil), "")
	f.Add("Grüße 🎉", "text", "<p>html</p>", []byte("attachment\x00\xff"), "")
	f.Add("  spaced  subject ", "", "<img src=\"cid:a\">", []byte{1, 2, 3}, "a")
	f.Add("=?utf-8?q?x?=", ".\r\n.leading dot\r\n", "", []byte("x"), "")
	f.Fuzz(func(t *testing.T, subject, text, html string, content []byte, cid string) {
		m := &emailsenderv1.EmailMessage{
			From:     &emailsenderv1.Address{Address: "a@example.com", Name: subject},
			To:       []*emailsenderv1.Address{{Address: "b@example.com"}},
			Subject:  subject,
			TextBody: text,
			HtmlBody: html,
		}
		if content != nil {
			m.Attachments = []*emailsenderv1.Attachment{{Filename: "f.bin", Content: content, ContentId: cid}}
		}
		raw, err := mime.Raw(m, opts)
		if err != nil {
			return // refusing is fine; what builds must round-trip
		}
		p := parse(t, raw)
		if got := p.subject(t); got != subject {
			t.Fatalf("subject: got %q, want %q", got, subject)
		}
		var gotText, gotHTML []byte
		var gotAtt []byte
		sawAtt := false
		for _, l := range p.leafs {
			switch {
			case l.header["Content-Disposition"] != nil:
				gotAtt, sawAtt = l.body, true
			case l.contentType == "text/plain":
				gotText = l.body
			case l.contentType == "text/html":
				gotHTML = l.body
			}
		}
		// A single-part body gets a final line break if it had none.
		if len(p.leafs) == 1 {
			gotText = bytes.TrimSuffix(gotText, []byte("\r\n"))
			gotHTML = bytes.TrimSuffix(gotHTML, []byte("\r\n"))
			text = strings.TrimSuffix(crlf(text), "\r\n")
			html = strings.TrimSuffix(crlf(html), "\r\n")
		}
		if string(gotText) != crlf(text) {
			t.Fatalf("text: got %q, want %q", gotText, crlf(text))
		}
		if string(gotHTML) != crlf(html) {
			t.Fatalf("html: got %q, want %q", gotHTML, crlf(html))
		}
		if content != nil && (!sawAtt || !bytes.Equal(gotAtt, content)) {
			t.Fatalf("attachment: got %q, want %q", gotAtt, content)
		}
	})
}
