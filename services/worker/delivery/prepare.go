package delivery

import (
	"context"
	"errors"
	"fmt"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/services/worker/attempt"
	"github.com/namirasoft/email-sender/services/worker/sendjob"
	"github.com/namirasoft/email-sender/services/worker/store"
)

// prepare decides whether the message is to be sent at all and builds what
// the provider gets: it ends the job (canceled, attempts exhausted, every
// recipient suppressed, configuration gone) or gives it back (worker
// trouble, failover) and returns false, or returns the delivery and the
// recipients its events concern (nil: all).
func (d *delivery) prepare(ctx context.Context, prev *attempt.Record) (*provider.Delivery, []string, bool) {
	if d.canceled(ctx, prev) || d.exhausted(ctx) {
		return nil, nil, false
	}
	envelope, scope := d.envelope()
	if len(envelope) == 0 {
		d.final(ctx, true) // every recipient is suppressed
		return nil, nil, false
	}
	if !d.loadConfig(ctx, scope) || !d.awaitRate(ctx) || !d.announce(ctx, scope) {
		return nil, nil, false
	}
	return &provider.Delivery{Job: d.job, Attempt: d.attempt, Recipients: envelope, Config: d.config.Config}, scope, true
}

// canceled ends the job of a scheduled message that was canceled since, or
// gives the job back when that cannot be told: true when the job is settled.
func (d *delivery) canceled(ctx context.Context, prev *attempt.Record) bool {
	job := d.job
	if !job.GetScheduled() || prev != nil {
		return false
	}
	canceled, err := d.svc.messages.Canceled(ctx, job.GetAccountId(), job.GetMessageId())
	if err != nil {
		d.trouble(ctx, "check cancellation", err)
		return true
	}
	if canceled {
		d.log.InfoContext(ctx, "scheduled message was canceled; not sending")
		d.final(ctx, true)
	}
	return canceled
}

// exhausted fails the message when its attempts or its time ran out: true
// when the job is settled.
func (d *delivery) exhausted(ctx context.Context) bool {
	svc := d.svc
	accepted := d.job.GetAcceptedAt().AsTime()
	over := d.tries > svc.cfg.MaxAttempts || (!accepted.IsZero() && svc.now().Sub(accepted) > svc.cfg.MaxAge)
	if !over {
		return false
	}
	ev := d.events.Add(queue.EventFailed, msgstatus.Failed, d.attempt, nil, "")
	ev.ErrorClass = "attempts_exhausted"
	ev.Detail = fmt.Sprintf("gave up after %d attempts or %s since acceptance", d.attempt-1, svc.cfg.MaxAge)
	d.final(ctx, false)
	return true
}

// envelope returns the recipients the provider gets, with a SUPPRESSED event
// for each one left out, and the recipients the attempt's events concern
// (nil: every recipient).
func (d *delivery) envelope() (envelope, scope []string) {
	envelope, suppressed := sendjob.Recipients(d.job, d.suppressed...)
	for _, r := range suppressed {
		ev := d.events.Add(queue.EventSuppressed, msgstatus.Suppressed, 0, []string{r}, r)
		ev.Detail = "recipient is on the account's suppression list; nothing was sent to it"
	}
	if len(suppressed) > 0 {
		scope = envelope
	}
	return envelope, scope
}

// loadConfig loads the job's provider configuration (d.config) and moves the
// message to the configuration's fallback when it is unhealthy: false when
// the job is settled (configuration gone, message moved, worker trouble).
func (d *delivery) loadConfig(ctx context.Context, scope []string) bool {
	job := d.job
	stored, err := d.svc.configs.Load(ctx, job.GetAccountId(), job.GetProviderId())
	d.config = stored
	if errors.Is(err, store.ErrConfigNotFound) {
		ev := d.events.Add(queue.EventFailed, msgstatus.Failed, d.attempt, scope, "")
		ev.ErrorClass = "permanent"
		ev.Detail = "the provider configuration of this message no longer exists"
		d.final(ctx, false)
		return false
	}
	if err != nil {
		d.release(ctx)
		d.trouble(ctx, "load provider configuration", err)
		return false
	}
	if !stored.Healthy && d.failover(ctx, "unhealthy: "+stored.HealthNote, d.attempt-1, scope).settled() {
		return false
	}
	return true
}

// awaitRate waits until the account and the configuration may send; false
// when the job was given back.
func (d *delivery) awaitRate(ctx context.Context) bool {
	cfg := d.config.Config
	if err := d.svc.limits.Wait(ctx, d.job.GetAccountId(), cfg.ID, cfg.Kind); err != nil {
		d.release(ctx)
		d.trouble(ctx, "rate limit", err)
		return false
	}
	return true
}

// announce publishes ATTEMPT_STARTED (and the events before it); false when
// the job was given back.
func (d *delivery) announce(ctx context.Context, scope []string) bool {
	d.events.Add(queue.EventStarted, msgstatus.Sending, d.attempt, scope, "")
	// The attempt is recorded as started (claim): that is what must precede
	// the provider call. The timeline's ATTEMPT_STARTED event is not waited
	// for here; its acknowledgement is checked with the outcome's events.
	if err := d.publishPreSend(ctx); err != nil {
		// Nothing was sent: the next delivery may go ahead at once.
		d.release(ctx)
		d.trouble(ctx, "publish started event", err)
		return false
	}
	d.events.Reset()
	return true
}
