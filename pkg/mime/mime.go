// Package mime builds the RFC 5322 message for an emailsenderv1.EmailMessage:
// as a go-mail *mail.Msg (Build) or as the raw bytes handed to a provider (Raw).
//
// The builder is the last line of defence against header injection: ingest
// validates input first, but Build refuses CR, LF and invalid UTF-8 in every
// header value, display name and address, and refuses custom headers that the
// service sets itself. Every such error wraps ErrInvalid and names the field.
//
// Layout of the generated message:
//
//	text only            text/plain
//	html only            text/html
//	text and html        multipart/alternative
//	inline parts         multipart/related around the body
//	attachments          multipart/mixed around everything
//
// Bcc recipients appear in the headers only with Options.BccHeader (for the
// Gmail API, which strips them); otherwise they belong to the SMTP envelope.
// Internationalised domains are written in their ASCII (punycode) form.
package mime

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	addrspec "github.com/namirasoft/email-sender/pkg/address"
	stdmime "mime"
	"net/mail"
	"net/textproto"
	"strings"
	"time"
	"unicode/utf8"

	gomail "github.com/wneessen/go-mail"

	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// ErrInvalid is wrapped by every error caused by the content of the message.
var ErrInvalid = errors.New("invalid message")

// Options are the values that do not come from the message itself.
type Options struct {
	// MessageID is the service's id of the message. The Message-ID header is
	// "<MessageID@Domain>". Required.
	MessageID string
	// Domain is the right-hand side of the Message-ID header. Empty means the
	// domain of the From address.
	Domain string
	// Date is the Date header. Zero means time.Now(). Senders pass the time the
	// message was accepted, so every attempt builds the same headers.
	Date time.Time
	// BccHeader writes the bcc recipients in a Bcc header. Off by default: over
	// SMTP bcc recipients belong to the envelope only. An API that takes the
	// recipients from the headers and removes the Bcc header before delivery
	// (the Gmail API) needs it on.
	BccHeader bool
}

// reservedHeaders are set by the builder and cannot be given as custom headers.
var reservedHeaders = map[string]bool{
	"From": true, "Sender": true, "Reply-To": true, "To": true, "Cc": true, "Bcc": true,
	"Subject": true, "Date": true, "Message-Id": true, "Mime-Version": true, "Return-Path": true,
}

// Build returns the go-mail message for m. The result is not shared; the
// caller may change it before writing it.
func Build(m *emailsenderv1.EmailMessage, o Options) (*gomail.Msg, error) {
	if m == nil {
		return nil, fmt.Errorf("%w: message is nil", ErrInvalid)
	}
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent(), gomail.WithCharset(gomail.CharsetUTF8))

	from, err := address("from", m.GetFrom())
	if err != nil {
		return nil, err
	}
	msg.FromMailAddress(from)

	if err := setAddrs(m.GetReplyTo(), "reply_to", msg.ReplyToMailAddress); err != nil {
		return nil, err
	}
	if err := setAddrs(m.GetTo(), "to", msg.ToMailAddress); err != nil {
		return nil, err
	}
	if err := setAddrs(m.GetCc(), "cc", msg.CcMailAddress); err != nil {
		return nil, err
	}
	// Bcc addresses are validated, and written only with Options.BccHeader.
	var bcc []string
	for i, a := range m.GetBcc() {
		addr, err := address(fmt.Sprintf("bcc[%d]", i), a)
		if err != nil {
			return nil, err
		}
		bcc = append(bcc, addr.String())
	}
	if o.BccHeader && len(bcc) > 0 {
		msg.SetGenHeader(gomail.Header("Bcc"), bcc...)
	}

	if err := checkHeaderValue("subject", m.GetSubject()); err != nil {
		return nil, err
	}
	if s := m.GetSubject(); s != "" {
		msg.SetGenHeader(gomail.HeaderSubject, encodeText(string(gomail.HeaderSubject), s))
	}

	if err := setHeaders(msg, m.GetHeaders()); err != nil {
		return nil, err
	}

	if o.MessageID == "" {
		return nil, fmt.Errorf("%w: message id is empty", ErrInvalid)
	}
	domain := o.Domain
	if domain == "" {
		domain = from.Address[strings.LastIndexByte(from.Address, '@')+1:]
	}
	msgID := o.MessageID + "@" + domain
	if _, err := mail.ParseAddress(msgID); err != nil || strings.ContainsAny(msgID, "<> \t\"") {
		return nil, fmt.Errorf("%w: message id %q is not a valid id-left@id-right", ErrInvalid, msgID)
	}
	msg.SetMessageIDWithValue(msgID)
	date := o.Date
	if date.IsZero() {
		date = time.Now()
	}
	msg.SetDateWithValue(date)

	if err := setBody(msg, m.GetTextBody(), m.GetHtmlBody()); err != nil {
		return nil, err
	}
	if err := setAttachments(msg, m.GetAttachments()); err != nil {
		return nil, err
	}
	return msg, nil
}

// Raw returns the message as RFC 5322 bytes with CRLF line endings, ending
// with CRLF.
func Raw(m *emailsenderv1.EmailMessage, o Options) ([]byte, error) {
	msg, err := Build(m, o)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if _, err := msg.WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("write message: %w", err)
	}
	// SMTP ends the data with CRLF "." CRLF; a body without a final line break
	// would otherwise get one from the client's dot writer, so add it here and
	// the bytes sent are exactly the bytes built.
	if !bytes.HasSuffix(buf.Bytes(), []byte("\r\n")) {
		buf.WriteString("\r\n")
	}
	return buf.Bytes(), nil
}

// CanonicalAddress validates an addr-spec and returns its canonical form
// (pkg/address): the domain in ASCII (punycode), the local part as is, which
// may be internationalised (UTF-8; see NeedsSMTPUTF8).
func CanonicalAddress(addr string) (string, error) {
	a, err := addrspec.Parse(addr)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return a.String(), nil
}

func address(field string, a *emailsenderv1.Address) (*mail.Address, error) {
	if a == nil || a.GetAddress() == "" {
		return nil, fmt.Errorf("%w: %s: address is required", ErrInvalid, field)
	}
	addr, err := CanonicalAddress(a.GetAddress())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	if err := checkHeaderValue(field+".name", a.GetName()); err != nil {
		return nil, err
	}
	// Runs of white space do not survive header folding; a display name loses
	// nothing by having them collapsed.
	name := strings.Join(strings.Fields(a.GetName()), " ")
	return &mail.Address{Name: name, Address: addr}, nil
}

func setAddrs(in []*emailsenderv1.Address, field string, set func(...*mail.Address)) error {
	if len(in) == 0 {
		return nil
	}
	out := make([]*mail.Address, 0, len(in))
	for i, a := range in {
		addr, err := address(fmt.Sprintf("%s[%d]", field, i), a)
		if err != nil {
			return err
		}
		out = append(out, addr)
	}
	set(out...)
	return nil
}

func setHeaders(msg *gomail.Msg, hs []*emailsenderv1.Header) error {
	var order []string
	values := map[string][]string{}
	for i, h := range hs {
		field := fmt.Sprintf("headers[%d]", i)
		name := h.GetName()
		if name == "" {
			return fmt.Errorf("%w: %s: name is empty", ErrInvalid, field)
		}
		for j := 0; j < len(name); j++ {
			if c := name[j]; c < 33 || c > 126 || c == ':' {
				return fmt.Errorf("%w: %s: name %q has invalid characters", ErrInvalid, field, name)
			}
		}
		key := textproto.CanonicalMIMEHeaderKey(name)
		if reservedHeaders[key] || strings.HasPrefix(key, "Content-") {
			return fmt.Errorf("%w: %s: header %q is set by the service", ErrInvalid, field, name)
		}
		if err := checkHeaderValue(field+".value", h.GetValue()); err != nil {
			return err
		}
		if _, ok := values[key]; !ok {
			order = append(order, key)
		}
		v := h.GetValue()
		if !addrspec.IsASCII(v) {
			// Raw UTF-8 in a header needs SMTPUTF8 (RFC 6532); encoded words
			// travel everywhere. ASCII values stay as given: they may be
			// structured (List-Unsubscribe: <https://…>).
			v = qEncode(key, v)
		}
		values[key] = append(values[key], v)
	}
	for _, k := range order {
		msg.SetGenHeader(gomail.Header(k), values[k]...)
	}
	return nil
}

func setBody(msg *gomail.Msg, text, html string) error {
	if !utf8.ValidString(text) {
		return fmt.Errorf("%w: text_body is not valid UTF-8", ErrInvalid)
	}
	if !utf8.ValidString(html) {
		return fmt.Errorf("%w: html_body is not valid UTF-8", ErrInvalid)
	}
	// Line breaks become LF here, and CRLF on the wire: a bare CR is one too.
	// (Left to the quoted-printable writer, a bare CR followed later by a
	// final LF lost that LF.)
	text, html = lineBreaks(text), lineBreaks(html)
	switch {
	case text != "" && html != "":
		msg.SetBodyString(gomail.TypeTextPlain, text)
		msg.AddAlternativeString(gomail.TypeTextHTML, html)
	case text != "":
		msg.SetBodyString(gomail.TypeTextPlain, text)
	case html != "":
		msg.SetBodyString(gomail.TypeTextHTML, html)
	default:
		return fmt.Errorf("%w: text_body or html_body is required", ErrInvalid)
	}
	return nil
}

// lineBreaks writes every line break of s (CRLF, CR or LF) as LF.
func lineBreaks(s string) string {
	if !strings.Contains(s, "\r") {
		return s
	}
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

func setAttachments(msg *gomail.Msg, as []*emailsenderv1.Attachment) error {
	for i, a := range as {
		field := fmt.Sprintf("attachments[%d]", i)
		name := a.GetFilename()
		if name == "" {
			return fmt.Errorf("%w: %s: filename is required", ErrInvalid, field)
		}
		if !utf8.ValidString(name) || strings.ContainsAny(name, "\r\n\x00/\\") {
			return fmt.Errorf("%w: %s: filename has invalid characters", ErrInvalid, field)
		}
		ct := a.GetContentType()
		if ct == "" {
			ct = "application/octet-stream"
		}
		mt, params, err := stdmime.ParseMediaType(ct)
		if err != nil || strings.ContainsAny(ct, "\r\n") {
			return fmt.Errorf("%w: %s: content type %q is not a media type", ErrInvalid, field, ct)
		}
		// name is added by go-mail; a caller-supplied one would be written twice.
		delete(params, "name")
		opts := []gomail.FileOption{gomail.WithFileContentType(gomail.ContentType(stdmime.FormatMediaType(mt, params)))}
		r := bytes.NewReader(a.GetContent())
		if cid := a.GetContentId(); cid != "" {
			cid = strings.TrimSuffix(strings.TrimPrefix(cid, "<"), ">")
			if !validContentID(cid) {
				return fmt.Errorf("%w: %s: content id %q has invalid characters", ErrInvalid, field, a.GetContentId())
			}
			opts = append(opts, gomail.WithFileContentID("<"+cid+">"))
			if err := msg.EmbedReader(name, r, opts...); err != nil {
				return fmt.Errorf("embed %s: %w", field, err)
			}
			continue
		}
		if err := msg.AttachReader(name, r, opts...); err != nil {
			return fmt.Errorf("attach %s: %w", field, err)
		}
	}
	return nil
}

// validContentID accepts the printable ASCII of an RFC 5322 msg-id without
// its angle brackets.
func validContentID(cid string) bool {
	if cid == "" {
		return false
	}
	for i := 0; i < len(cid); i++ {
		c := cid[i]
		if c < 33 || c > 126 || strings.IndexByte("<>\"()[]\\,;:", c) >= 0 {
			return false
		}
	}
	return true
}

// checkHeaderValue refuses what could break out of a header line.
func checkHeaderValue(field, v string) error {
	if !utf8.ValidString(v) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, field)
	}
	if strings.ContainsAny(v, "\r\n\x00") {
		return fmt.Errorf("%w: %s contains CR, LF or NUL", ErrInvalid, field)
	}
	return nil
}

// encodeText returns s as the unstructured value of header key that unfolds
// back to exactly s. Plain ASCII words separated by single spaces go as they
// are; anything else (non-ASCII, control characters, runs of white space, text
// that looks like an encoded word, very long words) becomes RFC 2047 encoded
// words, which the decoder joins without the white space between them.
func encodeText(key, s string) string {
	if plainText(s) {
		return s
	}
	if addrspec.IsASCII(s) || !utf8.ValidString(s) {
		return bEncode(key, s)
	}
	return qEncode(key, s)
}

// Encoded words are sized for go-mail's folding (76 characters a line, folded
// at spaces): each fits on a continuation line, and the first fits on the
// header's first line after "key: ". A header folded right after its colon
// unfolds with a leading space, which parsers such as Python's email keep in
// the value.
const (
	maxWord      = 70 // RFC 2047 allows 75
	minFirstWord = 20
)

func firstWord(key string) int {
	return max(minFirstWord, maxWord-len(key))
}

// qEncode writes s as Q encoded words (RFC 2047 §4.2), split on rune
// boundaries and sized for header key. Q keeps mostly-ASCII text readable.
func qEncode(key, s string) string {
	const prefix, suffix = "=?UTF-8?q?", "?="
	const hex = "0123456789ABCDEF"
	limit := firstWord(key)
	var b, word strings.Builder
	flush := func() {
		if word.Len() == 0 {
			return
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(prefix)
		b.WriteString(word.String())
		b.WriteString(suffix)
		word.Reset()
		limit = maxWord
	}
	var enc []byte
	for i := 0; i < len(s); {
		_, size := utf8.DecodeRuneInString(s[i:])
		enc = enc[:0]
		for _, c := range []byte(s[i : i+size]) {
			switch {
			case c == ' ':
				enc = append(enc, '_')
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.IndexByte("!*+-/", c) >= 0:
				// The characters RFC 2047 §5(3) allows anywhere.
				enc = append(enc, c)
			default:
				enc = append(enc, '=', hex[c>>4], hex[c&15])
			}
		}
		if len(prefix)+word.Len()+len(enc)+len(suffix) > limit {
			flush()
		}
		word.Write(enc)
		i += size
	}
	flush()
	return b.String()
}

func plainText(s string) bool {
	if s == "" || s[0] == ' ' || s[len(s)-1] == ' ' || strings.Contains(s, "  ") || strings.Contains(s, "=?") {
		return false
	}
	for _, w := range strings.Split(s, " ") {
		if len(w) > 60 {
			return false
		}
		for i := 0; i < len(w); i++ {
			if w[i] < 33 || w[i] > 126 {
				return false
			}
		}
	}
	return true
}

// bEncode writes s as base64 encoded words, split on rune boundaries and
// sized for header key.
func bEncode(key, s string) string {
	const overhead = len("=?UTF-8?b?") + len("?=")
	maxRaw := (firstWord(key) - overhead) / 4 * 3
	var b strings.Builder
	for len(s) > 0 {
		n := 0
		for n < len(s) {
			_, size := utf8.DecodeRuneInString(s[n:])
			if n+size > maxRaw && n > 0 {
				break
			}
			n += size
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("=?UTF-8?b?")
		b.WriteString(base64.StdEncoding.EncodeToString([]byte(s[:n])))
		b.WriteString("?=")
		s = s[n:]
		maxRaw = (maxWord - overhead) / 4 * 3
	}
	return b.String()
}

// UTF8HeaderAddress returns the first address written in m's headers (from,
// reply_to, to, cc) whose local part is internationalised, "" when there is
// none. Such a message can only travel over SMTP with SMTPUTF8 (RFC 6531,
// RFC 6532 headers); bcc recipients are not written in the headers, so they
// only need it on the envelope.
func UTF8HeaderAddress(m *emailsenderv1.EmailMessage) string {
	if a := m.GetFrom().GetAddress(); !addrspec.IsASCII(localPart(a)) {
		return a
	}
	for _, l := range [][]*emailsenderv1.Address{m.GetReplyTo(), m.GetTo(), m.GetCc()} {
		for _, a := range l {
			if !addrspec.IsASCII(localPart(a.GetAddress())) {
				return a.GetAddress()
			}
		}
	}
	return ""
}

// localPart is what comes before the last @ (IDN domains are punycoded on
// the way out, so only the local part decides).
func localPart(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[:i]
	}
	return addr
}
