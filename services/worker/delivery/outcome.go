package delivery

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/queue"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	"github.com/namirasoft/email-sender/services/worker/attempt"
	"github.com/namirasoft/email-sender/services/worker/sendjob"
	"github.com/namirasoft/email-sender/services/worker/timeline"
)

// conclude turns the provider's outcome into events, the attempt record and
// the job's settlement.
func (d *delivery) conclude(ctx context.Context, out provider.Outcome, scope []string, cfg provider.Config) {
	errText := ""
	if out.Err != nil {
		errText = out.Err.Error()
	}
	class := out.Class
	if class == provider.Ambiguous && d.svc.cfg.RetryAmbiguous {
		d.log.WarnContext(ctx, "ambiguous outcome retried by policy", "error", errText)
		class = provider.Transient
	}
	switch class {
	case provider.Sent:
		d.sent(ctx, out, scope)
	case provider.Transient:
		d.failedTransiently(ctx, out, errText, scope)
	default:
		d.failed(ctx, out, class, errText, scope, cfg)
	}
}

// sent ends the job of a message the provider accepted: SENT for the
// recipients it took, FAILED for each it refused, and the feedback it gave.
func (d *delivery) sent(ctx context.Context, out provider.Outcome, scope []string) {
	sentScope := scope
	if len(out.Rejected) > 0 {
		sentScope = nil
		for _, r := range envelopeOf(scope, d.job, d.suppressed) {
			if _, rejected := out.Rejected[r]; !rejected {
				sentScope = append(sentScope, r)
			}
		}
	}
	ev := d.events.Add(queue.EventSent, msgstatus.Sent, d.attempt, sentScope, "")
	ev.ProviderResponse = out.Response
	ev.ProviderMessageId = out.MessageID
	for r, answer := range out.Rejected {
		rev := d.events.Add(queue.EventFailed, msgstatus.Failed, d.attempt, []string{r}, r)
		rev.ErrorClass = "permanent"
		rev.ProviderResponse = answer
		rev.Detail = "the provider refused this recipient"
	}
	for _, fb := range out.Feedback {
		st, typ := feedbackStatus(fb.Type)
		if typ == "" {
			continue
		}
		fev := d.events.Add(typ, st, d.attempt, []string{fb.Recipient}, fb.Recipient)
		fev.Detail = fb.Detail
	}
	d.log.InfoContext(ctx, "message sent", "response", out.Response)
	d.final(ctx, true)
}

// failedTransiently moves the message to its fallback after enough transient
// failures, fails it once its attempts ran out, or schedules the next attempt.
func (d *delivery) failedTransiently(ctx context.Context, out provider.Outcome, errText string, scope []string) {
	svc := d.svc
	if d.tries >= min(svc.cfg.FailoverAfter, svc.cfg.MaxAttempts) &&
		d.failover(ctx, fmt.Sprintf("%d transient failures, the last: %s", d.tries, errText), d.attempt, scope).settled() {
		return
	}
	if d.tries >= svc.cfg.MaxAttempts {
		ev := d.events.Add(queue.EventFailed, msgstatus.Failed, d.attempt, scope, "")
		ev.ErrorClass = "attempts_exhausted"
		ev.ProviderResponse = out.Response
		ev.Detail = fmt.Sprintf("attempt %d of %d failed transiently: %s", d.attempt, svc.cfg.MaxAttempts, errText)
		d.final(ctx, false)
		return
	}
	delay := out.RetryAfter
	if delay <= 0 {
		delay = backoff(d.tries, svc.cfg.BackoffBase, svc.cfg.BackoffMax, nil)
	}
	ev := d.events.Add(queue.EventRetry, msgstatus.Retrying, d.attempt, scope, "")
	ev.ErrorClass = "transient"
	ev.ProviderResponse = out.Response
	ev.Detail = errText
	ev.RetryAt = timestamppb.New(svc.now().Add(delay))
	d.log.InfoContext(ctx, "attempt failed transiently; retrying", "error", errText, "retry_in", delay.String())
	reason := retryTransient
	if out.Class == provider.Ambiguous {
		reason = retryAmbiguous
	}
	d.retry(ctx, delay, reason)
}

// failed ends the job of a message that failed for good (permanent,
// credentials refused: the configuration is marked unhealthy, ambiguous under
// the fail policy).
func (d *delivery) failed(ctx context.Context, out provider.Outcome, class provider.Class, errText string, scope []string, cfg provider.Config) {
	ev := d.events.Add(queue.EventFailed, msgstatus.Failed, d.attempt, scope, "")
	ev.ErrorClass = class.String()
	ev.ProviderResponse = out.Response
	ev.Detail = errText
	if class == provider.Ambiguous {
		ev.Detail = "the message data was sent but the provider's answer was lost; it may have been accepted. Not retried (WORKER_AMBIGUOUS_POLICY=fail) to avoid a duplicate: " + errText
	}
	if class == provider.Credentials {
		if err := d.svc.configs.MarkUnhealthy(ctx, cfg.AccountID, cfg.ID, "credentials refused: "+errText); err != nil {
			d.log.ErrorContext(ctx, "mark provider unhealthy", "error", err)
		} else if d.svc.changes != nil {
			// Ingest stops accepting for it (unless it has a healthy fallback).
			if err := d.svc.changes.Post(ctx, cfg.AccountID); err != nil {
				d.log.WarnContext(ctx, "announce unhealthy provider configuration", "error", err)
			}
		}
	}
	d.log.WarnContext(ctx, "message failed", "error_class", ev.ErrorClass, "error", errText)
	d.final(ctx, false)
}

// final records a final outcome, publishes its events and settles the job:
// ack when the message reached its end normally, term when it failed.
func (d *delivery) final(ctx context.Context, ok bool) {
	data, ids, err := d.events.Encode()
	if err != nil {
		d.trouble(ctx, "encode events", err)
		return
	}
	// The outcome is recorded while its events are published, and the job
	// is settled once both are stored: one round trip after the provider's
	// answer rather than two. The record alone is what keeps a redelivery
	// from sending again (a worker killed before it is stored is the kill
	// window, as when the events were published after it); the events are
	// deduplicated by id, whoever publishes them again.
	recorded := make(chan error, 1)
	go func() {
		recorded <- d.record(ctx, attempt.Record{State: attempt.Done, Attempt: d.attempt, Events: data})
	}()
	preData, preIDs := d.preSend.Pending()
	pubErr := d.svc.events.Publish(ctx, d.job.GetAccountId(), d.job.GetMessageId(), append(preData, data...), append(preIDs, ids...))
	if err := <-recorded; err != nil {
		d.trouble(ctx, "record outcome", err)
		return
	}
	if pubErr != nil {
		// The outcome is recorded: the redelivery re-publishes, never re-sends.
		d.trouble(ctx, "publish outcome events", pubErr)
		return
	}
	d.svc.metrics.final(ctx, d.job, d.events.List(), ok)
	if ok {
		d.settleJob(ctx, settlement{kind: ack})
	} else {
		d.settleJob(ctx, settlement{kind: term})
	}
}

// retry records a transient end of the attempt and schedules the next one.
func (d *delivery) retry(ctx context.Context, delay time.Duration, reason string) {
	if err := d.record(ctx, attempt.Record{State: attempt.Retry, Attempt: d.attempt}); err != nil {
		d.trouble(ctx, "record retry", err)
		return
	}
	d.svc.metrics.retry(ctx, reason)
	if err := d.publish(ctx); err != nil {
		d.log.WarnContext(ctx, "publish retry event", "error", err)
	}
	d.settleJob(ctx, settlement{kind: nakLater, delay: delay})
}

// replay handles a job whose outcome was already recorded: re-publish the
// recorded events (deduplicated by JetStream) and ack without sending.
func (d *delivery) replay(ctx context.Context, prev *attempt.Record) {
	ids, err := timeline.DecodeIDs(prev.Events)
	if err == nil {
		err = d.svc.events.Publish(ctx, d.job.GetAccountId(), d.job.GetMessageId(), prev.Events, ids)
	}
	if err != nil {
		d.trouble(ctx, "re-publish recorded outcome", err)
		return
	}
	d.log.InfoContext(ctx, "job already delivered; not sending again", "recorded_attempt", prev.Attempt)
	d.settleJob(ctx, settlement{kind: ack})
}

// record writes the attempt record, retrying for as long as the worker runs:
// losing a "done" record after a provider accepted the message is what would
// cause a duplicate. The lease keeps other deliveries off until an ack wait
// after the provider call's deadline and a grace after that (leaseFrom);
// in-progress acks keep JetStream from handing the job to another meanwhile,
// and a worker cut off from NATS records the moment NATS is back.
func (d *delivery) record(ctx context.Context, rec attempt.Record) error {
	rec.Provider = d.job.GetProviderId()
	delay := 200 * time.Millisecond
	for {
		err := d.svc.attempts.Finish(ctx, d.job.GetMessageId(), rec)
		if err == nil {
			return nil
		}
		d.log.WarnContext(ctx, "record attempt; retrying", "state", rec.State, "error", err, "retry_in", delay.String())
		d.keepAlive(ctx)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

func (d *delivery) publish(ctx context.Context) error {
	data, ids, err := d.events.Encode()
	if err != nil {
		return err
	}
	preData, preIDs := d.preSend.Pending()
	return d.svc.events.Publish(ctx, d.job.GetAccountId(), d.job.GetMessageId(), append(preData, data...), append(preIDs, ids...))
}

// publishPreSend publishes the events so far without waiting for their
// acknowledgements (see delivery.preSend).
func (d *delivery) publishPreSend(ctx context.Context) error {
	data, ids, err := d.events.Encode()
	if err != nil {
		return err
	}
	futures, err := d.svc.events.PublishAsync(ctx, d.job.GetAccountId(), d.job.GetMessageId(), data, ids)
	if err != nil {
		return err
	}
	d.preSend = &timeline.Unconfirmed{Data: data, IDs: ids, Futures: futures}
	return nil
}

func envelopeOf(scope []string, job *queuev1.SendJob, suppressed []string) []string {
	if len(scope) > 0 {
		return scope
	}
	env, _ := sendjob.Recipients(job, suppressed...)
	return env
}

func feedbackStatus(typ string) (msgstatus.Status, string) {
	switch typ {
	case queue.EventDelivered:
		return msgstatus.Delivered, queue.EventDelivered
	case queue.EventBounced:
		return msgstatus.Bounced, queue.EventBounced
	case queue.EventComplained:
		return msgstatus.Complained, queue.EventComplained
	}
	return 0, ""
}
