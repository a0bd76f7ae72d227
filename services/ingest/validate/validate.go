// Package validate checks a SendEmailRequest before anything is stored: address
// syntax, header injection, required parts, and the configured limits. Every
// failure is an *Error naming the field path ("message.to[2].address") and the
// gRPC code (INVALID_ARGUMENT for syntax, RESOURCE_EXHAUSTED for limits); its
// GRPCStatus carries an errdetails.BadRequest with the field violation.
//
// What it accepts, the message builder (pkg/mime) can build: validation is at
// least as strict as the builder, so an accepted message does not fail later
// for its content.
package validate

import (
	"fmt"
	stdmime "mime"
	"net/textproto"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/namirasoft/email-sender/pkg/address"
	"github.com/namirasoft/email-sender/pkg/envconfig"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// Limits bound what one request may carry. The tags are the environment
// variables (part of the ingest service's Config) and the one source of the
// defaults; zero fields take them (WithDefaults).
type Limits struct {
	// MaxMessageBytes bounds the encoded message (bodies, attachments, headers).
	MaxMessageBytes int `env:"MAX_MESSAGE_BYTES" default:"10485760" help:"largest encoded message, bytes"`
	// MaxAttachmentBytes bounds one attachment's content.
	MaxAttachmentBytes int `env:"MAX_ATTACHMENT_BYTES" default:"7340032" help:"largest attachment, bytes"`
	MaxAttachments     int `env:"MAX_ATTACHMENTS" default:"20" help:"attachments per message"`
	// MaxRecipients bounds to + cc + bcc.
	MaxRecipients   int `env:"MAX_RECIPIENTS" default:"50" help:"to + cc + bcc per message"`
	MaxSubjectBytes int `env:"MAX_SUBJECT_BYTES" default:"998" help:"longest subject, bytes"`
	// MaxScheduleAhead bounds how far in the future send_at may be.
	MaxScheduleAhead time.Duration `env:"MAX_SCHEDULE_AHEAD" default:"720h" help:"how far in the future send_at may be"`
	MaxTags          int           `env:"MAX_TAGS" default:"50" help:"tags per message"`
}

// WithDefaults fills unset limits from the default tags.
func (l Limits) WithDefaults() Limits {
	// The names are this type's own fields: an error here is a typo in this
	// list, caught by TestLimitsDefaultsAreTheTags.
	_ = envconfig.FillDefaults(&l, "MaxMessageBytes", "MaxAttachmentBytes", "MaxAttachments", "MaxRecipients", "MaxSubjectBytes", "MaxScheduleAhead", "MaxTags")
	return l
}

// unset reports whether some limit is zero (WithDefaults fills it).
func (l Limits) unset() bool {
	return l.MaxMessageBytes == 0 || l.MaxAttachmentBytes == 0 || l.MaxAttachments == 0 || l.MaxRecipients == 0 ||
		l.MaxSubjectBytes == 0 || l.MaxScheduleAhead == 0 || l.MaxTags == 0
}

// Validate checks limits after WithDefaults; each error names its variable.
func (l Limits) Validate() error {
	for _, v := range []struct {
		name string
		n    int
	}{
		{"MAX_MESSAGE_BYTES", l.MaxMessageBytes}, {"MAX_ATTACHMENT_BYTES", l.MaxAttachmentBytes}, {"MAX_ATTACHMENTS", l.MaxAttachments},
		{"MAX_RECIPIENTS", l.MaxRecipients}, {"MAX_SUBJECT_BYTES", l.MaxSubjectBytes}, {"MAX_TAGS", l.MaxTags},
	} {
		if v.n <= 0 {
			return fmt.Errorf("%s=%d: want 1 or more", v.name, v.n)
		}
	}
	if l.MaxScheduleAhead <= 0 {
		return fmt.Errorf("MAX_SCHEDULE_AHEAD=%s: want a positive duration", l.MaxScheduleAhead)
	}
	if l.MaxAttachmentBytes > l.MaxMessageBytes {
		return fmt.Errorf("MAX_ATTACHMENT_BYTES (%d) exceeds MAX_MESSAGE_BYTES (%d)", l.MaxAttachmentBytes, l.MaxMessageBytes)
	}
	return nil
}

// MaxIdempotencyKeyChars bounds an idempotency key, in characters: the API's
// contract (send.proto), not a setting.
const MaxIdempotencyKeyChars = 255

const (
	maxTagKeyBytes   = 128
	maxTagValueBytes = 256
	maxFilenameBytes = 255
	maxHeaderName    = 76
	maxContentID     = 250
)

// Recipient kinds, as stored.
const (
	KindTo  = "to"
	KindCc  = "cc"
	KindBcc = "bcc"
)

// Recipient is one envelope recipient.
type Recipient struct {
	Kind string
	// Address is the canonical address, lower-cased.
	Address string
	Name    string
}

// Request is a valid request, normalised.
type Request struct {
	// Message is a copy of the request's message with every address in
	// canonical ASCII form; it is what the workers send.
	Message *emailsenderv1.EmailMessage
	// From is the sender's canonical address, lower-cased.
	From string
	// Recipients are to, cc and bcc in that order.
	Recipients []Recipient
	// SendAt is the requested time; zero when the message is to go at once
	// (unset or not in the future).
	SendAt time.Time
}

// SendEmail validates req at time now.
func SendEmail(req *emailsenderv1.SendEmailRequest, lim Limits, now time.Time) (*Request, error) {
	if lim.unset() {
		lim = lim.WithDefaults() // by reflection: not on every call of a configured server
	}
	in := req.GetMessage()
	if in == nil {
		return nil, invalid("message", "is required")
	}
	if n := proto.Size(in); n > lim.MaxMessageBytes {
		return nil, exhausted("message", "is %d bytes encoded, over the limit of %d", n, lim.MaxMessageBytes)
	}
	if n := len(in.GetAttachments()); n > lim.MaxAttachments {
		return nil, exhausted("message.attachments", "has %d attachments, over the limit of %d", n, lim.MaxAttachments)
	}
	if err := recipientCount(in, lim.MaxRecipients); err != nil {
		return nil, err
	}

	m := proto.CloneOf(in)
	out := &Request{Message: m}
	if m.GetFrom() == nil {
		return nil, invalid("message.from", "is required")
	}
	from, err := mailbox("message.from", m.GetFrom())
	if err != nil {
		return nil, err
	}
	out.From = from
	for i, a := range m.GetReplyTo() {
		if _, err := mailbox(fmt.Sprintf("message.reply_to[%d]", i), a); err != nil {
			return nil, err
		}
	}
	for _, list := range []struct {
		kind  string
		addrs []*emailsenderv1.Address
	}{{KindTo, m.GetTo()}, {KindCc, m.GetCc()}, {KindBcc, m.GetBcc()}} {
		for i, a := range list.addrs {
			lower, err := mailbox(fmt.Sprintf("message.%s[%d]", list.kind, i), a)
			if err != nil {
				return nil, err
			}
			out.Recipients = append(out.Recipients, Recipient{Kind: list.kind, Address: lower, Name: a.GetName()})
		}
	}
	if len(out.Recipients) == 0 {
		return nil, invalid("message.to", "at least one recipient (to, cc or bcc) is required")
	}

	if n := len(m.GetSubject()); n > lim.MaxSubjectBytes {
		return nil, exhausted("message.subject", "is %d bytes, over the limit of %d", n, lim.MaxSubjectBytes)
	}
	if err := text("message.subject", m.GetSubject()); err != nil {
		return nil, err
	}
	if m.GetTextBody() == "" && m.GetHtmlBody() == "" {
		return nil, invalid("message.text_body", "text_body or html_body is required")
	}
	if !utf8.ValidString(m.GetTextBody()) {
		return nil, invalid("message.text_body", "is not valid UTF-8")
	}
	if !utf8.ValidString(m.GetHtmlBody()) {
		return nil, invalid("message.html_body", "is not valid UTF-8")
	}
	for i, h := range m.GetHeaders() {
		if err := header(fmt.Sprintf("message.headers[%d]", i), h); err != nil {
			return nil, err
		}
	}
	if err := attachments(m.GetAttachments(), lim.MaxAttachmentBytes); err != nil {
		return nil, err
	}
	if err := tags(m.GetTags(), lim.MaxTags); err != nil {
		return nil, err
	}

	if err := IdempotencyKey(req.GetIdempotencyKey(), MaxIdempotencyKeyChars); err != nil {
		return nil, err
	}
	if ts := req.GetSendAt(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return nil, invalid("send_at", "is not a valid timestamp")
		}
		at := ts.AsTime()
		if at.After(now.Add(lim.MaxScheduleAhead)) {
			return nil, invalid("send_at", "is more than %s in the future", lim.MaxScheduleAhead)
		}
		if at.After(now) {
			out.SendAt = at
		}
	}
	return out, nil
}

func recipientCount(m *emailsenderv1.EmailMessage, max int) error {
	n := len(m.GetTo()) + len(m.GetCc()) + len(m.GetBcc())
	if n <= max {
		return nil
	}
	// Name the list holding the first recipient over the limit.
	field := "message.bcc"
	switch {
	case len(m.GetTo()) > max:
		field = "message.to"
	case len(m.GetTo())+len(m.GetCc()) > max:
		field = "message.cc"
	}
	return exhausted(field, "%d recipients in to, cc and bcc, over the limit of %d", n, max)
}

// mailbox validates an address and its name, rewrites the address in canonical
// form and returns it lower-cased.
func mailbox(field string, a *emailsenderv1.Address) (string, error) {
	if a.GetAddress() == "" {
		return "", invalid(field+".address", "is required")
	}
	parsed, err := address.Parse(a.GetAddress())
	if err != nil {
		return "", invalid(field+".address", "%q is not a valid address: %s", a.GetAddress(), reason(err))
	}
	if err := address.CheckName(a.GetName()); err != nil {
		return "", invalid(field+".name", "%s", reason(err))
	}
	a.Address = parsed.String()
	return parsed.Lower(), nil
}

func text(field, v string) error {
	if err := address.CheckText(v); err != nil {
		return invalid(field, "%s", reason(err))
	}
	return nil
}

// reason is err's text without the package's sentinel prefix.
func reason(err error) string {
	return strings.TrimPrefix(err.Error(), address.ErrInvalid.Error()+": ")
}

// reserved are the headers the service writes itself, and the trace and
// authentication headers that only receiving servers and providers may write:
// a client that set them could forge a message's authentication results or
// its path.
var reserved = map[string]bool{
	"From": true, "Sender": true, "Reply-To": true, "To": true, "Cc": true, "Bcc": true,
	"Subject": true, "Date": true, "Message-Id": true, "Mime-Version": true,
	"Return-Path": true, "Received": true, "Received-Spf": true, "Dkim-Signature": true,
	"Domainkey-Signature": true, "Authentication-Results": true, "Delivered-To": true,
}

// reservedPrefixes are header families refused as a whole (canonical form):
// MIME structure, resent blocks, the ARC chain (RFC 8617), and the headers SES
// and Google read as instructions or write themselves.
var reservedPrefixes = []string{"Content-", "Resent-", "Arc-", "X-Ses-", "X-Google-", "X-Gm-"}

// Reserved reports whether a custom header of this name is refused because the
// service sets it (or it must not be set by a client).
func Reserved(name string) bool {
	key := textproto.CanonicalMIMEHeaderKey(name)
	if reserved[key] {
		return true
	}
	for _, p := range reservedPrefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

func header(field string, h *emailsenderv1.Header) error {
	name := h.GetName()
	if name == "" {
		return invalid(field+".name", "is required")
	}
	if len(name) > maxHeaderName {
		return invalid(field+".name", "is %d characters, at most %d", len(name), maxHeaderName)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 33 || c > 126 || c == ':' {
			return invalid(field+".name", "%q must be printable ASCII without ':' or spaces", name)
		}
	}
	if Reserved(name) {
		return invalid(field+".name", "%q is set by the service and cannot be given", name)
	}
	return text(field+".value", h.GetValue())
}

func attachments(as []*emailsenderv1.Attachment, maxBytes int) error {
	cids := map[string]int{}
	for i, a := range as {
		field := fmt.Sprintf("message.attachments[%d]", i)
		if n := len(a.GetContent()); n > maxBytes {
			return exhausted(field+".content", "is %d bytes, over the limit of %d", n, maxBytes)
		}
		name := a.GetFilename()
		if name == "" {
			return invalid(field+".filename", "is required")
		}
		if len(name) > maxFilenameBytes {
			return invalid(field+".filename", "is %d bytes, at most %d", len(name), maxFilenameBytes)
		}
		if err := text(field+".filename", name); err != nil {
			return err
		}
		if strings.ContainsAny(name, `/\`) {
			return invalid(field+".filename", "must not contain path separators")
		}
		if ct := a.GetContentType(); ct != "" {
			if !mediaType(ct) {
				return invalid(field+".content_type", "%q is not a media type such as application/pdf", ct)
			}
		}
		if cid := a.GetContentId(); cid != "" {
			bare, err := contentID(cid)
			if err != nil {
				return invalid(field+".content_id", "%q %s", cid, err)
			}
			if j, dup := cids[bare]; dup {
				return invalid(field+".content_id", "%q is already used by message.attachments[%d]", cid, j)
			}
			cids[bare] = i
		}
	}
	return nil
}

// mediaType reports whether ct is a "type/subtype" media type with valid
// parameters.
func mediaType(ct string) bool {
	if strings.ContainsAny(ct, "\r\n\x00") {
		return false
	}
	mt, _, err := stdmime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	typ, sub, ok := strings.Cut(mt, "/")
	return ok && typ != "" && sub != "" && !strings.Contains(sub, "/")
}

// contentID checks a Content-ID, with or without its angle brackets, and returns
// it without them. The id must be printable ASCII without specials so that it
// can be written as "<id>" and referenced as "cid:id".
func contentID(cid string) (string, error) {
	bare := cid
	if strings.HasPrefix(bare, "<") && strings.HasSuffix(bare, ">") && len(bare) >= 2 {
		bare = bare[1 : len(bare)-1]
	}
	if bare == "" {
		return "", errorString("is empty")
	}
	if len(bare) > maxContentID {
		return "", errorString(fmt.Sprintf("is longer than %d characters", maxContentID))
	}
	for i := 0; i < len(bare); i++ {
		c := bare[i]
		if c < 33 || c > 126 || strings.IndexByte(`<>"()[]\,;:`, c) >= 0 {
			return "", errorString("must be printable ASCII without spaces or any of <>\"()[]\\,;:")
		}
	}
	return bare, nil
}

type errorString string

func (e errorString) Error() string { return string(e) }

func tags(ts map[string]string, max int) error {
	if len(ts) > max {
		return exhausted("message.tags", "has %d tags, over the limit of %d", len(ts), max)
	}
	for k, v := range ts {
		field := fmt.Sprintf("message.tags[%q]", k)
		if k == "" {
			return invalid("message.tags", "tag names must not be empty")
		}
		if len(k) > maxTagKeyBytes || len(v) > maxTagValueBytes {
			return invalid(field, "tag names are at most %d bytes and values at most %d", maxTagKeyBytes, maxTagValueBytes)
		}
		if err := text(field, k+v); err != nil {
			return err
		}
	}
	return nil
}

// IdempotencyKey checks an idempotency key (empty means none).
func IdempotencyKey(key string, maxChars int) error {
	if key == "" {
		return nil
	}
	if !utf8.ValidString(key) {
		return invalid("idempotency_key", "is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(key); n > maxChars {
		return invalid("idempotency_key", "is %d characters, at most %d", n, maxChars)
	}
	return text("idempotency_key", key)
}
