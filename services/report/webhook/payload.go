package webhook

import (
	_ "embed"
	"encoding/json"
	"strings"
	"time"

	"github.com/namirasoft/email-sender/pkg/queue"
)

// SchemaJSON is the JSON Schema of the payloads (version 1), published in
// the README: schema/event.v1.json.
//
//go:embed schema/event.v1.json
var SchemaJSON []byte

// PayloadVersion is the version of the payload format; a breaking change
// makes a new version (and a new schema).
const PayloadVersion = 1

// Types maps the events' types to the webhook event type names endpoints
// filter on (and the payload's type, "message.<name>"). Events not here
// (ATTEMPT_STARTED, ATTEMPT_INTERRUPTED, WEBHOOK_DISABLED) are not delivered.
var Types = map[string]string{
	queue.EventAccepted:   "accepted",
	queue.EventScheduled:  "accepted",
	queue.EventSent:       "sent",
	queue.EventDelivered:  "delivered",
	queue.EventBounced:    "bounced",
	queue.EventComplained: "complained",
	queue.EventFailed:     "failed",
	queue.EventSuppressed: "suppressed",
	queue.EventCanceled:   "canceled",
	queue.EventRetry:      "retrying",
	queue.EventFailover:   "retrying",
}

// TypeNames are the names endpoints may filter on.
var TypeNames = []string{"accepted", "sent", "delivered", "bounced", "complained", "failed", "suppressed", "canceled", "retrying"}

// TestType is the type of SendTestWebhook's event.
const TestType = "webhook.test"

// Payload is what is posted: one event for one recipient.
type Payload struct {
	Version   int       `json:"version"`
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      Data      `json:"data"`
}

// Data is the event.
type Data struct {
	EventID   string `json:"event_id"`
	MessageID string `json:"message_id"`
	Recipient string `json:"recipient"`
	// Status is the status the recipient moved to (MessageStatus name).
	Status string `json:"status"`
	// Event is the event's own type (ACCEPTED, SENT, RETRY_SCHEDULED, ...).
	Event            string            `json:"event"`
	OccurredAt       time.Time         `json:"occurred_at"`
	Attempt          int32             `json:"attempt"`
	ProviderResponse string            `json:"provider_response"`
	ErrorClass       string            `json:"error_class"`
	Detail           string            `json:"detail"`
	RetryAt          *time.Time        `json:"retry_at,omitempty"`
	Tags             map[string]string `json:"tags"`
}

// Encode is the JSON body of p.
func (p Payload) Encode() ([]byte, error) {
	if p.Data.Tags == nil {
		p.Data.Tags = map[string]string{}
	}
	p.Version = PayloadVersion
	return json.Marshal(p)
}

// typeName is the payload type of an event type name ("message.delivered").
func typeName(name string) string { return "message." + name }

// validTypes reports the first unknown name of names.
func validTypes(names []string) (string, bool) {
	for _, n := range names {
		ok := false
		for _, t := range TypeNames {
			if strings.EqualFold(n, t) {
				ok = true
			}
		}
		if !ok {
			return n, false
		}
	}
	return "", true
}
