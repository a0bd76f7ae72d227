package mime_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	stdmime "mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/mime"
	"github.com/namirasoft/email-sender/pkg/testkit/mimecheck"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// part is one leaf of a parsed message.
type part struct {
	contentType string // media type only
	params      map[string]string
	header      map[string][]string
	body        []byte // decoded
}

// parsed is a message read back with the standard library only.
type parsed struct {
	msg   *mail.Message
	types []string // media types of every entity, depth first
	leafs []part
}

var dec = &stdmime.WordDecoder{}

func parse(t testing.TB, raw []byte) *parsed {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	require.NoError(t, err)
	p := &parsed{msg: msg}
	body, err := io.ReadAll(msg.Body)
	require.NoError(t, err)
	p.walk(t, map[string][]string(msg.Header), body)
	return p
}

func (p *parsed) walk(t testing.TB, h map[string][]string, body []byte) {
	t.Helper()
	ct := first(h, "Content-Type")
	if ct == "" {
		ct = "text/plain"
	}
	mt, params, err := stdmime.ParseMediaType(ct)
	require.NoError(t, err)
	p.types = append(p.types, mt)
	if strings.HasPrefix(mt, "multipart/") {
		r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for {
			np, err := r.NextRawPart()
			if err == io.EOF {
				return
			}
			require.NoError(t, err)
			b, err := io.ReadAll(np)
			require.NoError(t, err)
			p.walk(t, np.Header, b)
		}
	}
	switch strings.ToLower(first(h, "Content-Transfer-Encoding")) {
	case "quoted-printable":
		body, err = io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		require.NoError(t, err)
	case "base64":
		body, err = io.ReadAll(base64Reader(body))
		require.NoError(t, err)
	}
	p.leafs = append(p.leafs, part{contentType: mt, params: params, header: h, body: body})
}

func first(h map[string][]string, k string) string {
	if v := h[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (p *parsed) leaf(t testing.TB, mt string) part {
	t.Helper()
	for _, l := range p.leafs {
		if l.contentType == mt {
			return l
		}
	}
	t.Fatalf("no %s part in %v", mt, p.types)
	return part{}
}

func (p *parsed) subject(t testing.TB) string {
	t.Helper()
	s, err := dec.DecodeHeader(p.msg.Header.Get("Subject"))
	require.NoError(t, err)
	return s
}

// crlf is how text bodies come back: every line break as CRLF.
func crlf(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.ReplaceAll(s, "\n", "\r\n")
}

// trimCRLF drops the line break a single-part body gets when it has none.
func trimCRLF(b []byte) string { return strings.TrimSuffix(string(b), "\r\n") }

var opts = mime.Options{
	MessageID: "01J9ZQ4X8R6M2K7T3V5W9Y1A2B",
	Domain:    "mail.namirasoft.test",
	Date:      time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC),
}

func baseMessage() *emailsenderv1.EmailMessage {
	return &emailsenderv1.EmailMessage{
		From:     &emailsenderv1.Address{Address: "jane@example.com", Name: "Jane Doe"},
		To:       []*emailsenderv1.Address{{Address: "bob@example.org"}},
		Subject:  "Hello",
		TextBody: "Hi Bob,\nsee you.\n",
	}
}

func TestRaw_TextOnly(t *testing.T) {
	t.Parallel()
	raw, err := mime.Raw(baseMessage(), opts)
	require.NoError(t, err)
	p := parse(t, raw)

	require.Equal(t, []string{"text/plain"}, p.types)
	require.Equal(t, crlf("Hi Bob,\nsee you.\n"), string(p.leafs[0].body))
	require.Equal(t, "utf-8", strings.ToLower(p.leafs[0].params["charset"]))
	require.Equal(t, "Hello", p.subject(t))
	require.Equal(t, "<01J9ZQ4X8R6M2K7T3V5W9Y1A2B@mail.namirasoft.test>", p.msg.Header.Get("Message-Id"))
	date, err := p.msg.Header.Date()
	require.NoError(t, err)
	require.True(t, date.Equal(opts.Date), "date %v", date)
	require.Equal(t, "1.0", p.msg.Header.Get("Mime-Version"))
	require.NotContains(t, string(raw), "go-mail", "no default user agent")
	require.True(t, bytes.HasSuffix(raw, []byte("\r\n")))
	require.NotContains(t, strings.ReplaceAll(string(raw), "\r\n", ""), "\n", "only CRLF line endings")

	again, err := mime.Raw(baseMessage(), opts)
	require.NoError(t, err)
	require.Equal(t, raw, again, "single-part messages are deterministic")
}

func TestRaw_BodyLayouts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		text, html  string
		attachments []*emailsenderv1.Attachment
		want        []string
	}{
		{name: "html only", html: "<p>hi</p>", want: []string{"text/html"}},
		{name: "text and html", text: "hi", html: "<p>hi</p>", want: []string{"multipart/alternative", "text/plain", "text/html"}},
		{
			name: "attachment", text: "hi",
			attachments: []*emailsenderv1.Attachment{{Filename: "a.pdf", ContentType: "application/pdf", Content: []byte("%PDF")}},
			want:        []string{"multipart/mixed", "text/plain", "application/pdf"},
		},
		{
			name: "inline and attachment", text: "hi", html: `<img src="cid:logo">`,
			attachments: []*emailsenderv1.Attachment{
				{Filename: "logo.png", ContentType: "image/png", Content: []byte{0x89, 'P', 'N', 'G'}, ContentId: "logo"},
				{Filename: "r.csv", ContentType: "text/csv", Content: []byte("a,b\n1,2\n")},
			},
			want: []string{
				"multipart/mixed", "multipart/related", "multipart/alternative",
				"text/plain", "text/html", "image/png", "text/csv",
			},
		},
		{
			name: "inline only with html", html: `<img src="cid:logo">`,
			attachments: []*emailsenderv1.Attachment{{Filename: "logo.png", ContentType: "image/png", Content: []byte{1}, ContentId: "logo"}},
			want:        []string{"multipart/related", "text/html", "image/png"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := baseMessage()
			m.TextBody, m.HtmlBody, m.Attachments = tt.text, tt.html, tt.attachments
			raw, err := mime.Raw(m, opts)
			require.NoError(t, err)
			p := parse(t, raw)
			require.Equal(t, tt.want, p.types)
			if tt.html != "" {
				require.Equal(t, crlf(tt.html), trimCRLF(p.leaf(t, "text/html").body))
			}
			if tt.text != "" {
				require.Equal(t, crlf(tt.text), trimCRLF(p.leaf(t, "text/plain").body))
			}
		})
	}
}

func TestRaw_Attachments(t *testing.T) {
	t.Parallel()
	bin := make([]byte, 3000)
	for i := range bin {
		bin[i] = byte(i * 7)
	}
	m := baseMessage()
	m.HtmlBody = `<img src="cid:logo@x">`
	m.Attachments = []*emailsenderv1.Attachment{
		{Filename: "logo.png", ContentType: "image/png", Content: []byte("PNGDATA"), ContentId: "logo@x"},
		{Filename: "data.bin", Content: bin},
		{Filename: "résumé €.txt", ContentType: "text/plain; charset=utf-8", Content: []byte("ok\r\n")},
	}
	raw, err := mime.Raw(m, opts)
	require.NoError(t, err)
	p := parse(t, raw)

	png := p.leaf(t, "image/png")
	require.Equal(t, []byte("PNGDATA"), png.body)
	require.Equal(t, "<logo@x>", first(png.header, "Content-Id"))
	require.True(t, strings.HasPrefix(first(png.header, "Content-Disposition"), "inline"))

	data := p.leaf(t, "application/octet-stream")
	require.Equal(t, bin, data.body)
	disp, dparams, err := stdmime.ParseMediaType(first(data.header, "Content-Disposition"))
	require.NoError(t, err)
	require.Equal(t, "attachment", disp)
	require.Equal(t, "data.bin", dparams["filename"])

	txt := p.leaf(t, "text/plain")
	if string(txt.body) == crlf("Hi Bob,\nsee you.\n") {
		txt = p.leafs[len(p.leafs)-1]
	}
	require.Equal(t, []byte("ok\r\n"), txt.body)
	_, tparams, err := stdmime.ParseMediaType(first(txt.header, "Content-Disposition"))
	require.NoError(t, err)
	name, err := dec.DecodeHeader(tparams["filename"])
	require.NoError(t, err)
	require.Equal(t, "résumé €.txt", name)
}

func TestRaw_AddressesAndHeaders(t *testing.T) {
	t.Parallel()
	m := baseMessage()
	m.From = &emailsenderv1.Address{Address: "news@bücher.example", Name: "Jürgen Müller"}
	m.ReplyTo = []*emailsenderv1.Address{{Address: "help@example.com", Name: `Support, "Team"`}}
	m.To = []*emailsenderv1.Address{
		{Address: "a@example.org", Name: "Doe, John"},
		{Address: "b@example.org", Name: "  Plain   Name "},
	}
	m.Cc = []*emailsenderv1.Address{{Address: "c@例え.jp", Name: "日本語の名前"}}
	m.Bcc = []*emailsenderv1.Address{{Address: "secret@example.net", Name: "Hidden"}}
	m.Subject = "Grüße – 你好 — a fairly long subject that will certainly need folding across lines"
	m.Headers = []*emailsenderv1.Header{
		{Name: "X-Campaign", Value: "spring-2026"},
		{Name: "List-Unsubscribe", Value: "<https://example.com/u?id=1>"},
		{Name: "X-Note", Value: "naïve"},
	}
	raw, err := mime.Raw(m, mime.Options{MessageID: "id1"})
	require.NoError(t, err)
	p := parse(t, raw)
	h := p.msg.Header

	from, err := h.AddressList("From")
	require.NoError(t, err)
	require.Equal(t, []*mail.Address{{Name: "Jürgen Müller", Address: "news@xn--bcher-kva.example"}}, from)
	rt, err := h.AddressList("Reply-To")
	require.NoError(t, err)
	require.Equal(t, `Support, "Team"`, rt[0].Name)
	to, err := h.AddressList("To")
	require.NoError(t, err)
	require.Equal(t, []*mail.Address{{Name: "Doe, John", Address: "a@example.org"}, {Name: "Plain Name", Address: "b@example.org"}}, to)
	cc, err := h.AddressList("Cc")
	require.NoError(t, err)
	require.Equal(t, []*mail.Address{{Name: "日本語の名前", Address: "c@xn--r8jz45g.jp"}}, cc)

	require.Equal(t, m.Subject, p.subject(t))
	require.Equal(t, "spring-2026", h.Get("X-Campaign"))
	require.Equal(t, "<https://example.com/u?id=1>", h.Get("List-Unsubscribe"))
	note, err := dec.DecodeHeader(h.Get("X-Note"))
	require.NoError(t, err)
	require.Equal(t, "naïve", note)
	require.Equal(t, "<id1@xn--bcher-kva.example>", h.Get("Message-Id"), "domain defaults to From's")
	_, err = h.Date()
	require.NoError(t, err)

	require.Empty(t, h["Bcc"])
	require.NotContains(t, string(raw), "secret@example.net")
	require.NotContains(t, string(raw), "Hidden")
	for _, line := range strings.Split(string(raw), "\r\n") {
		require.LessOrEqual(t, len(line), 998)
	}
}

// TestRaw_BccHeader: with Options.BccHeader the bcc recipients are written in
// a Bcc header (names encoded, long lists folded); the rest of the message is
// the same as without it.
func TestRaw_BccHeader(t *testing.T) {
	t.Parallel()
	m := baseMessage()
	m.Bcc = []*emailsenderv1.Address{{Address: "secret@example.net", Name: "Hidden Müller"}, {Address: "b2@例え.jp"}}
	for i := range 20 {
		m.Bcc = append(m.Bcc, &emailsenderv1.Address{Address: fmt.Sprintf("many%02d@example.org", i), Name: "Many Recipients"})
	}
	date := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	without, err := mime.Raw(m, mime.Options{MessageID: "id1", Date: date})
	require.NoError(t, err)
	with, err := mime.Raw(m, mime.Options{MessageID: "id1", Date: date, BccHeader: true})
	require.NoError(t, err)

	bcc, err := parse(t, with).msg.Header.AddressList("Bcc")
	require.NoError(t, err)
	require.Len(t, bcc, 22)
	require.Equal(t, &mail.Address{Name: "Hidden Müller", Address: "secret@example.net"}, bcc[0])
	require.Equal(t, "b2@xn--r8jz45g.jp", bcc[1].Address)
	for _, line := range strings.Split(string(with), "\r\n") {
		require.LessOrEqual(t, len(line), 998)
	}
	require.Empty(t, parse(t, without).msg.Header["Bcc"])

	// Only the Bcc field differs (multipart boundaries are random: compare the
	// header sections only).
	hdr := func(raw []byte) string { return string(raw[:bytes.Index(raw, []byte("\r\n\r\n"))]) }
	withHdr := hdr(with)
	start := strings.Index(withHdr, "Bcc: ")
	require.GreaterOrEqual(t, start, 0)
	end := start + strings.Index(withHdr[start:], "\r\n")
	for end+2 < len(withHdr) && (withHdr[end+2] == ' ' || withHdr[end+2] == '\t') {
		end += 2 + strings.Index(withHdr[end+2:], "\r\n")
	}
	require.Equal(t, hdr(without), withHdr[:start]+withHdr[end+2:])
}

func TestBuild_SubjectRoundTrip(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"plain ascii subject",
		"  leading and trailing  ",
		"double  space",
		"tab\there",
		"=?utf-8?q?looks_encoded?=",
		strings.Repeat("x", 200),
		strings.Repeat("ä", 300),
		"emoji 🎉 and CJK 漢字",
	} {
		m := baseMessage()
		m.Subject = s
		raw, err := mime.Raw(m, opts)
		require.NoError(t, err)
		require.Equal(t, s, parse(t, raw).subject(t))
	}
}

func TestBuild_Invalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(m *emailsenderv1.EmailMessage)
	}{
		{"subject CRLF", func(m *emailsenderv1.EmailMessage) { m.Subject = "hi\r\nBcc: x@evil.test" }},
		{"subject LF", func(m *emailsenderv1.EmailMessage) { m.Subject = "hi\nX: y" }},
		{"from name CR", func(m *emailsenderv1.EmailMessage) { m.From.Name = "a\rb" }},
		{"to name LF", func(m *emailsenderv1.EmailMessage) { m.To[0].Name = "a\nBcc: x@y" }},
		{"address with LF", func(m *emailsenderv1.EmailMessage) { m.To[0].Address = "a@b.c\nBcc: x@y" }},
		{"address invalid", func(m *emailsenderv1.EmailMessage) { m.To[0].Address = "not an address" }},
		{"bcc invalid", func(m *emailsenderv1.EmailMessage) {
			m.Bcc = []*emailsenderv1.Address{{Address: "x"}}
		}},
		{"no from", func(m *emailsenderv1.EmailMessage) { m.From = nil }},
		{"header value CRLF", func(m *emailsenderv1.EmailMessage) {
			m.Headers = []*emailsenderv1.Header{{Name: "X-A", Value: "1\r\nBcc: x@y"}}
		}},
		{"header name colon", func(m *emailsenderv1.EmailMessage) {
			m.Headers = []*emailsenderv1.Header{{Name: "X-A: b", Value: "1"}}
		}},
		{"header reserved", func(m *emailsenderv1.EmailMessage) {
			m.Headers = []*emailsenderv1.Header{{Name: "bcc", Value: "x@y"}}
		}},
		{"header content", func(m *emailsenderv1.EmailMessage) {
			m.Headers = []*emailsenderv1.Header{{Name: "Content-Type", Value: "text/html"}}
		}},
		{"no body", func(m *emailsenderv1.EmailMessage) { m.TextBody = "" }},
		{"filename slash", func(m *emailsenderv1.EmailMessage) {
			m.Attachments = []*emailsenderv1.Attachment{{Filename: "../etc/passwd"}}
		}},
		{"filename CRLF", func(m *emailsenderv1.EmailMessage) {
			m.Attachments = []*emailsenderv1.Attachment{{Filename: "a\r\n.txt"}}
		}},
		{"content type CRLF", func(m *emailsenderv1.EmailMessage) {
			m.Attachments = []*emailsenderv1.Attachment{{Filename: "a", ContentType: "text/plain\r\nX: y"}}
		}},
		{"content id injection", func(m *emailsenderv1.EmailMessage) {
			m.Attachments = []*emailsenderv1.Attachment{{Filename: "a", ContentId: "x>\r\nX: y"}}
		}},
		{"invalid utf8 subject", func(m *emailsenderv1.EmailMessage) { m.Subject = "\xff" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := baseMessage()
			tt.mutate(m)
			_, err := mime.Build(m, opts)
			require.Error(t, err)
			require.True(t, errors.Is(err, mime.ErrInvalid), "%v", err)
			require.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestCanonicalAddress(t *testing.T) {
	t.Parallel()
	got, err := mime.CanonicalAddress("jane@Bücher.Example")
	require.NoError(t, err)
	require.Equal(t, "jane@xn--bcher-kva.example", got)
	got, err = mime.CanonicalAddress("Jane@Example.COM")
	require.NoError(t, err)
	require.Equal(t, "Jane@example.com", got, "the local part keeps its case; the domain is canonical")
	got, err = mime.CanonicalAddress(`"jane doe"@example.com`)
	require.NoError(t, err)
	require.Equal(t, `"jane doe"@example.com`, got, "quoted local parts stay quoted")
	_, err = mime.CanonicalAddress("jane@")
	require.ErrorIs(t, err, mime.ErrInvalid)
	_, err = mime.CanonicalAddress("Jane <jane@example.com>")
	require.ErrorIs(t, err, mime.ErrInvalid)
}

// The independent parser (Python's email) reads back subjects and custom
// headers exactly, however long and whatever their script.
func TestHeadersReadBackByIndependentParser(t *testing.T) {
	t.Parallel()
	values := []string{
		"Grüße aus Köln 🌍: ünïcödé — and a long subject that has to be folded over more than one header line",
		strings.Repeat("日本語のテキスト", 12),
		"plain ASCII words only",
		"  leading and trailing blanks  ",
		"looks like =?UTF-8?q?an_encoded?= word",
		strings.Repeat("x", 120),
	}
	var raws [][]byte
	for _, v := range values {
		m := &emailsenderv1.EmailMessage{
			From: &emailsenderv1.Address{Address: "a@example.com"}, To: []*emailsenderv1.Address{{Address: "b@example.com"}},
			Subject: v, TextBody: "x",
			Headers: []*emailsenderv1.Header{{Name: "X-A-Rather-Long-Custom-Header-Nm", Value: v}},
		}
		raw, err := mime.Raw(m, mime.Options{MessageID: "id1"})
		require.NoError(t, err)
		raws = append(raws, raw)
	}
	parsed, err := mimecheck.Parse(context.Background(), raws...)
	require.NoError(t, err)
	for i, v := range values {
		require.Empty(t, parsed[i].Defects, v)
		require.Equal(t, v, parsed[i].Subject)
		if strings.TrimSpace(v) == v && !strings.Contains(v, "=?") && !strings.Contains(v, strings.Repeat("x", 61)) {
			// ASCII custom values go as given (they may be structured), so
			// blanks at the ends, encoded-word look-alikes and a single token
			// too long for the first line (go-mail folds before it) are the
			// caller's to mean.
			require.Equal(t, []string{v}, parsed[i].Header("X-A-Rather-Long-Custom-Header-Nm"))
		}
	}
}
