// Package sandbox is a provider that delivers nowhere and simulates outcomes
// by recipient address, like the SES mailbox simulator, so the whole pipeline
// can be tried without a provider account.
//
// The local part of each recipient, before any "+tag" and compared without
// regard to case, picks the outcome (the domain does not matter):
//
//	bounce@…      Sent, then feedback BOUNCED
//	complaint@…   Sent, then feedback DELIVERED and COMPLAINED
//	transient@…   Transient on attempts 1 and 2; Sent and DELIVERED from attempt 3
//	reject@…      Permanent (the provider refuses the message)
//	timeout@…     Ambiguous (the answer never came back)
//	anything else Sent, then feedback DELIVERED
//
// So "Bounce+order-42@example.com" bounces. When recipients simulate different
// outcomes, the worst class wins for the message (Credentials, Permanent,
// Ambiguous, Transient, then Sent, in that order) and feedback is given per
// recipient only when the message is Sent.
//
// A Sent outcome has Response "250 sandbox: accepted" and MessageID
// "sandbox-<message id>".
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/namirasoft/email-sender/pkg/provider"
)

// Feedback types, as in provider.Feedback.Type.
const (
	Delivered  = "DELIVERED"
	Bounced    = "BOUNCED"
	Complained = "COMPLAINED"
)

// Sender is the sandbox provider. The zero value is ready; it is safe for
// concurrent use.
type Sender struct{}

var (
	_ provider.Sender   = Sender{}
	_ provider.Verifier = Sender{}
)

// New returns a sandbox sender.
func New() Sender { return Sender{} }

// Verify always succeeds: the sandbox has no credentials.
func (Sender) Verify(ctx context.Context, _ provider.Config) error { return ctx.Err() }

// severity orders classes from best to worst.
var severity = map[provider.Class]int{
	provider.Sent: 0, provider.Transient: 1, provider.Ambiguous: 2, provider.Permanent: 3, provider.Credentials: 4,
}

// Send simulates delivering d.
func (Sender) Send(ctx context.Context, d *provider.Delivery) provider.Outcome {
	if err := ctx.Err(); err != nil {
		return provider.Outcome{Class: provider.Transient, Err: fmt.Errorf("sandbox: %w", err)}
	}
	if d == nil || len(d.Recipients) == 0 {
		return provider.Outcome{Class: provider.Permanent, Err: errors.New("sandbox: no recipients")}
	}
	msgID := ""
	if d.Job != nil {
		msgID = d.Job.GetMessageId()
	}

	worst := provider.Outcome{Class: provider.Sent}
	var feedback []provider.Feedback
	for _, r := range d.Recipients {
		o := simulate(r, d.Attempt)
		if severity[o.Class] > severity[worst.Class] {
			worst = o
		}
		feedback = append(feedback, o.Feedback...)
	}
	if worst.Class != provider.Sent {
		return worst
	}
	return provider.Outcome{
		Class:     provider.Sent,
		Response:  "250 sandbox: accepted",
		MessageID: "sandbox-" + msgID,
		Feedback:  feedback,
	}
}

// Behaviour returns the simulated behaviour of a recipient address: "bounce",
// "complaint", "transient", "reject", "timeout" or "deliver".
func Behaviour(addr string) string {
	local := addr
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		local = addr[:at]
	}
	if plus := strings.IndexByte(local, '+'); plus >= 0 {
		local = local[:plus]
	}
	switch k := strings.ToLower(local); k {
	case "bounce", "complaint", "transient", "reject", "timeout":
		return k
	}
	return "deliver"
}

func simulate(rcpt string, attempt int) provider.Outcome {
	fb := func(types ...string) []provider.Feedback {
		out := make([]provider.Feedback, 0, len(types))
		for _, t := range types {
			out = append(out, provider.Feedback{Recipient: rcpt, Type: t, Detail: "sandbox simulated " + strings.ToLower(t)})
		}
		return out
	}
	switch Behaviour(rcpt) {
	case "bounce":
		return provider.Outcome{Class: provider.Sent, Feedback: fb(Bounced)}
	case "complaint":
		return provider.Outcome{Class: provider.Sent, Feedback: fb(Delivered, Complained)}
	case "transient":
		if attempt < 3 {
			return provider.Outcome{
				Class:    provider.Transient,
				Response: "451 4.3.0 sandbox: simulated transient failure",
				Err:      fmt.Errorf("sandbox: simulated transient failure for %s on attempt %d", rcpt, attempt),
			}
		}
		return provider.Outcome{Class: provider.Sent, Feedback: fb(Delivered)}
	case "reject":
		return provider.Outcome{
			Class:    provider.Permanent,
			Response: "550 5.1.1 sandbox: simulated rejection",
			Err:      fmt.Errorf("sandbox: simulated rejection of %s", rcpt),
		}
	case "timeout":
		return provider.Outcome{
			Class: provider.Ambiguous,
			Err:   fmt.Errorf("sandbox: simulated timeout after data for %s", rcpt),
		}
	}
	return provider.Outcome{Class: provider.Sent, Feedback: fb(Delivered)}
}
