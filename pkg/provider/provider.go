// Package provider is the seam between the worker and the services that deliver
// mail (smtp, ses, gmail, sandbox): one small interface that takes a built
// delivery and returns an outcome as a value.
package provider

import (
	"context"
	"encoding/json"
	"time"

	"github.com/namirasoft/email-sender/pkg/mime"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
)

// Config is one provider configuration of an account, as the worker loads it.
type Config struct {
	ID        string
	AccountID string
	Kind      string // smtp, ses, gmail, sandbox
	// Settings are the non-secret settings (JSON object).
	Settings json.RawMessage
	// Secret is the decrypted secret settings (JSON object), nil when none.
	Secret json.RawMessage
	// Version changes whenever the configuration changes; senders key their
	// connection pools by (ID, Version).
	Version time.Time
	// BounceDomain is the account's own verified bounce domain
	// (pkg/bouncedomain), "" when it has none: SMTP sends sign their VERP
	// envelope senders there instead of at the operator's BOUNCE_DOMAIN.
	BounceDomain string
}

// Delivery is one attempt to hand a message to a provider.
type Delivery struct {
	Job     *queuev1.SendJob
	Attempt int
	// Recipients is the envelope: every to/cc/bcc address (lower-cased) minus the
	// suppressed ones. Never empty.
	Recipients []string
	Config     Config
}

// Class says what an outcome means for the message.
type Class int

const (
	// Sent: the provider accepted the message.
	Sent Class = iota + 1
	// Transient: try again later (network, timeouts, 4xx, throttling).
	Transient
	// Permanent: never retry (5xx, rejected, invalid recipient).
	Permanent
	// Ambiguous: the message data reached the provider but its answer did not come
	// back; it may or may not have been accepted.
	Ambiguous
	// Credentials: authentication failed; the message fails and the provider
	// configuration is marked unhealthy.
	Credentials
)

func (c Class) String() string {
	switch c {
	case Sent:
		return "sent"
	case Transient:
		return "transient"
	case Permanent:
		return "permanent"
	case Ambiguous:
		return "ambiguous"
	case Credentials:
		return "auth"
	}
	return "unknown"
}

// Feedback is a report about one recipient (DELIVERED, BOUNCED, COMPLAINED):
// one a provider knows at send time (the sandbox uses it to simulate what real
// providers report asynchronously), or one of a later Notice.
type Feedback struct {
	Recipient string
	Type      string // "DELIVERED", "BOUNCED", "COMPLAINED"
	Detail    string
	// Response is the provider's or receiving server's answer, e.g. a
	// bounce's diagnostic code.
	Response string
	// Class classifies a bounce ("hard_bounce", "soft_bounce"), "" otherwise.
	Class string
	// Suppress is the reason the address is to be suppressed in the account
	// ("bounce", "complaint"), "" when it is not.
	Suppress string
}

// Outcome is the result of one attempt.
type Outcome struct {
	Class Class
	// Response is the provider's own answer, e.g. "250 2.0.0 Ok: queued as 4F1C2".
	Response string
	// MessageID is the provider's id for the message, when it gives one.
	MessageID string
	// RetryAfter is the provider's hint for Transient outcomes (0: use backoff).
	RetryAfter time.Duration
	// Err is the error behind a non-Sent outcome; its text must not contain secrets.
	Err error
	// Rejected lists recipients the provider refused while accepting the others
	// (address -> provider answer). Only with Class Sent.
	Rejected map[string]string
	Feedback []Feedback
}

// Sender delivers messages through one kind of provider. Send must be safe for
// concurrent use and must honour ctx; it never panics on bad input.
type Sender interface {
	Send(ctx context.Context, d *Delivery) Outcome
}

// Verifier is implemented by senders that can check a configuration without
// sending anything (log in and quit).
type Verifier interface {
	Verify(ctx context.Context, cfg Config) error
}

// MIMEOptions are the pkg/mime options of the message d carries: its id as the
// Message-ID (on domain, or the sender's domain when empty) and its acceptance
// time as the Date.
func (d *Delivery) MIMEOptions(domain string) mime.Options {
	o := mime.Options{MessageID: d.Job.GetMessageId(), Domain: domain}
	if at := d.Job.GetAcceptedAt(); at != nil {
		o.Date = at.AsTime()
	}
	return o
}
