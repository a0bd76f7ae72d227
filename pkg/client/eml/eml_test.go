package eml

import (
	"strings"
	"testing"
)

const multipartEML = "From: =?UTF-8?Q?J=C3=B6rg?= <jorg@example.com>\r\n" +
	"To: Jane <jane@example.org>, bob@example.org\r\n" +
	"Cc: carol@example.org\r\n" +
	"Reply-To: replies@example.com\r\n" +
	"Subject: =?UTF-8?B?SGVsbG8gd8O2cmxk?=\r\n" +
	"X-Campaign: spring\r\n" +
	"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\n" +
	"Message-ID: <abc@example.com>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=outer\r\n" +
	"\r\n" +
	"--outer\r\n" +
	"Content-Type: multipart/related; boundary=rel\r\n" +
	"\r\n" +
	"--rel\r\n" +
	"Content-Type: multipart/alternative; boundary=alt\r\n" +
	"\r\n" +
	"--alt\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Gr=C3=BC=C3=9Fe, a long line that is soft=\r\n" +
	" broken.\r\n" +
	"--alt\r\n" +
	"Content-Type: text/html; charset=iso-8859-1\r\n" +
	"\r\n" +
	"<p>Gr\xfc\xdfe <img src=\"cid:logo\"></p>\r\n" +
	"--alt--\r\n" +
	"--rel\r\n" +
	"Content-Type: image/png\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"Content-ID: <logo>\r\n" +
	"Content-Disposition: inline\r\n" +
	"\r\n" +
	"iVBORw0K\r\n" +
	"GgoAAAAN\r\n" +
	"--rel--\r\n" +
	"--outer\r\n" +
	"Content-Type: application/pdf; name=\"report.pdf\"\r\n" +
	"Content-Disposition: attachment; filename=\"report.pdf\"\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"JVBERi0xLjQK\r\n" +
	"--outer--\r\n"

func TestParse(t *testing.T) {
	m, h, err := Parse(strings.NewReader(multipartEML))
	if err != nil {
		t.Fatal(err)
	}
	check := func(name, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	check("message-id", h.Get("Message-ID"), "<abc@example.com>")
	check("from", m.GetFrom().GetAddress(), "jorg@example.com")
	check("from name", m.GetFrom().GetName(), "Jörg")
	check("subject", m.GetSubject(), "Hello wörld")
	check("text", m.GetTextBody(), "Grüße, a long line that is soft broken.")
	check("html", m.GetHtmlBody(), "<p>Grüße <img src=\"cid:logo\"></p>")
	if len(m.GetTo()) != 2 || m.GetTo()[0].GetName() != "Jane" || m.GetTo()[1].GetAddress() != "bob@example.org" {
		t.Errorf("to = %v", m.GetTo())
	}
	if len(m.GetCc()) != 1 || len(m.GetReplyTo()) != 1 || len(m.GetBcc()) != 0 {
		t.Errorf("cc %v, reply-to %v, bcc %v", m.GetCc(), m.GetReplyTo(), m.GetBcc())
	}
	if len(m.GetHeaders()) != 1 || m.GetHeaders()[0].GetName() != "X-Campaign" || m.GetHeaders()[0].GetValue() != "spring" {
		t.Errorf("headers = %v", m.GetHeaders())
	}
	if len(m.GetAttachments()) != 2 {
		t.Fatalf("attachments = %v", m.GetAttachments())
	}
	logo, pdf := m.GetAttachments()[0], m.GetAttachments()[1]
	check("logo type", logo.GetContentType(), "image/png")
	check("logo cid", logo.GetContentId(), "logo")
	check("logo bytes", string(logo.GetContent()), "\x89PNG\r\n\x1a\n\x00\x00\x00\r")
	if !strings.HasPrefix(logo.GetFilename(), "part-1") {
		t.Errorf("logo filename %q", logo.GetFilename())
	}
	check("pdf name", pdf.GetFilename(), "report.pdf")
	check("pdf bytes", string(pdf.GetContent()), "%PDF-1.4\n")
	check("pdf cid", pdf.GetContentId(), "")
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ name, eml, want string }{
		{"no from", "To: a@example.org\r\n\r\nhi\r\n", "From"},
		{"two froms", "From: a@example.com, b@example.com\r\nTo: c@example.org\r\n\r\nhi\r\n", "want one address"},
		{"unknown charset", "From: a@example.com\r\nTo: c@example.org\r\nContent-Type: text/plain; charset=koi8-r\r\n\r\nhi\r\n", "koi8-r"},
		{"not a message", "no headers here", "read message"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Parse(strings.NewReader(tc.eml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
