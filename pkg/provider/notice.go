package provider

import "time"

// Notice is one asynchronous report of a provider about a message it accepted
// (SES: an event that SNS delivers), as the kind's FeedbackParser reads it.
type Notice struct {
	// Event is the provider's own name of the report ("Delivery", "Bounce",
	// ...), for logs.
	Event string
	// ProviderMessageID is the provider's id of the message (Outcome.MessageID).
	ProviderMessageID string
	// MessageID is our message id as the provider echoes it back (a message
	// tag), "" when it does not. It is public (in the Message-ID header): for
	// logs only, never to find the message a report is about.
	MessageID string
	// SenderAccount is the provider account that sent the message as the
	// report names it (SES: mail.sendingAccountId), "" when it does not.
	SenderAccount string
	// SentAt is when the provider accepted the message; zero when unknown.
	SentAt time.Time
	// OccurredAt is when the reported event happened; zero when unknown.
	OccurredAt time.Time
	// Recipients is what the report says per recipient (addresses as the
	// provider wrote them); empty when it says nothing to record.
	Recipients []Feedback
}

// FeedbackParser reads one notification of a provider (its payload, e.g. the
// Message of an SNS notification). An error means the payload is not a
// notification of the kind at all.
type FeedbackParser func(payload []byte) (Notice, error)
