package gmailtest

import (
	"fmt"
	"strings"
	"time"
)

// Bounce describes a delivery status notification Gmail puts in the sending
// mailbox when a message it accepted could not be delivered.
type Bounce struct {
	// Failed are the recipients that failed (X-Failed-Recipients, one DSN
	// recipient block each).
	Failed []string
	// Heading is the first line of the human-readable part, as Gmail words
	// it: "Address not found" (default), "Message blocked", "Message not
	// delivered".
	Heading string
	// Status is the DSN Status (default "5.1.1"); Diagnostic the remote
	// server's answer (default Gmail's "550 5.1.1 The email account that you
	// tried to reach does not exist.").
	Status, Diagnostic string
	// Delay makes a "Delivery Status Notification (Delay)": Gmail is still
	// trying; it has no X-Failed-Recipients.
	Delay bool
}

// BounceOf is the notice Gmail sends to the mailbox about sent, a message
// the API accepted: from mailer-daemon@googlemail.com, "Delivery Status
// Notification (Failure)", X-Failed-Recipients, In-Reply-To and References
// naming the message's Message-ID (so Gmail threads it with it), and a
// multipart/report with the text, the message/delivery-status part and the
// returned headers.
func (s *Server) BounceOf(sent Message, b Bounce) []byte {
	if b.Heading == "" {
		b.Heading = "Address not found"
	}
	if b.Status == "" {
		b.Status = "5.1.1"
	}
	if b.Diagnostic == "" {
		b.Diagnostic = "550 5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser"
	}
	orig := messageIDHeader(sent.Raw)
	now := time.Now().UTC().Format(time.RFC1123Z)
	boundary := "000000000000" + randomHex(8)
	subject, action := "Delivery Status Notification (Failure)", "failed"
	if b.Delay {
		subject, action = "Delivery Status Notification (Delay)", "delayed"
	}
	var h strings.Builder
	fmt.Fprintf(&h, "Delivered-To: %s\r\nReturn-Path: <>\r\n", s.opts.Email)
	fmt.Fprintf(&h, "Content-Type: multipart/report; boundary=\"%s\"; report-type=delivery-status\r\n", boundary)
	h.WriteString("From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\r\n")
	fmt.Fprintf(&h, "To: %s\r\nAuto-Submitted: auto-replied\r\nSubject: %s\r\n", s.opts.Email, subject)
	if orig != "" {
		fmt.Fprintf(&h, "References: %s\r\nIn-Reply-To: %s\r\n", orig, orig)
	}
	if !b.Delay && len(b.Failed) > 0 {
		fmt.Fprintf(&h, "X-Failed-Recipients: %s\r\n", strings.Join(b.Failed, ","))
	}
	fmt.Fprintf(&h, "Message-ID: <%s@mx.google.com>\r\nDate: %s\r\nMIME-Version: 1.0\r\n\r\n", randomHex(12), now)

	fmt.Fprintf(&h, "--%s\r\nContent-Type: text/plain; charset=\"UTF-8\"\r\n\r\n", boundary)
	fmt.Fprintf(&h, "** %s **\r\n\r\n", b.Heading)
	for _, r := range b.Failed {
		if b.Delay {
			fmt.Fprintf(&h, "There was a temporary problem delivering your message to %s. Gmail will retry for 46 more hours. You'll be notified if the delivery fails permanently.\r\n\r\n", r)
		} else {
			fmt.Fprintf(&h, "Your message wasn't delivered to %s because the remote server refused it.\r\n\r\n", r)
		}
	}
	fmt.Fprintf(&h, "The response was:\r\n\r\n%s\r\n\r\n", b.Diagnostic)

	fmt.Fprintf(&h, "--%s\r\nContent-Type: message/delivery-status\r\n\r\n", boundary)
	fmt.Fprintf(&h, "Reporting-MTA: dns; googlemail.com\r\nArrival-Date: %s\r\n", now)
	if orig != "" {
		fmt.Fprintf(&h, "X-Original-Message-ID: %s\r\n", orig)
	}
	for _, r := range b.Failed {
		fmt.Fprintf(&h, "\r\nFinal-Recipient: rfc822; %s\r\nAction: %s\r\nStatus: %s\r\n", r, action, b.Status)
		fmt.Fprintf(&h, "Remote-MTA: dns; mx.example.org. (192.0.2.25, the server for the domain.)\r\n")
		fmt.Fprintf(&h, "Diagnostic-Code: smtp; %s\r\nLast-Attempt-Date: %s\r\n", b.Diagnostic, now)
	}
	fmt.Fprintf(&h, "\r\n--%s\r\nContent-Type: message/rfc822-headers\r\n\r\n", boundary)
	delivered := string(sent.Delivered())
	if end := strings.Index(delivered, "\r\n\r\n"); end >= 0 {
		h.WriteString(delivered[:end+2])
	}
	fmt.Fprintf(&h, "\r\n--%s--\r\n", boundary)
	return []byte(h.String())
}
