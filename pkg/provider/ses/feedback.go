package ses

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/namirasoft/email-sender/pkg/bounce"
	"github.com/namirasoft/email-sender/pkg/provider"
)

// Feedback types of the events an SES notification becomes
// (provider.Feedback.Type).
const (
	delivered  = "DELIVERED"
	bounced    = "BOUNCED"
	complained = "COMPLAINED"
)

// event is the part of an SES event (event publishing, "eventType") or
// notification ("notificationType") that feedback uses.
type event struct {
	EventType        string `json:"eventType"`
	NotificationType string `json:"notificationType"`
	Mail             struct {
		MessageID        string              `json:"messageId"`
		Timestamp        string              `json:"timestamp"`
		SendingAccountID string              `json:"sendingAccountId"`
		Tags             map[string][]string `json:"tags"`
	} `json:"mail"`
	Delivery *struct {
		Timestamp    string   `json:"timestamp"`
		Recipients   []string `json:"recipients"`
		SMTPResponse string   `json:"smtpResponse"`
		ReportingMTA string   `json:"reportingMTA"`
	} `json:"delivery"`
	Bounce *struct {
		BounceType        string `json:"bounceType"`
		BounceSubType     string `json:"bounceSubType"`
		Timestamp         string `json:"timestamp"`
		BouncedRecipients []struct {
			EmailAddress   string `json:"emailAddress"`
			Action         string `json:"action"`
			Status         string `json:"status"`
			DiagnosticCode string `json:"diagnosticCode"`
		} `json:"bouncedRecipients"`
	} `json:"bounce"`
	Complaint *struct {
		Timestamp             string `json:"timestamp"`
		ComplaintFeedbackType string `json:"complaintFeedbackType"`
		ComplainedRecipients  []struct {
			EmailAddress string `json:"emailAddress"`
		} `json:"complainedRecipients"`
	} `json:"complaint"`
}

// ParseFeedback reads an SES event (the Message of the SNS notification that
// delivers it) as a provider.FeedbackParser: a Delivery is DELIVERED; a
// Bounce is BOUNCED with its pkg/bounce class (bounce.FromSES): a hard
// bounce suppresses the address ("bounce"), a soft one only after a streak
// (pkg/suppression), a policy block or rejected message never; a Complaint
// is COMPLAINED (class complaint), suppressing the address ("complaint").
// Other events have no recipients.
func ParseFeedback(payload []byte) (provider.Notice, error) {
	var e event
	if err := json.Unmarshal(payload, &e); err != nil {
		return provider.Notice{}, fmt.Errorf("not an SES event: %w", err)
	}
	n := provider.Notice{Event: e.EventType, ProviderMessageID: e.Mail.MessageID, SentAt: parseTime(e.Mail.Timestamp),
		SenderAccount: e.Mail.SendingAccountID}
	if n.Event == "" {
		n.Event = e.NotificationType
	}
	if t := e.Mail.Tags[MessageIDTag]; len(t) > 0 {
		n.MessageID = t[0]
	}
	switch {
	case n.Event == "Delivery" && e.Delivery != nil:
		detail := "delivered (SES)"
		if mta := e.Delivery.ReportingMTA; mta != "" {
			detail = "delivered (SES, " + mta + ")"
		}
		for _, r := range e.Delivery.Recipients {
			n.Recipients = append(n.Recipients, provider.Feedback{Recipient: r, Type: delivered,
				Response: e.Delivery.SMTPResponse, Detail: detail})
		}
		n.OccurredAt = parseTime(e.Delivery.Timestamp)
	case n.Event == "Bounce" && e.Bounce != nil:
		b := e.Bounce
		for _, r := range b.BouncedRecipients {
			// One taxonomy for every provider (pkg/bounce): SES's types where
			// they are specific, the remote server's code and words otherwise.
			class := bounce.FromSES(b.BounceType, b.BounceSubType, r.Status, r.DiagnosticCode)
			f := provider.Feedback{Recipient: r.EmailAddress, Type: bounced, Response: r.DiagnosticCode,
				Class: string(class), Suppress: class.Suppress(),
				Detail: fmt.Sprintf("%s (%s/%s): %s", class.Describe(), b.BounceType, b.BounceSubType, class.Verdict())}
			if f.Response == "" {
				f.Response = strings.TrimSpace(r.Action + " " + r.Status)
			}
			n.Recipients = append(n.Recipients, f)
		}
		n.OccurredAt = parseTime(b.Timestamp)
	case n.Event == "Complaint" && e.Complaint != nil:
		c := e.Complaint
		for _, r := range c.ComplainedRecipients {
			detail := "complaint: address suppressed"
			if c.ComplaintFeedbackType != "" {
				detail = "complaint (" + c.ComplaintFeedbackType + "): address suppressed"
			}
			n.Recipients = append(n.Recipients, provider.Feedback{Recipient: r.EmailAddress, Type: complained,
				Detail: detail, Class: string(bounce.Complaint), Suppress: bounce.Complaint.Suppress()})
		}
		n.OccurredAt = parseTime(c.Timestamp)
	}
	return n, nil
}

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}
