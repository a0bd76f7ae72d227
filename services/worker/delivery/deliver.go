package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/queue"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	"github.com/namirasoft/email-sender/services/worker/attempt"
	"github.com/namirasoft/email-sender/services/worker/sendjob"
	"github.com/namirasoft/email-sender/services/worker/store"
	"github.com/namirasoft/email-sender/services/worker/timeline"
)

// Deliver runs one attempt of one job of kind through sender and settles
// the JetStream message. stop is closed when the worker stops fetching.
func (svc *Service) Deliver(ctx context.Context, stop <-chan struct{}, kind string, sender provider.Sender, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		svc.log.ErrorContext(ctx, "send job without metadata", "provider", kind, "error", err)
		settleJob(ctx, svc.log, msg, settlement{kind: term, reason: "send job without metadata"})
		return
	}
	job, err := sendjob.Decode(msg.Data())
	if err != nil {
		// A job nobody can decode cannot be attributed to a message; it is
		// terminated so it cannot block the consumer.
		svc.log.ErrorContext(ctx, "undecodable send job terminated", "provider", kind, "subject", msg.Subject(), "error", err)
		settleJob(ctx, svc.log, msg, settlement{kind: term, reason: "undecodable send job"})
		return
	}
	ctx = svc.tel.ExtractNATS(ctx, msg.Headers())
	ctx, span := svc.tel.Tracer("emailsender/worker").Start(ctx, "worker.deliver",
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("message.id", job.GetMessageId()),
			attribute.String("account.id", job.GetAccountId()),
			attribute.String("provider.kind", kind),
			attribute.Int64("attempt", int64(meta.NumDelivered)),
		))
	defer span.End()

	// A job moved to a fallback counts on from the attempts made before it.
	attempt := int(job.GetAttemptsBefore()) + int(meta.NumDelivered)
	log := svc.log.With("message_id", job.GetMessageId(), "account_id", job.GetAccountId(), "provider", kind, "attempt", attempt)
	d := &delivery{svc: svc, stop: stop, log: log, msg: msg, job: job, attempt: attempt, tries: int(meta.NumDelivered),
		events: timeline.NewSet(job, svc.now)}
	// Canceled when the account gets a tombstone (Abort).
	ctx = svc.track(ctx, d)
	defer svc.untrack(d)
	d.run(ctx, sender)
	if d.spanErr != nil {
		span.RecordError(d.spanErr)
		span.SetStatus(codes.Error, d.spanErr.Error())
	}
}

// delivery is the state of one attempt.
type delivery struct {
	svc     *Service
	log     *slog.Logger
	msg     jetstream.Msg
	job     *queuev1.SendJob
	attempt int
	// tries counts the attempts of this job (on its configuration); attempt
	// also counts those made on the configuration it failed over from.
	tries  int
	events *timeline.Set
	// suppressed are the job's recipients on the account's suppression list,
	// looked up by admit.
	suppressed []string
	// config is the job's provider configuration, once loaded.
	config  store.ProviderConfig
	spanErr error
	// preSend are the events published, without waiting, before the provider
	// call; final and retry publish again those not acknowledged by then.
	preSend *timeline.Unconfirmed
	// lease is when this attempt's claim on the message ends (attempt.Record.Until).
	lease time.Time
	// rev is the revision of the attempt's claim in the attempts bucket.
	rev uint64
	// unreported is an interrupted earlier attempt this delivery reports
	// (0: none); release keeps it for the next delivery.
	unreported int
	// stop is closed when the worker stops fetching.
	stop <-chan struct{}
}

func (d *delivery) run(ctx context.Context, sender provider.Sender) {
	if !d.admit(ctx) {
		return
	}
	prev, ok := d.claim(ctx)
	if !ok || d.alreadyHandled(ctx, prev) {
		return
	}
	d.reportInterrupted(ctx, prev)
	pd, scope, ok := d.prepare(ctx, prev)
	if !ok {
		return
	}
	if hook := d.svc.beforeSend; hook != nil {
		hook(d.job.GetMessageId(), d.attempt)
	}
	sendBy, ok := d.fence(ctx)
	if !ok || d.aborted(ctx) {
		return
	}
	out := d.send(ctx, sender, pd, sendBy)
	if d.aborted(ctx) {
		return // the account got a tombstone: nothing more is recorded or published
	}
	d.conclude(ctx, out, scope, pd.Config)
}

// claim records the attempt as started, leased, waiting while another
// delivery of the job holds the lease (it may be talking to the provider
// right now: sending too could send twice). It returns the message's
// previous record (nil for its first attempt); false when the job was given
// back or the record could not be written.
func (d *delivery) claim(ctx context.Context) (*attempt.Record, bool) {
	svc, job := d.svc, d.job
	now := svc.now()
	d.lease = svc.cfg.leaseFrom(now)
	prev, rev, err := svc.attempts.Begin(ctx, job.GetMessageId(), job.GetProviderId(), d.attempt, now, d.lease)
	var inFlight *attempt.InFlightError
	for errors.As(err, &inFlight) {
		// Wait until its outcome is recorded or its lease ends (then it was
		// truly interrupted).
		if !d.awaitLease(ctx, inFlight) {
			return nil, false
		}
		now = svc.now()
		d.lease = svc.cfg.leaseFrom(now)
		prev, rev, err = svc.attempts.Begin(ctx, job.GetMessageId(), job.GetProviderId(), d.attempt, now, d.lease)
	}
	d.rev = rev
	if err != nil {
		d.trouble(ctx, "record attempt", err)
		return nil, false
	}
	return prev, true
}

// alreadyHandled settles a job whose message needs nothing more from this
// configuration: it belongs to another configuration's job, moved to a
// fallback, or has its outcome recorded.
func (d *delivery) alreadyHandled(ctx context.Context, prev *attempt.Record) bool {
	switch {
	case prev == nil:
		return false
	case prev.Foreign(d.job.GetProviderId()):
		d.stale(ctx, prev)
	case prev.State == attempt.Moved:
		d.replayMove(ctx, prev)
	case prev.State == attempt.Done:
		d.replay(ctx, prev)
	default:
		return false
	}
	return true
}

// reportInterrupted adds ATTEMPT_INTERRUPTED for an earlier attempt that
// never recorded its outcome (found now, or found earlier and not reported).
func (d *delivery) reportInterrupted(ctx context.Context, prev *attempt.Record) {
	switch {
	case prev != nil && prev.State == attempt.Started:
		d.unreported = prev.Attempt
		d.svc.metrics.retry(ctx, retryInterrupted)
	case prev != nil && prev.State == attempt.Retry && prev.Unreported > 0:
		d.unreported = prev.Unreported // found earlier, not reported yet
	}
	if d.unreported > 0 {
		ev := d.events.Add(queue.EventInterrupted, msgstatus.Retrying, d.unreported, nil, "")
		ev.ErrorClass = "interrupted"
		ev.Detail = fmt.Sprintf("attempt %d was interrupted before its outcome was recorded (worker stopped or lost its connection); the provider may or may not have accepted it", d.unreported)
		d.log.WarnContext(ctx, "previous attempt interrupted", "previous_attempt", d.unreported)
	}
}

// fence makes sure the attempt's claim covers the provider call: all since
// claim (loading the configuration, waiting for the rate, publishing) may
// have taken long enough that the lease would end during the call, or has
// ended and another delivery owns the message; then the claim is renewed by
// compare-and-set, or nothing is sent. It returns when the call must end.
func (d *delivery) fence(ctx context.Context) (time.Time, bool) {
	svc, job := d.svc, d.job
	now := svc.now()
	if sendBy := now.Add(svc.cfg.SendTimeout); !sendBy.After(d.lease.Add(-svc.cfg.AckWait)) {
		// The usual case, no round trip: the claim from begin still covers the
		// whole provider call and an ack wait to record its outcome, and no
		// other delivery may take the message before the claim ends.
		return sendBy, true
	}
	lease := svc.cfg.leaseFrom(now)
	rev, err := svc.attempts.Renew(ctx, job.GetMessageId(), job.GetProviderId(), d.attempt, lease, d.rev)
	if errors.Is(err, attempt.ErrLeaseLost) {
		d.log.WarnContext(ctx, "attempt lease lost before the provider call; not sending", "lease_until", d.lease)
		svc.metrics.retry(ctx, retryLeaseLost)
		d.settleJob(ctx, settlement{kind: leave}) // the job is the other delivery's now
		return time.Time{}, false
	}
	if err != nil {
		d.trouble(ctx, "renew attempt lease", err)
		return time.Time{}, false
	}
	d.lease, d.rev = lease, rev
	return now.Add(svc.cfg.SendTimeout), true
}

// send calls the provider until deadline at the latest (the lease leaves
// time after it to record the outcome), keeping the job alive with
// in-progress acks.
func (d *delivery) send(ctx context.Context, sender provider.Sender, pd *provider.Delivery, deadline time.Time) provider.Outcome {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	ctx, span := d.svc.tel.Tracer("emailsender/worker").Start(ctx, "provider.send",
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("provider.kind", pd.Config.Kind), attribute.Int("recipients", len(pd.Recipients))))
	defer span.End()

	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(d.svc.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				d.keepAlive(ctx)
			}
		}
	}()
	out := sender.Send(ctx, pd)
	span.SetAttributes(attribute.String("outcome", out.Class.String()))
	// Provider replies and errors quote recipient addresses: on spans only
	// when the operator opted in (OTEL_RECORD_PERSONAL_DATA).
	if d.svc.tel.PersonalData {
		span.SetAttributes(attribute.String("provider.response", out.Response))
	}
	if out.Err != nil {
		if d.svc.tel.PersonalData {
			span.RecordError(out.Err)
		}
		span.SetStatus(codes.Error, out.Class.String())
	}
	return out
}

// awaitLease waits while another delivery holds the lease of the message's
// attempt, keeping this job alive with in-progress acks, until that attempt's
// record changes or its lease ends (true), or the worker stops or ctx ends
// (false: the job is given back for when the lease ends).
func (d *delivery) awaitLease(ctx context.Context, inFlight *attempt.InFlightError) bool {
	d.log.InfoContext(ctx, "attempt in flight elsewhere; waiting for its lease", "leased_attempt", inFlight.Attempt, "lease_until", inFlight.Until)
	alive := time.NewTicker(d.svc.cfg.AckWait / 3)
	defer alive.Stop()
	poll := time.NewTicker(500 * time.Millisecond)
	defer poll.Stop()
	for d.svc.now().Before(inFlight.Until) {
		select {
		case <-d.stop:
			d.settleJob(ctx, settlement{kind: nakLater, delay: inFlight.Until.Sub(d.svc.now())})
			return false
		case <-ctx.Done():
			d.settleJob(ctx, settlement{kind: nakLater, delay: inFlight.Until.Sub(d.svc.now())})
			return false
		case <-alive.C:
			d.keepAlive(ctx)
		case <-poll.C:
			rec, err := d.svc.attempts.Get(ctx, d.job.GetMessageId())
			if err == nil && (rec.State != attempt.Started || !rec.Until.Equal(inFlight.Until)) {
				return true
			}
		}
	}
	return true
}

// release ends the attempt's lease before anything was sent (best effort),
// so that the job's next delivery goes ahead at once and does not report
// this attempt as interrupted; an earlier interrupted attempt this delivery
// could not report is handed on (attempt.Record.Unreported).
func (d *delivery) release(ctx context.Context) {
	rec := attempt.Record{State: attempt.Retry, Attempt: d.attempt, Provider: d.job.GetProviderId(), Unreported: d.unreported}
	if err := d.svc.attempts.Finish(ctx, d.job.GetMessageId(), rec); err != nil {
		d.log.WarnContext(ctx, "release attempt", "error", err)
	}
}

// trouble handles a failure of the worker's own dependencies: the job comes
// back shortly without counting as a provider outcome.
func (d *delivery) trouble(ctx context.Context, what string, err error) {
	d.spanErr = fmt.Errorf("%s: %w", what, err)
	d.log.ErrorContext(ctx, "delivery interrupted", "step", what, "error", err)
	d.svc.metrics.retry(ctx, retryWorker)
	d.settleJob(ctx, settlement{kind: nakLater, delay: retryAfterTrouble})
}
