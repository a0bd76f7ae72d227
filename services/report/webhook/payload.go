package webhook

import (
	_ "embed"
	"encoding/json"
	"slices"
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
// (ATTEMPT_STARTED, ATTEMPT_INTERRUPTED, WEBHOOK_DISABLED) are not delivered,
// except the account-level ones of AccountTypes.
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

// MessageTypeNames are the names of the message event types (Types): an
// endpoint whose filter names no type gets all of these.
var MessageTypeNames = []string{"accepted", "sent", "delivered", "bounced", "complained", "failed", "suppressed", "canceled", "retrying"}

// AccountTypes maps the account-level events, about the account rather than
// a message (the reputation guard's crossings of a provider configuration),
// to their webhook event type names. They go only to endpoints that name
// them in their filter: an endpoint with no type filter keeps getting the
// message events alone, and tag filters (tags are a message's) do not apply
// to them. The payload's type is the name with a dot ("reputation.paused")
// and its data is ReputationData.
var AccountTypes = map[string]string{
	queue.EventReputationWarning:   "reputation_warning",
	queue.EventReputationPaused:    "reputation_paused",
	queue.EventReputationRecovered: "reputation_recovered",
	queue.EventReputationResumed:   "reputation_resumed",
}

// AccountTypeNames are AccountTypes' names, in the order they are listed.
var AccountTypeNames = []string{"reputation_warning", "reputation_paused", "reputation_recovered", "reputation_resumed"}

// TypeNames are the names endpoints may filter on.
var TypeNames = append(slices.Clip(MessageTypeNames), AccountTypeNames...)

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

// ReputationPayload is what is posted for an account-level event of the
// reputation guard (AccountTypes): one per event, with no message or
// recipient.
type ReputationPayload struct {
	Version   int            `json:"version"`
	Type      string         `json:"type"`
	Timestamp time.Time      `json:"timestamp"`
	Data      ReputationData `json:"data"`
}

// ReputationData is a reputation event: which provider configuration, the
// level it reached and the window's counts and rates the guard assessed
// (zero on reputation.resumed: the counts start afresh).
type ReputationData struct {
	EventID string `json:"event_id"`
	// Event is the event's own type (REPUTATION_PAUSED, ...).
	Event      string    `json:"event"`
	OccurredAt time.Time `json:"occurred_at"`
	ProviderID string    `json:"provider_id"`
	// Level is "ok", "warning" or "paused".
	Level         string  `json:"level"`
	Sends         int64   `json:"sends"`
	Bounces       int64   `json:"bounces"`
	Complaints    int64   `json:"complaints"`
	BounceRate    float64 `json:"bounce_rate"`
	ComplaintRate float64 `json:"complaint_rate"`
	// WindowSeconds is the rolling window (REPUTATION_WINDOW); 0 on
	// reputation.resumed.
	WindowSeconds int64  `json:"window_seconds"`
	Detail        string `json:"detail"`
}

// Encode is the JSON body of p.
func (p ReputationPayload) Encode() ([]byte, error) {
	p.Version = PayloadVersion
	return json.Marshal(p)
}

// Encode is the JSON body of p.
func (p Payload) Encode() ([]byte, error) {
	if p.Data.Tags == nil {
		p.Data.Tags = map[string]string{}
	}
	p.Version = PayloadVersion
	return json.Marshal(p)
}

// typeName is the payload type of an event type name: "message.delivered"
// for a message event, "reputation.paused" for an account-level one.
func typeName(name string) string {
	if slices.Contains(AccountTypeNames, name) {
		return strings.Replace(name, "_", ".", 1)
	}
	return "message." + name
}

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
