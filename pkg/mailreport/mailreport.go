// Package mailreport reads the reports that come back by mail to a bounce
// address: delivery status notifications (RFC 3464 multipart/report;
// report-type=delivery-status, and RFC 6533's global form), abuse reports
// (ARF, RFC 5965 report-type=feedback-report), automatic replies (RFC 3834
// Auto-Submitted and the usual vendor headers) and, for MTAs that still send
// them, bounces in plain text (qmail, old Exchange), read heuristically.
// Every recipient a report names gets its pkg/bounce class.
//
// Real reports bend the formats, and the parser bends with them (each case
// measured on real reports, see testdata/corpus/README.md): a
// delivery-status part is found in any multipart, not only
// multipart/report, and read from the text when the MIME boundary is
// broken; its fields forgive unindented continuation lines and a missing
// Final-Recipient; a recipient without a Diagnostic-Code gets the text's
// line that names it; a plain bounce is read up to the returned message
// only; and a bounce is a bounce even when it says Auto-Submitted.
//
// The inbound service (SMTP and IMAP) and the worker's Gmail bounce poller
// both read reports with it.
package mailreport

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"

	"github.com/namirasoft/email-sender/pkg/bounce"
)

// Kind is what a mail is.
type Kind string

// The kinds.
const (
	// DSN: a delivery status notification (RFC 3464).
	DSN Kind = "dsn"
	// ARF: an abuse (feedback) report (RFC 5965).
	ARF Kind = "arf"
	// AutoReply: an out-of-office or other automatic reply (RFC 3834).
	AutoReply Kind = "auto_reply"
	// PlainBounce: a bounce without the machine-readable part.
	PlainBounce Kind = "plain_bounce"
	// Other: none of them (a person's answer to the bounce address, say).
	Other Kind = "other"
)

// Recipient is what a report says about one recipient.
type Recipient struct {
	// Final is the Final-Recipient (DSN) or Original-Rcpt-To (ARF) address,
	// without its address type; "" when the report names none.
	Final string
	// Original is the DSN's Original-Recipient, "" when absent.
	Original string
	// Action, Status and Diagnostic are the DSN's fields ("failed",
	// "5.1.1", "smtp; 550 5.1.1 user unknown"); for an ARF report Action is
	// the Feedback-Type.
	Action, Status, Diagnostic string
	// Class is the recipient's pkg/bounce class; "" when the report is not
	// about a failure (a DSN's delivered, relayed or expanded action).
	Class bounce.Class
}

// Report is one parsed mail.
type Report struct {
	Kind Kind
	// ID identifies the report for deduplication: the SHA-256 of its
	// machine-readable part (of the whole mail when it has none), hex.
	ID string
	// ReportingMTA is the DSN's Reporting-MTA, or the ARF User-Agent.
	ReportingMTA string
	// Recipients are the recipients the report is about (empty for an
	// auto-reply or Other; possibly empty for an ARF report that names
	// none, or a plain bounce).
	Recipients []Recipient
	// Text is the start of a plain bounce's body (for finding addresses in
	// it), "" otherwise.
	Text string
	// OriginalMessageID is the Message-ID of the returned original (its
	// headers included in the report), "" when not included.
	OriginalMessageID string
}

// ErrMalformed is wrapped by errors of mail that cannot be read at all.
var ErrMalformed = errors.New("malformed mail")

// maxPart bounds what is read of one MIME part.
const maxPart = 256 << 10

// Parse reads one mail.
func Parse(raw []byte) (Report, error) {
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return Report{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	ct := m.Header.Get("Content-Type")
	mt, params, _ := mime.ParseMediaType(ct)
	rt := ""
	if mt == "multipart/report" {
		rt = strings.ToLower(params["report-type"])
	}
	body, err := io.ReadAll(m.Body)
	if err != nil {
		return Report{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	var p parts
	p.walk(ct, m.Header.Get("Content-Transfer-Encoding"), bytes.NewReader(body), 0)
	base := Report{}
	if p.original != nil {
		base.OriginalMessageID = strings.TrimSpace(p.original.Get("Message-Id"))
	}
	dsnType := rt == "delivery-status" || rt == "global-delivery-status" || rt == ""
	switch {
	case p.status != nil && dsnType:
		if r, err := parseDSN(base, p.status, p.text); err == nil {
			return r, nil
		}
	case p.feedback != nil && (rt == "feedback-report" || rt == ""):
		if r, err := parseARF(base, p.feedback, p.original); err == nil {
			return r, nil
		}
	}
	// A bounce before an auto-reply: MTAs mark their bounces Auto-Submitted
	// too (Exim: auto-replied), and a bounce is no out-of-office message.
	if plainBounce(m.Header) || mt == "multipart/report" && rt != "" && dsnType {
		text := p.text
		if text == "" && p.broken {
			text = string(body[:min(len(body), maxText)])
		}
		text = explanation(text)
		// A report whose MIME is broken, or a plain bounce that quotes a
		// DSN's fields: read them where they are.
		if st := embeddedStatus(text); st != nil {
			if r, err := parseDSN(base, st, ""); err == nil && r.failed() {
				return r, nil
			}
		}
		return parsePlainBounce(base, raw, text), nil
	}
	if autoReply(m.Header) {
		return Report{Kind: AutoReply, ID: digest(raw)}, nil
	}
	return Report{Kind: Other, ID: digest(raw)}, nil
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// maxText bounds the human-readable text kept of a mail.
const maxText = 64 << 10

// parts is what walk finds in a mail's MIME tree.
type parts struct {
	// status and feedback are the first message/delivery-status and
	// message/feedback-report parts, decoded.
	status, feedback []byte
	// original is the header of the returned message (message/rfc822 or
	// its headers alone).
	original textproto.MIMEHeader
	// text is the first text/plain part, decoded (its charset is not).
	text string
	// broken: a multipart could not be read to its end (truncated mail, a
	// broken boundary).
	broken bool
	n      int // parts seen
}

// walk reads a part of type ct with transfer encoding cte: multiparts of
// any subtype (a DSN may come in multipart/mixed), never into a returned
// message (it could be a report itself), depth and part count bounded.
func (p *parts) walk(ct, cte string, body io.Reader, depth int) {
	p.n++
	mt, params, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil && !strings.HasPrefix(strings.ToLower(ct), "multipart/") {
		mt = "text/plain"
	}
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		if params["boundary"] == "" || depth >= 4 {
			p.broken = true
			return
		}
		mr := multipart.NewReader(body, params["boundary"])
		for i := 0; p.n < 64; i++ {
			part, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				// No part at all: the boundary is not the one declared.
				p.broken = p.broken || i == 0
				return
			}
			if err != nil {
				// Truncated (the inbound service keeps only the start of
				// large mail) or broken after the parts that matter: use
				// what we have.
				p.broken = true
				return
			}
			p.walk(part.Header.Get("Content-Type"), part.Header.Get("Content-Transfer-Encoding"), part, depth+1)
		}
	case mt == "message/delivery-status" || mt == "message/global-delivery-status":
		if p.status == nil {
			p.status = read(body, cte)
		}
	case mt == "message/feedback-report":
		if p.feedback == nil {
			p.feedback = read(body, cte)
		}
	case mt == "message/rfc822" || mt == "text/rfc822-headers" || mt == "message/rfc822-headers" ||
		mt == "message/global" || mt == "message/global-headers":
		if p.original == nil {
			b := read(body, cte)
			if h, _ := textproto.NewReader(bufio.NewReader(bytes.NewReader(b))).ReadMIMEHeader(); len(h) > 0 {
				p.original = h // headers only partly there: what there is
			}
		}
	case mt == "text/plain":
		if p.text == "" {
			p.text = string(read(body, cte))
		}
	}
}

// read reads a part (at most maxPart), decoding base64 and quoted-printable
// (which a multipart.Part has already decoded, dropping the header); a part
// cut short gives what was read.
func read(r io.Reader, cte string) []byte {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, newlineStripper{r})
	case "quoted-printable":
		r = quotedprintable.NewReader(r)
	}
	b, _ := io.ReadAll(io.LimitReader(r, maxPart))
	return b
}

// newlineStripper drops CR and LF, for base64.NewDecoder.
type newlineStripper struct{ r io.Reader }

func (n newlineStripper) Read(p []byte) (int, error) {
	k, err := n.r.Read(p)
	j := 0
	for _, c := range p[:k] {
		if c != '\r' && c != '\n' {
			p[j] = c
			j++
		}
	}
	return j, err
}

// fieldGroups reads the groups of header-style fields of a
// message/delivery-status or message/feedback-report part, separated by
// blank lines. It forgives what real reports get wrong: blank lines before
// the first group or between groups, bare LF, and continuation lines of a
// multi-line reply left unindented (they join the field before).
func fieldGroups(b []byte) []textproto.MIMEHeader {
	var (
		out  []textproto.MIMEHeader
		cur  textproto.MIMEHeader
		last string
	)
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			if cur != nil {
				out = append(out, cur)
			}
			cur, last = nil, ""
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if line[0] != ' ' && line[0] != '\t' && ok && fieldName(name) {
			if cur == nil {
				cur = textproto.MIMEHeader{}
			}
			last = textproto.CanonicalMIMEHeaderKey(name)
			cur[last] = append(cur[last], strings.TrimSpace(value))
			continue
		}
		if last != "" {
			vs := cur[last]
			vs[len(vs)-1] += " " + strings.TrimSpace(line)
		}
	}
	if cur != nil {
		out = append(out, cur)
	}
	return out
}

// fieldName reports whether s is a header field name (RFC 5322 §3.6.8).
func fieldName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// typedAddress is the address of "rfc822; jane@example.org" (RFC 3464
// address-type; address), angle brackets dropped.
func typedAddress(v string) string {
	if _, a, ok := strings.Cut(v, ";"); ok {
		v = a
	}
	return strings.Trim(strings.TrimSpace(v), "<>")
}

// parseDSN reads the field groups of a delivery-status; text is the
// report's human-readable part, heard for a lone failed recipient whose
// fields say nothing specific.
func parseDSN(r Report, status []byte, text string) (Report, error) {
	r.Kind, r.ID = DSN, digest(status)
	groups := fieldGroups(status)
	if len(groups) == 0 {
		return Report{}, fmt.Errorf("%w: empty delivery-status", ErrMalformed)
	}
	r.ReportingMTA = typedAddress(groups[0].Get("Reporting-Mta"))
	var failing []int
	for _, g := range groups {
		final, original := typedAddress(g.Get("Final-Recipient")), typedAddress(g.Get("Original-Recipient"))
		if final == "" {
			// Final-Recipient is required, yet some MTAs write only the
			// Original-Recipient; neither: the per-message group.
			final = original
		}
		if final == "" {
			continue
		}
		rc := Recipient{
			Final:      final,
			Original:   original,
			Action:     strings.ToLower(strings.TrimSpace(g.Get("Action"))),
			Status:     strings.TrimSpace(g.Get("Status")),
			Diagnostic: strings.Join(strings.Fields(g.Get("Diagnostic-Code")), " "),
		}
		if !success(rc) {
			failing = append(failing, len(r.Recipients))
		}
		r.Recipients = append(r.Recipients, rc)
	}
	text = explanation(text)
	context := ""
	if len(failing) == 1 {
		context = text
	}
	for _, i := range failing {
		rc := &r.Recipients[i]
		if rc.Diagnostic == "" {
			// No Diagnostic-Code (OpenSMTPD, Exim's local failures): the
			// line of the text that names the recipient with a code.
			rc.Diagnostic = lineAbout(text, rc.Final)
		}
		rc.Class = bounce.Classify(bounce.Report{Action: rc.Action, Status: rc.Status, Diagnostic: rc.Diagnostic, Context: context})
	}
	return r, nil
}

// lineAbout is the line of text that names addr and carries an SMTP code,
// with the lines that continue it, "" when there is none.
func lineAbout(text, addr string) string {
	if addr == "" {
		return ""
	}
	addr = strings.ToLower(addr)
	for _, loc := range codeLine.FindAllStringIndex(text, -1) {
		if strings.Contains(strings.ToLower(text[loc[0]:loc[1]]), addr) {
			return withContinuation(text, loc)
		}
	}
	return ""
}

// withContinuation is the line at loc of text and the non-blank lines
// after it (a reply that goes on), at most four, white space collapsed.
func withContinuation(text string, loc []int) string {
	end := loc[1]
	for n := 0; n < 3 && end < len(text); n++ {
		next := strings.IndexByte(text[end+1:], '\n')
		line := text[end+1:]
		if next >= 0 {
			line = line[:next]
		}
		if strings.TrimSpace(line) == "" || returned.MatchString(line) ||
			codeLine.MatchString(line) && !replyLine.MatchString(line) {
			// A blank line, the returned message, or the next recipient's
			// line (a reply's own next line starts with its code).
			break
		}
		end += 1 + len(line)
	}
	return strings.Join(strings.Fields(text[loc[0]:end]), " ")
}

// success reports whether a DSN recipient is no failure: delivered,
// relayed, expanded (RFC 3464 §2.3.3), "deliverable" (Sendmail's answer to
// a verification) or a 2.x.x status.
func success(rc Recipient) bool {
	switch rc.Action {
	case "delivered", "relayed", "expanded", "deliverable":
		return true
	}
	return bounce.ParseCode(rc.Status).Class == "2"
}

// failed reports whether the report names a failed recipient.
func (r Report) failed() bool {
	for _, rc := range r.Recipients {
		if rc.Class != "" {
			return true
		}
	}
	return false
}

// complaintTypes are the ARF Feedback-Types that are a recipient's complaint
// (RFC 5965 §7.3), and opt-out (the ARF drafts' unsubscribe request, still
// sent by some reporters): the recipient asked for no more. not-spam (RFC
// 6430) and auth-failure (RFC 6591) are not.
var complaintTypes = map[string]bool{"abuse": true, "fraud": true, "virus": true, "other": true, "opt-out": true}

func parseARF(r Report, feedback []byte, original textproto.MIMEHeader) (Report, error) {
	r.Kind, r.ID = ARF, digest(feedback)
	groups := fieldGroups(feedback)
	if len(groups) == 0 {
		return Report{}, fmt.Errorf("%w: empty feedback-report", ErrMalformed)
	}
	g := groups[0]
	typ := strings.ToLower(strings.TrimSpace(g.Get("Feedback-Type")))
	r.ReportingMTA = strings.TrimSpace(g.Get("User-Agent"))
	class := bounce.Class("")
	if complaintTypes[typ] {
		class = bounce.Complaint
	}
	for _, v := range g.Values("Original-Rcpt-To") {
		r.Recipients = append(r.Recipients, Recipient{Final: typedAddress(v), Action: typ, Class: class})
	}
	if len(r.Recipients) == 0 && original != nil {
		// No Original-Rcpt-To: the original's To and Cc, when the reporter
		// did not redact them.
		for _, h := range []string{"To", "Cc"} {
			if list, err := mail.ParseAddressList(original.Get(h)); err == nil {
				for _, a := range list {
					r.Recipients = append(r.Recipients, Recipient{Final: a.Address, Action: typ, Class: class})
				}
			}
		}
	}
	if len(r.Recipients) == 0 {
		// The report names nobody: the address it came to may say who
		// (a VERP address bound to one recipient).
		r.Recipients = append(r.Recipients, Recipient{Action: typ, Class: class})
	}
	return r, nil
}

// autoReplySubject matches the subjects of common out-of-office replies.
var autoReplySubject = regexp.MustCompile(`(?i)^\s*(out of (the )?office|automatic reply|auto(matic)?[- ]?(reply|response)|auto:|abwesenheitsnotiz|réponse automatique|respuesta automática|risposta automatica|i am out of|on vacation|vacation reply)`)

// autoReply reports whether h is an automatic reply's (RFC 3834, and what
// Exchange, Gmail and vacation(1) add).
func autoReply(h mail.Header) bool {
	as := strings.ToLower(strings.TrimSpace(h.Get("Auto-Submitted")))
	if strings.HasPrefix(as, "auto-replied") {
		return true
	}
	if h.Get("X-Autoreply") != "" || h.Get("X-Autorespond") != "" || h.Get("X-Autoresponder") != "" {
		return true
	}
	switch strings.ToLower(strings.TrimSpace(h.Get("Precedence"))) {
	case "auto_reply", "autoreply":
		return true
	}
	if strings.Contains(strings.ToLower(h.Get("X-Auto-Response-Suppress")), "oof") && as == "auto-generated" {
		return true
	}
	subj := h.Get("Subject")
	if dec, err := new(mime.WordDecoder).DecodeHeader(subj); err == nil {
		subj = dec
	}
	return autoReplySubject.MatchString(subj)
}

// bounceFrom and bounceSubject match what plain-text bounces are sent as.
var (
	bounceFrom    = regexp.MustCompile(`(?i)(mailer-daemon|post_?master|mail delivery (subsystem|system))`)
	bounceSubject = regexp.MustCompile(`(?i)(undeliver|delivery (status notification|failure|has failed)|failure notice|returned mail|mail delivery failed|could not be delivered|delivery problem|non[- ]?delivery)`)
	// codeLine finds a line with an SMTP reply ("550 ", "550-", "550:") or
	// an enhanced status code.
	codeLine = regexp.MustCompile(`(?m)^.*\b([45]\d\d[ :-]|[45]\.\d{1,3}\.\d{1,3}\b).*$`)
	// returned finds where a bounce's explanation ends and the returned
	// message begins: a separator naming it, or the returned headers.
	returned = regexp.MustCompile(`(?im)^[ \t]*(?:-{2,}.*(?:original message|copy of|returned message|message follows|headers follow|undelivered message|original text|returned mail).*|original message follows.*|below this line is a copy.*|(?:received|return-path|dkim-signature|x-received|authentication-results)[ \t]*:.*)$`)
	// replyLine is a line of a multi-line SMTP reply ("550-5.1.1 ...").
	replyLine = regexp.MustCompile(`^[ \t]*[245]\d\d[ -]`)
	// dsnField finds the first field of a delivery-status quoted in text.
	dsnField = regexp.MustCompile(`(?im)^[ \t]*(?:reporting-mta|original-recipient|final-recipient)[ \t]*:`)
	// boundaryLine ends a delivery-status quoted in text.
	boundaryLine = regexp.MustCompile(`(?m)^[ \t]*--\S`)
)

// plainBounce reports whether h is a bounce's: from a mailer-daemon or
// postmaster, a bounce's subject, or Exim's X-Failed-Recipients.
func plainBounce(h mail.Header) bool {
	return bounceFrom.MatchString(h.Get("From")) || bounceSubject.MatchString(h.Get("Subject")) ||
		h.Get("X-Failed-Recipients") != ""
}

// explanation is a bounce's text up to the returned message.
func explanation(text string) string {
	if loc := returned.FindStringIndex(text); loc != nil {
		text = text[:loc[0]]
	}
	return text
}

// embeddedStatus is the delivery-status fields quoted in a bounce's text
// (a report whose MIME boundary is broken, an MTA that writes them inline),
// nil when there are none.
func embeddedStatus(text string) []byte {
	loc := dsnField.FindStringIndex(text)
	if loc == nil {
		return nil
	}
	text = text[loc[0]:]
	if end := boundaryLine.FindStringIndex(text); end != nil {
		text = text[:end[0]]
	}
	if !strings.Contains(strings.ToLower(text), "final-recipient") {
		return nil
	}
	return []byte(text)
}

// parsePlainBounce classifies a bounce without a delivery-status part from
// the first line of its explanation that carries an SMTP code, the rest of
// the explanation heard when that line says nothing specific (or from the
// explanation alone when no line has a code); its recipient is whoever the
// bounce address or the text names (the caller decides).
func parsePlainBounce(base Report, raw []byte, text string) Report {
	diag := ""
	if loc := codeLine.FindStringIndex(text); loc != nil {
		diag = withContinuation(text, loc)
	}
	context := strings.Join(strings.Fields(text), " ")
	if len(context) > 2000 {
		context = context[:2000]
	}
	cls := bounce.Classify(bounce.Report{Action: "failed", Diagnostic: diag, Context: context})
	if diag == "" {
		// No code: the words of the body decide, failed by default.
		diag = context
		if len(diag) > 500 {
			diag = diag[:500]
		}
		cls = bounce.Classify(bounce.Report{Action: "failed", Diagnostic: context})
	}
	base.Kind, base.ID, base.Text = PlainBounce, digest(raw), text
	base.Recipients = []Recipient{{Action: "failed", Diagnostic: diag, Class: cls}}
	return base
}
