package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/lifecycle"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/telemetry"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	"github.com/namirasoft/email-sender/services/worker/attempt"
	"github.com/namirasoft/email-sender/services/worker/sendjob"
	"github.com/namirasoft/email-sender/services/worker/store"
	"github.com/namirasoft/email-sender/services/worker/timeline"
)

// What a delivery needs, declared here where it is used; the worker's
// JetStream and PostgreSQL implementations are attempt.Store,
// timeline.Publisher, store.Configs, store.Messages, ratelimit.Limits and its
// JetStream, and the state machine's tests (deliver_test.go) use fakes.
type (
	// AttemptStore keeps each message's attempt record (EMAIL_ATTEMPTS).
	AttemptStore interface {
		Begin(ctx context.Context, messageID, providerID string, n int, now, until time.Time) (*attempt.Record, uint64, error)
		Renew(ctx context.Context, messageID, providerID string, n int, until time.Time, rev uint64) (uint64, error)
		Finish(ctx context.Context, messageID string, rec attempt.Record) error
		Get(ctx context.Context, messageID string) (*attempt.Record, error)
	}
	// EventSink publishes delivery events (EMAIL_EVENTS).
	EventSink interface {
		Publish(ctx context.Context, accountID, messageID string, events [][]byte, ids []string) error
		PublishAsync(ctx context.Context, accountID, messageID string, events [][]byte, ids []string) ([]jetstream.PubAckFuture, error)
		Wait(ctx context.Context, futures []jetstream.PubAckFuture) error
	}
	// ConfigSource reads provider configurations (PostgreSQL).
	ConfigSource interface {
		Load(ctx context.Context, accountID, id string) (store.ProviderConfig, error)
		MarkUnhealthy(ctx context.Context, accountID, id, note string) error
	}
	// RateLimits paces sends per account and per provider configuration.
	RateLimits interface {
		Wait(ctx context.Context, accountID, configID, kind string) error
	}
	// Cancellations says whether a scheduled message was canceled (PostgreSQL).
	Cancellations interface {
		Canceled(ctx context.Context, accountID, messageID string) (bool, error)
	}
	// JobPublisher publishes a job moved to a fallback (EMAIL_SEND).
	JobPublisher interface {
		PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
	}
)

// Settings bound and pace deliveries; the worker fills them from its Config.
type Settings struct {
	// MaxAttempts bounds the attempts on one provider configuration.
	MaxAttempts int
	// MaxAge bounds how long a message is retried after it was accepted.
	MaxAge time.Duration
	// BackoffBase and BackoffMax shape the retry delay (backoff).
	BackoffBase, BackoffMax time.Duration
	// AckWait is the send consumers' ack wait: in-progress acks come every
	// AckWait/3, and an attempt's lease leaves two of them after SendTimeout.
	AckWait time.Duration
	// SendTimeout bounds one provider call.
	SendTimeout time.Duration
	// RetryAmbiguous retries an ambiguous outcome like a transient one
	// (WORKER_AMBIGUOUS_POLICY=retry) instead of failing the message.
	RetryAmbiguous bool
	// FailoverAfter is the number of transient failures on a configuration
	// after which a message moves to the configuration's fallback, if any.
	FailoverAfter int
}

// Deps are a Service's collaborators.
type Deps struct {
	Attempts  AttemptStore
	Events    EventSink
	Configs   ConfigSource
	Messages  Cancellations
	Limits    RateLimits
	Jobs      JobPublisher
	Telemetry *telemetry.Telemetry
	Logger    *slog.Logger
	// BeforeSend, when set, runs after the attempt is recorded as started,
	// before the provider call (for tests that must wait for that step).
	BeforeSend func(messageID string, attempt int)
}

// Service runs deliveries: one attempt of one job each, from its claim to the
// job's settlement.
type Service struct {
	cfg        Settings
	attempts   AttemptStore
	events     EventSink
	configs    ConfigSource
	messages   Cancellations
	limits     RateLimits
	jobs       JobPublisher
	tel        *telemetry.Telemetry
	log        *slog.Logger
	beforeSend func(messageID string, attempt int)
	metrics    *metrics
	now        func() time.Time
}

// New returns a Service with cfg and deps; Telemetry and Logger may be nil.
func New(cfg Settings, deps Deps) *Service {
	if deps.Telemetry == nil {
		deps.Telemetry = telemetry.Nop()
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{
		cfg: cfg, attempts: deps.Attempts, events: deps.Events, configs: deps.Configs,
		messages: deps.Messages, limits: deps.Limits, jobs: deps.Jobs,
		tel: deps.Telemetry, log: deps.Logger, beforeSend: deps.BeforeSend,
		metrics: newMetrics(deps.Telemetry), now: time.Now,
	}
}

// leaseFrom is the end of an attempt's claim on its message when it starts
// now: the provider call (SendTimeout), an ack wait to record the outcome,
// and another as grace for a worker that was cut off from NATS and records
// the moment NATS is back. Until then no other delivery sends the message.
func (s Settings) leaseFrom(now time.Time) time.Time {
	return now.Add(s.SendTimeout + 2*s.AckWait)
}

// retryAfterTrouble is the delay before a job comes back when the worker itself
// could not work on it (NATS or PostgreSQL unreachable); it is not an attempt
// outcome and publishes no retry event.
const retryAfterTrouble = 2 * time.Second

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
	d.run(ctx, kind, sender)
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

func (d *delivery) run(ctx context.Context, kind string, sender provider.Sender) {
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
	if !ok {
		return
	}
	out := d.send(ctx, sender, pd, sendBy)
	d.settle(ctx, out, scope, pd.Config)
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
		ev := d.events.Add(queue.EventInterrupted, lifecycle.Retrying, d.unreported, nil, "")
		ev.ErrorClass = "interrupted"
		ev.Detail = fmt.Sprintf("attempt %d was interrupted before its outcome was recorded (worker stopped or lost its connection); the provider may or may not have accepted it", d.unreported)
		d.log.WarnContext(ctx, "previous attempt interrupted", "previous_attempt", d.unreported)
	}
}

// prepare decides whether the message is to be sent at all and builds what
// the provider gets: it ends the job (canceled, attempts exhausted, every
// recipient suppressed, configuration gone) or gives it back (worker
// trouble, failover) and returns false, or returns the delivery and the
// recipients its events concern (nil: all).
func (d *delivery) prepare(ctx context.Context, prev *attempt.Record) (*provider.Delivery, []string, bool) {
	svc, job := d.svc, d.job
	if job.GetScheduled() && prev == nil {
		canceled, err := svc.messages.Canceled(ctx, job.GetAccountId(), job.GetMessageId())
		if err != nil {
			d.trouble(ctx, "check cancellation", err)
			return nil, nil, false
		}
		if canceled {
			d.log.InfoContext(ctx, "scheduled message was canceled; not sending")
			d.final(ctx, true)
			return nil, nil, false
		}
	}

	accepted := job.GetAcceptedAt().AsTime()
	if d.tries > svc.cfg.MaxAttempts || (!accepted.IsZero() && svc.now().Sub(accepted) > svc.cfg.MaxAge) {
		ev := d.events.Add(queue.EventFailed, lifecycle.Failed, d.attempt, nil, "")
		ev.ErrorClass = "attempts_exhausted"
		ev.Detail = fmt.Sprintf("gave up after %d attempts or %s since acceptance", d.attempt-1, svc.cfg.MaxAge)
		d.final(ctx, false)
		return nil, nil, false
	}

	envelope, suppressed := sendjob.Recipients(job)
	for _, r := range suppressed {
		ev := d.events.Add(queue.EventSuppressed, lifecycle.Suppressed, 0, []string{r}, r)
		ev.Detail = "recipient is on the account's suppression list; nothing was sent to it"
	}
	if len(envelope) == 0 {
		d.final(ctx, true)
		return nil, nil, false
	}
	var scope []string // empty: the event concerns every recipient
	if len(suppressed) > 0 {
		scope = envelope
	}

	stored, err := svc.configs.Load(ctx, job.GetAccountId(), job.GetProviderId())
	cfg := stored.Config
	d.config = stored
	if errors.Is(err, store.ErrConfigNotFound) {
		ev := d.events.Add(queue.EventFailed, lifecycle.Failed, d.attempt, scope, "")
		ev.ErrorClass = "permanent"
		ev.Detail = "the provider configuration of this message no longer exists"
		d.final(ctx, false)
		return nil, nil, false
	}
	if err != nil {
		d.release(ctx)
		d.trouble(ctx, "load provider configuration", err)
		return nil, nil, false
	}
	if !stored.Healthy && d.failover(ctx, "unhealthy: "+stored.HealthNote, d.attempt-1, scope).settled() {
		return nil, nil, false
	}
	if err := svc.limits.Wait(ctx, job.GetAccountId(), cfg.ID, cfg.Kind); err != nil {
		d.release(ctx)
		d.trouble(ctx, "rate limit", err)
		return nil, nil, false
	}

	d.events.Add(queue.EventStarted, lifecycle.Sending, d.attempt, scope, "")
	// The attempt is recorded as started (claim): that is what must precede
	// the provider call. The timeline's ATTEMPT_STARTED event is not waited
	// for here; its acknowledgement is checked with the outcome's events.
	if err := d.publishPreSend(ctx); err != nil {
		// Nothing was sent: the next delivery may go ahead at once.
		d.release(ctx)
		d.trouble(ctx, "publish started event", err)
		return nil, nil, false
	}
	d.events.Reset()
	return &provider.Delivery{Job: job, Attempt: d.attempt, Recipients: envelope, Config: cfg}, scope, true
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
	span.SetAttributes(attribute.String("outcome", out.Class.String()), attribute.String("provider.response", out.Response))
	if out.Err != nil {
		span.RecordError(out.Err)
		span.SetStatus(codes.Error, out.Class.String())
	}
	return out
}

// settle turns an outcome into events and the JetStream settlement.
func (d *delivery) settle(ctx context.Context, out provider.Outcome, scope []string, cfg provider.Config) {
	svc := d.svc
	errText := ""
	if out.Err != nil {
		errText = out.Err.Error()
	}
	class := out.Class
	if class == provider.Ambiguous && svc.cfg.RetryAmbiguous {
		d.log.WarnContext(ctx, "ambiguous outcome retried by policy", "error", errText)
		class = provider.Transient
	}
	switch class {
	case provider.Sent:
		sentScope := scope
		if len(out.Rejected) > 0 {
			sentScope = nil
			for _, r := range envelopeOf(scope, d.job) {
				if _, rejected := out.Rejected[r]; !rejected {
					sentScope = append(sentScope, r)
				}
			}
		}
		ev := d.events.Add(queue.EventSent, lifecycle.Sent, d.attempt, sentScope, "")
		ev.ProviderResponse = out.Response
		ev.ProviderMessageId = out.MessageID
		for r, answer := range out.Rejected {
			rev := d.events.Add(queue.EventFailed, lifecycle.Failed, d.attempt, []string{r}, r)
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
	case provider.Transient:
		if d.tries >= min(svc.cfg.FailoverAfter, svc.cfg.MaxAttempts) &&
			d.failover(ctx, fmt.Sprintf("%d transient failures, the last: %s", d.tries, errText), d.attempt, scope).settled() {
			return
		}
		if d.tries >= svc.cfg.MaxAttempts {
			ev := d.events.Add(queue.EventFailed, lifecycle.Failed, d.attempt, scope, "")
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
		ev := d.events.Add(queue.EventRetry, lifecycle.Retrying, d.attempt, scope, "")
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
	default:
		ev := d.events.Add(queue.EventFailed, lifecycle.Failed, d.attempt, scope, "")
		ev.ErrorClass = class.String()
		ev.ProviderResponse = out.Response
		ev.Detail = errText
		if class == provider.Ambiguous {
			ev.Detail = "the message data was sent but the provider's answer was lost; it may have been accepted. Not retried (WORKER_AMBIGUOUS_POLICY=fail) to avoid a duplicate: " + errText
		}
		if class == provider.Credentials {
			if err := svc.configs.MarkUnhealthy(ctx, cfg.AccountID, cfg.ID, "credentials refused: "+errText); err != nil {
				d.log.ErrorContext(ctx, "mark provider unhealthy", "error", err)
			}
		}
		d.log.WarnContext(ctx, "message failed", "error_class", ev.ErrorClass, "error", errText)
		d.final(ctx, false)
	}
}

// final records a final outcome, publishes its events and settles the job:
// ack when the message reached its end normally, term when it failed.
func (d *delivery) final(ctx context.Context, ok bool) {
	data, ids, err := d.events.Encode()
	if err != nil {
		d.trouble(ctx, "encode events", err)
		return
	}
	if err := d.record(ctx, attempt.Record{State: attempt.Done, Attempt: d.attempt, Events: data}); err != nil {
		d.trouble(ctx, "record outcome", err)
		return
	}
	preData, preIDs := d.preSend.Pending()
	if err := d.svc.events.Publish(ctx, d.job.GetAccountId(), d.job.GetMessageId(), append(preData, data...), append(preIDs, ids...)); err != nil {
		// The outcome is recorded: the redelivery re-publishes, never re-sends.
		d.trouble(ctx, "publish outcome events", err)
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

// trouble handles a failure of the worker's own dependencies: the job comes
// back shortly without counting as a provider outcome.
func (d *delivery) trouble(ctx context.Context, what string, err error) {
	d.spanErr = fmt.Errorf("%s: %w", what, err)
	d.log.ErrorContext(ctx, "delivery interrupted", "step", what, "error", err)
	d.svc.metrics.retry(ctx, retryWorker)
	d.settleJob(ctx, settlement{kind: nakLater, delay: retryAfterTrouble})
}

func envelopeOf(scope []string, job *queuev1.SendJob) []string {
	if len(scope) > 0 {
		return scope
	}
	env, _ := sendjob.Recipients(job)
	return env
}

func feedbackStatus(typ string) (lifecycle.Status, string) {
	switch typ {
	case queue.EventDelivered:
		return lifecycle.Delivered, queue.EventDelivered
	case queue.EventBounced:
		return lifecycle.Bounced, queue.EventBounced
	case queue.EventComplained:
		return lifecycle.Complained, queue.EventComplained
	}
	return 0, ""
}

// settleJob ends the delivery's hold on its job (see settleJob).
func (d *delivery) settleJob(ctx context.Context, s settlement) { settleJob(ctx, d.log, d.msg, s) }

// keepAlive restarts the job's ack wait (see keepAlive).
func (d *delivery) keepAlive(ctx context.Context) { keepAlive(ctx, d.log, d.msg) }
