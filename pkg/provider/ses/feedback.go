package ses

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

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
// Bounce is BOUNCED, suppressing the address ("bounce") when it is permanent
// (hard) and not when it is transient or undetermined (soft); a Complaint is
// COMPLAINED, suppressing the address ("complaint"). Other events have no
// recipients.
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
		hard := b.BounceType == "Permanent"
		for _, r := range b.BouncedRecipients {
			f := provider.Feedback{Recipient: r.EmailAddress, Type: bounced, Response: r.DiagnosticCode}
			if hard {
				f.Class, f.Suppress = "hard_bounce", "bounce"
				f.Detail = fmt.Sprintf("hard bounce (%s/%s): address suppressed", b.BounceType, b.BounceSubType)
			} else {
				// Transient (mailbox full, message too large, ...) or
				// Undetermined: this message bounced, the address may work later.
				f.Class = "soft_bounce"
				f.Detail = fmt.Sprintf("soft bounce (%s/%s): not suppressed", b.BounceType, b.BounceSubType)
			}
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
				Detail: detail, Suppress: "complaint"})
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
