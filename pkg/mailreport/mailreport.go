// Package mailreport reads the reports that come back by mail to a bounce
// address: delivery status notifications (RFC 3464 multipart/report;
// report-type=delivery-status, and RFC 6533's global form), abuse reports
// (ARF, RFC 5965 report-type=feedback-report), automatic replies (RFC 3834
// Auto-Submitted and the usual vendor headers) and, for MTAs that still send
// them, bounces in plain text (qmail, old Exchange), read heuristically.
// Every recipient a report names gets its pkg/bounce class.
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
	mt, params, _ := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if mt == "multipart/report" && params["boundary"] != "" {
		rt := strings.ToLower(params["report-type"])
		r, err := parseReport(m.Body, params["boundary"], rt)
		if err == nil && r.Kind != "" {
			return r, nil
		}
		// A report we cannot read: treat it as plain text below.
	}
	if autoReply(m.Header) {
		return Report{Kind: AutoReply, ID: digest(raw)}, nil
	}
	if plainBounce(m.Header) {
		return parsePlainBounce(m, raw)
	}
	return Report{Kind: Other, ID: digest(raw)}, nil
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// parseReport reads the parts of a multipart/report.
func parseReport(body io.Reader, boundary, reportType string) (Report, error) {
	mr := multipart.NewReader(body, boundary)
	var (
		r        Report
		status   []byte
		feedback []byte
		original textproto.MIMEHeader
	)
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// Truncated (the inbound service keeps only the start of large
			// mail) or broken after the parts that matter: use what we have.
			if status != nil || feedback != nil {
				break
			}
			return Report{}, err
		}
		pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		switch pt {
		case "message/delivery-status", "message/global-delivery-status":
			status, err = readPart(p)
		case "message/feedback-report":
			feedback, err = readPart(p)
		case "message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers":
			var b []byte
			if b, err = readPart(p); err == nil {
				if h, herr := textproto.NewReader(bufio.NewReader(bytes.NewReader(b))).ReadMIMEHeader(); len(h) > 0 {
					original = h
				} else if herr != nil {
					err = nil // headers only partly there: no original
				}
			}
		default:
			_, err = io.Copy(io.Discard, io.LimitReader(p, maxPart))
		}
		if err != nil && status == nil && feedback == nil {
			return Report{}, err
		}
	}
	if original != nil {
		r.OriginalMessageID = strings.TrimSpace(original.Get("Message-Id"))
	}
	switch {
	case status != nil && (reportType == "delivery-status" || reportType == "global-delivery-status" || reportType == ""):
		return parseDSN(r, status)
	case feedback != nil && (reportType == "feedback-report" || reportType == ""):
		return parseARF(r, feedback, original)
	}
	return Report{}, nil
}

// readPart reads a part, decoding base64 (quoted-printable the multipart
// reader decodes itself).
func readPart(p *multipart.Part) ([]byte, error) {
	var rd io.Reader = p
	switch strings.ToLower(strings.TrimSpace(p.Header.Get("Content-Transfer-Encoding"))) {
	case "base64":
		rd = base64.NewDecoder(base64.StdEncoding, newlineStripper{p})
	case "quoted-printable":
		rd = quotedprintable.NewReader(p)
	}
	b, err := io.ReadAll(io.LimitReader(rd, maxPart))
	if err != nil && len(b) == 0 {
		return nil, err
	}
	return b, nil
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
// blank lines.
func fieldGroups(b []byte) []textproto.MIMEHeader {
	// Some MTAs put blank lines before the first group, or use bare LF.
	tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(bytes.TrimLeft(b, "\r\n \t"))))
	var out []textproto.MIMEHeader
	for {
		h, err := tr.ReadMIMEHeader()
		if len(h) > 0 {
			out = append(out, h)
		}
		if err != nil {
			return out
		}
		// Skip extra blank lines between groups.
		for {
			peek, perr := tr.R.Peek(1)
			if perr != nil || (peek[0] != '\n' && peek[0] != '\r') {
				break
			}
			_, _ = tr.R.ReadByte()
		}
	}
}

// typedAddress is the address of "rfc822; jane@example.org" (RFC 3464
// address-type; address), angle brackets dropped.
func typedAddress(v string) string {
	if _, a, ok := strings.Cut(v, ";"); ok {
		v = a
	}
	return strings.Trim(strings.TrimSpace(v), "<>")
}

func parseDSN(r Report, status []byte) (Report, error) {
	r.Kind, r.ID = DSN, digest(status)
	groups := fieldGroups(status)
	if len(groups) == 0 {
		return Report{}, fmt.Errorf("%w: empty delivery-status", ErrMalformed)
	}
	r.ReportingMTA = typedAddress(groups[0].Get("Reporting-Mta"))
	for _, g := range groups {
		final := typedAddress(g.Get("Final-Recipient"))
		if final == "" {
			continue // the per-message group
		}
		rc := Recipient{
			Final:      final,
			Original:   typedAddress(g.Get("Original-Recipient")),
			Action:     strings.ToLower(strings.TrimSpace(g.Get("Action"))),
			Status:     strings.TrimSpace(g.Get("Status")),
			Diagnostic: strings.Join(strings.Fields(g.Get("Diagnostic-Code")), " "),
		}
		switch rc.Action {
		case "delivered", "relayed", "expanded":
			// Not a failure: nothing to classify.
		default:
			rc.Class = bounce.Classify(bounce.Report{Action: rc.Action, Status: rc.Status, Diagnostic: rc.Diagnostic})
		}
		r.Recipients = append(r.Recipients, rc)
	}
	return r, nil
}

// complaintTypes are the ARF Feedback-Types that are a recipient's complaint
// (RFC 5965 §7.3); not-spam (RFC 6430) and auth-failure (RFC 6591) are not.
var complaintTypes = map[string]bool{"abuse": true, "fraud": true, "virus": true, "other": true}

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
	bounceFrom    = regexp.MustCompile(`(?i)(mailer-daemon|postmaster|mail delivery (subsystem|system))`)
	bounceSubject = regexp.MustCompile(`(?i)(undeliver|delivery (status notification|failure|has failed)|failure notice|returned mail|mail delivery failed|could not be delivered|delivery problem)`)
	// codeLine finds a line with an SMTP reply or enhanced status code.
	codeLine = regexp.MustCompile(`(?m)^.*\b([45]\d\d[ -]|[45]\.\d{1,3}\.\d{1,3}\b).*$`)
)

func plainBounce(h mail.Header) bool {
	return bounceFrom.MatchString(h.Get("From")) || bounceSubject.MatchString(h.Get("Subject"))
}

// parsePlainBounce classifies a bounce without a delivery-status part from
// the first line of its body that carries an SMTP code (or the whole start
// of the body); its recipient is whoever the bounce address or the text
// names (the caller decides).
func parsePlainBounce(m *mail.Message, raw []byte) (Report, error) {
	body, _ := io.ReadAll(io.LimitReader(m.Body, 64<<10))
	text := string(body)
	diag := strings.Join(strings.Fields(codeLine.FindString(text)), " ")
	cls := bounce.Classify(bounce.Report{Action: "failed", Diagnostic: diag})
	if diag == "" {
		// No code: the words of the body decide, failed by default.
		diag = strings.Join(strings.Fields(text), " ")
		if len(diag) > 500 {
			diag = diag[:500]
		}
		cls = bounce.Classify(bounce.Report{Action: "failed", Diagnostic: diag})
	}
	return Report{Kind: PlainBounce, ID: digest(raw), Text: text,
		Recipients: []Recipient{{Action: "failed", Diagnostic: diag, Class: cls}}}, nil
}
