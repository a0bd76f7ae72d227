package delivery

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/services/worker/attempt"
	"github.com/namirasoft/email-sender/services/worker/timeline"
)

// Failover reasons (the reason label of emailsender_failovers_total).
const (
	failoverUnhealthy = "unhealthy" // the configuration's credentials were refused earlier
	failoverTransient = "transient" // the message failed transiently FailoverAfter times
)

// failoverResult is what failover did with the job.
type failoverResult int

const (
	// stayed: the message cannot move; nothing was done, and the job is still
	// the delivery's to settle.
	stayed failoverResult = iota
	// moved: the move is recorded and the job settled (acked once the
	// fallback job and the events are published, else given back by trouble:
	// its redelivery finishes the move).
	moved
	// givenBack: the move could not be recorded; the job was given back
	// (trouble) and comes back shortly.
	givenBack
)

// settled reports whether the delivery is done with the job: anything but stayed.
func (r failoverResult) settled() bool { return r != stayed }

// failover moves the message to the fallback of its configuration (d.config):
// it records the move, publishes the job again on the fallback's subject, then
// the FAILOVER event, and acks this job. made is the number of attempts made on
// this configuration (the fallback's attempts count on from it); reason goes to
// the timeline. It returns stayed, having done nothing, when the message cannot
// move: the configuration names no fallback, the job already is a fallback's
// (no failover loops), or the fallback is gone or unhealthy too.
//
// The order makes every crash safe: once the moved record is written, a
// redelivery of this job re-publishes the fallback job (JetStream drops the
// copy by its Nats-Msg-Id) and never sends through this configuration again;
// before it, nothing has happened.
func (d *delivery) failover(ctx context.Context, reason string, made int, scope []string) failoverResult {
	svc, job, primary := d.svc, d.job, d.config
	if job.GetFailedOverFrom() != "" || primary.FallbackID == "" || primary.FallbackID == primary.ID {
		return stayed
	}
	if job.GetProviderBound() {
		// The sender is verified only as this configuration's identity.
		d.log.WarnContext(ctx, "not failing over: the from address is verified only for this provider configuration", "fallback_provider_id", primary.FallbackID)
		return stayed
	}
	fb, err := svc.configs.Load(ctx, job.GetAccountId(), primary.FallbackID)
	if err != nil {
		d.log.WarnContext(ctx, "fallback provider configuration not usable; staying on the primary", "fallback_provider_id", primary.FallbackID, "error", err)
		return stayed
	}
	if !fb.Healthy {
		d.log.WarnContext(ctx, "fallback provider configuration is unhealthy too; staying on the primary", "fallback_provider_id", fb.ID)
		return stayed
	}
	class, errorClass := failoverTransient, "transient"
	if !primary.Healthy {
		// Unhealthy means its credentials were refused: the "auth" class.
		class, errorClass = failoverUnhealthy, "auth"
	}
	ev := d.events.Add(queue.EventFailover, msgstatus.Retrying, made, scope, "")
	ev.ProviderId = fb.ID
	ev.ErrorClass = errorClass
	ev.Detail = fmt.Sprintf("moved from provider %s (%s; %s) to fallback %s (%s)", primary.ID, primary.Kind, reason, fb.ID, fb.Kind)
	data, _, err := d.events.Encode()
	if err != nil {
		d.trouble(ctx, "encode events", err)
		return givenBack
	}
	rec := attempt.Record{State: attempt.Moved, Attempt: made, Events: data, MovedTo: fb.ID, MovedKind: fb.Kind}
	if err := d.record(ctx, rec); err != nil {
		d.trouble(ctx, "record failover", err)
		return givenBack
	}
	d.log.WarnContext(ctx, "message moves to the fallback provider", "fallback_provider_id", fb.ID, "fallback_kind", fb.Kind, "reason", reason)
	d.replayMove(ctx, &rec)
	svc.metrics.failover(ctx, class)
	return moved
}

// replayMove finishes a recorded failover: it publishes the fallback job (again:
// JetStream deduplicates it by its Nats-Msg-Id within the duplicate window, and
// a later copy finds its outcome recorded), re-publishes the recorded events and
// acks the job without sending.
func (d *delivery) replayMove(ctx context.Context, rec *attempt.Record) {
	if err := d.publishFallbackJob(ctx, rec); err != nil {
		d.trouble(ctx, "publish fallback job", err)
		return
	}
	ids, err := timeline.DecodeIDs(rec.Events)
	if err == nil {
		preData, preIDs := d.preSend.Pending()
		err = d.svc.events.Publish(ctx, d.job.GetAccountId(), d.job.GetMessageId(), append(preData, rec.Events...), append(preIDs, ids...))
	}
	if err != nil {
		d.trouble(ctx, "publish failover events", err)
		return
	}
	d.settleJob(ctx, settlement{kind: ack})
}

// publishFallbackJob publishes the job moved to rec.MovedTo and waits for
// JetStream's acknowledgement.
func (d *delivery) publishFallbackJob(ctx context.Context, rec *attempt.Record) error {
	next := proto.CloneOf(d.job)
	next.ProviderId, next.ProviderKind = rec.MovedTo, rec.MovedKind
	next.FailedOverFrom = d.job.GetProviderId()
	next.AttemptsBefore = int32(rec.Attempt)
	data, err := proto.Marshal(next)
	if err != nil {
		return fmt.Errorf("encode fallback job: %w", err)
	}
	msg := &nats.Msg{Subject: queue.SendSubject(rec.MovedKind, d.job.GetAccountId()), Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, failoverMsgID(d.job.GetMessageId(), rec.MovedTo))
	d.svc.tel.InjectNATS(ctx, msg.Header)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := d.svc.jobs.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publish fallback job: %w", err)
	}
	return nil
}

// failoverMsgID is the Nats-Msg-Id of a message's job on its fallback.
func failoverMsgID(messageID, fallbackID string) string {
	return messageID + ":failover:" + fallbackID
}

// stale handles a job whose message is now another configuration's (it moved
// to its fallback, and this is the primary's job delivered again, or the
// reverse after the fallback's job began): the message is not this job's to
// send; it is acked without sending.
func (d *delivery) stale(ctx context.Context, rec *attempt.Record) {
	d.log.InfoContext(ctx, "message is handled by another provider configuration; not sending", "recorded_provider_id", rec.Provider, "recorded_state", rec.State)
	d.settleJob(ctx, settlement{kind: ack})
}
