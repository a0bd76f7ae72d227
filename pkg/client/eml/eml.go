// Package eml reads an RFC 5322 message (an .eml file, or what an SMTP client
// submits) into an API message: the one parser the CLI's --eml and the SMTP
// submission listener share.
package eml

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	"unicode/utf8"

	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// maxEMLDepth bounds multipart nesting.
const maxEMLDepth = 10

// Parse reads an RFC 5322 message into an API message: From, To, Cc, Bcc,
// Reply-To, Subject and X-* headers; the first text/plain and text/html parts
// that are not attachments as the bodies; every other leaf part as an
// attachment (inline when it has a Content-ID and is not marked attachment).
// Bodies in UTF-8, US-ASCII and ISO-8859-1 are read; other charsets are
// refused rather than sent garbled. Date, Message-ID and the MIME structure
// are the service's to write; the header is returned for the caller to read
// them (SMTP submission takes the Message-ID as the idempotency key).
func Parse(r io.Reader) (*v1.EmailMessage, mail.Header, error) {
	msg, err := mail.ReadMessage(r)
	if err != nil {
		return nil, nil, fmt.Errorf("read message: %w", err)
	}
	m, err := parse(msg)
	if err != nil {
		return nil, nil, err
	}
	return m, msg.Header, nil
}

func parse(msg *mail.Message) (*v1.EmailMessage, error) {
	h := msg.Header
	m := &v1.EmailMessage{}
	from, err := headerAddresses(h, "From")
	if err != nil {
		return nil, err
	}
	if len(from) != 1 {
		return nil, fmt.Errorf("From: want one address, got %d", len(from))
	}
	m.From = from[0]
	for _, l := range []struct {
		name string
		out  *[]*v1.Address
	}{{"To", &m.To}, {"Cc", &m.Cc}, {"Bcc", &m.Bcc}, {"Reply-To", &m.ReplyTo}} {
		if *l.out, err = headerAddresses(h, l.name); err != nil {
			return nil, err
		}
	}
	dec := new(mime.WordDecoder)
	if m.Subject, err = dec.DecodeHeader(h.Get("Subject")); err != nil {
		return nil, fmt.Errorf("Subject: %w", err)
	}
	for name, vals := range h {
		if !strings.HasPrefix(strings.ToUpper(name), "X-") {
			continue
		}
		for _, v := range vals {
			m.Headers = append(m.Headers, &v1.Header{Name: name, Value: v})
		}
	}
	p := &emlParser{m: m}
	if err := p.part(textproto.MIMEHeader(h), msg.Body, true, 0); err != nil {
		return nil, err
	}
	return m, nil
}

func headerAddresses(h mail.Header, name string) ([]*v1.Address, error) {
	list, err := h.AddressList(name)
	if errors.Is(err, mail.ErrHeaderNotPresent) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	out := make([]*v1.Address, len(list))
	for i, a := range list {
		out[i] = &v1.Address{Address: a.Address, Name: a.Name}
	}
	return out, nil
}

type emlParser struct {
	m *v1.EmailMessage
	n int // attachments without a name so far
}

// part reads one MIME entity. top is the message itself, whose
// Content-Transfer-Encoding is still to decode (multipart.Reader decodes
// quoted-printable parts itself).
func (p *emlParser) part(h textproto.MIMEHeader, body io.Reader, top bool, depth int) error {
	if depth > maxEMLDepth {
		return errors.New("MIME parts nested too deep")
	}
	ct := h.Get("Content-Type")
	if ct == "" {
		ct = "text/plain; charset=us-ascii"
	}
	mediaType, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Errorf("Content-Type %q: %w", ct, err)
	}
	if strings.HasPrefix(mediaType, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			part, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("%s: %w", mediaType, err)
			}
			if err := p.part(part.Header, part, false, depth+1); err != nil {
				return err
			}
		}
	}
	data, err := io.ReadAll(decodeTransfer(h.Get("Content-Transfer-Encoding"), body, top))
	if err != nil {
		return fmt.Errorf("%s body: %w", mediaType, err)
	}
	disposition, dparams, _ := mime.ParseMediaType(h.Get("Content-Disposition"))
	filename := dparams["filename"]
	if filename == "" {
		filename = params["name"]
	}
	if filename != "" {
		if d, err := new(mime.WordDecoder).DecodeHeader(filename); err == nil {
			filename = d
		}
	}
	isAttachment := disposition == "attachment" || filename != ""
	switch {
	case mediaType == "text/plain" && !isAttachment && p.m.TextBody == "":
		p.m.TextBody, err = text(data, params["charset"])
		return err
	case mediaType == "text/html" && !isAttachment && p.m.HtmlBody == "":
		p.m.HtmlBody, err = text(data, params["charset"])
		return err
	}
	cid := strings.Trim(h.Get("Content-Id"), "<> ")
	if filename == "" {
		p.n++
		filename = fmt.Sprintf("part-%d", p.n)
		if exts, _ := mime.ExtensionsByType(mediaType); len(exts) > 0 {
			filename += exts[0]
		} else if mediaType == "message/rfc822" {
			filename += ".eml"
		}
	}
	a := &v1.Attachment{Filename: filename, ContentType: mediaType, Content: data}
	if cid != "" && disposition != "attachment" {
		a.ContentId = cid
	}
	p.m.Attachments = append(p.m.Attachments, a)
	return nil
}

func decodeTransfer(cte string, body io.Reader, top bool) io.Reader {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, &stripSpace{r: body})
	case "quoted-printable":
		if top {
			return quotedprintable.NewReader(body)
		}
	}
	return body
}

// text decodes a text body in charset to UTF-8.
func text(b []byte, charset string) (string, error) {
	switch strings.ToLower(charset) {
	case "", "utf-8", "utf8", "us-ascii", "ascii":
		if !utf8.Valid(b) {
			return "", fmt.Errorf("text body declared %q is not valid UTF-8", charset)
		}
		return string(b), nil
	case "iso-8859-1", "latin1", "latin-1":
		var sb strings.Builder
		for _, c := range b {
			sb.WriteRune(rune(c))
		}
		return sb.String(), nil
	}
	return "", fmt.Errorf("text body in charset %q: only UTF-8, US-ASCII and ISO-8859-1 are read; convert the file to UTF-8", charset)
}

// stripSpace drops the line breaks and spaces base64 bodies are wrapped with.
type stripSpace struct{ r io.Reader }

func (s *stripSpace) Read(p []byte) (int, error) {
	for {
		n, err := s.r.Read(p)
		out := p[:0]
		for _, c := range p[:n] {
			if c != '\r' && c != '\n' && c != ' ' && c != '\t' {
				out = append(out, c)
			}
		}
		if len(out) > 0 || err != nil {
			return len(out), err
		}
	}
}
