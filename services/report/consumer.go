package report

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/namirasoft/email-sender/pkg/pgerr"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/reputation"
)

// Consume applies delivery events until ctx ends, then stops fetching, applies
// the batch in flight and the events already buffered, and returns nil. While
// JetStream is unreachable (at start, or NATS restarting) it keeps trying to
// create its consumer, so the API stays up meanwhile.
func (s *Service) Consume(ctx context.Context) error {
	cfg := jetstream.ConsumerConfig{
		Durable:       s.cfg.Consumer,
		Description:   "report: delivery events into PostgreSQL",
		FilterSubject: queue.EventFilter,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.AckWait,
		MaxAckPending: s.cfg.MaxAckPending,
		// Events are never given up on: a database outage only delays them.
		MaxDeliver: -1,
	}
	var cons jetstream.Consumer
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := s.deps.JetStream.CreateOrUpdateConsumer(cctx, queue.EventStream, cfg)
		cancel()
		if err == nil {
			cons = c
			break
		}
		s.log.WarnContext(ctx, "create consumer; retrying", "consumer", s.cfg.Consumer, "error", err, "retry_in", delay.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(2 * s.cfg.BatchSize))
	if err != nil {
		return fmt.Errorf("consume %s: %w", s.cfg.Consumer, err)
	}
	defer iter.Stop()
	// Drain, not Stop: what is already buffered is applied before Next reports
	// the iterator closed.
	stop := context.AfterFunc(ctx, iter.Drain)
	defer stop()
	s.log.InfoContext(ctx, "consuming events", "consumer", s.cfg.Consumer, "batch_size", s.cfg.BatchSize)

	// The batch in flight is finished even when ctx ends.
	work := context.WithoutCancel(ctx)
	for {
		batch, err := s.nextBatch(iter)
		if len(batch) > 0 {
			s.handleBatch(work, batch)
		}
		switch {
		case err == nil:
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			if ctx.Err() != nil {
				s.log.InfoContext(work, "event consumer stopped", "consumer", s.cfg.Consumer)
				return nil
			}
			return fmt.Errorf("consume %s: %w", s.cfg.Consumer, err)
		default:
			s.log.WarnContext(ctx, "fetch events", "consumer", s.cfg.Consumer, "error", err)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}
}

// nextBatch waits for one event, then takes what else arrives within BatchWait,
// up to BatchSize.
func (s *Service) nextBatch(iter jetstream.MessagesContext) ([]jetstream.Msg, error) {
	first, err := iter.Next()
	if err != nil {
		return nil, err
	}
	batch := []jetstream.Msg{first}
	for len(batch) < s.cfg.BatchSize {
		m, err := iter.Next(jetstream.NextMaxWait(s.cfg.BatchWait))
		if errors.Is(err, nats.ErrTimeout) {
			break
		}
		if err != nil {
			return batch, err
		}
		batch = append(batch, m)
	}
	return batch, nil
}

// pending is one decoded event of a batch and its span.
type pending struct {
	msg  jetstream.Msg
	ev   event
	ctx  context.Context
	span trace.Span
}

// handleBatch applies a batch and settles every message of it: ack when
// applied, already applied or for an unknown message; term when malformed;
// nak with delay when the database failed.
func (s *Service) handleBatch(ctx context.Context, msgs []jetstream.Msg) {
	var rep BatchReport
	batchCtx, batchSpan := s.tracer.Start(ctx, "report.apply_batch",
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.Int("messaging.batch.message_count", len(msgs))))
	defer batchSpan.End()

	var evs []pending
	seen := map[string]bool{}
	for _, m := range msgs {
		ev, err := decodeEvent(m)
		if err != nil {
			id := m.Headers().Get(jetstream.MsgIDHeader)
			s.logMalformed(ctx, m, id, err)
			rep.Malformed = append(rep.Malformed, id)
			continue
		}
		if seen[ev.id] {
			s.ack(ctx, m)
			rep.Duplicates = append(rep.Duplicates, ev.id)
			continue
		}
		seen[ev.id] = true
		if s.tombstoned(ctx, ev.accountID) {
			s.ack(ctx, m)
			rep.Tombstoned = append(rep.Tombstoned, ev.id)
			continue
		}
		// The event's span joins the message's trace (the worker's publish),
		// so the report's write shows in it; the batch span links them all.
		parent := s.tel.ExtractNATS(ctx, m.Headers())
		ectx, span := s.tracer.Start(parent, "report.apply_event",
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithLinks(trace.LinkFromContext(batchCtx)),
			trace.WithAttributes(
				attribute.String("account.id", ev.accountID),
				attribute.String("message.id", ev.messageID),
				attribute.String("event_id", ev.id),
				attribute.String("event_type", ev.typ),
				attribute.Int("attempt", int(ev.attempt))))
		batchSpan.AddLink(trace.LinkFromContext(ectx))
		evs = append(evs, pending{msg: m, ev: ev, ctx: ectx, span: span})
	}
	if len(evs) > 0 {
		s.applyAll(batchCtx, evs, &rep)
	}
	s.flushAcks(batchCtx)
	s.metrics.batch(batchCtx, &rep)
	if s.deps.Hooks.BatchDone != nil {
		s.deps.Hooks.BatchDone(rep)
	}
}

// tombstoned reports whether the account was deleted or terminated: its
// late events are dropped, not applied. When the state cannot be read the
// event is applied (an unknown message's events are dropped anyway).
func (s *Service) tombstoned(ctx context.Context, accountID string) bool {
	if s.states == nil {
		return false
	}
	e, err := s.states.State(ctx, accountID)
	if err != nil {
		s.log.WarnContext(ctx, "read account state of an event", "account_id", accountID, "error", err)
		return false
	}
	return e.State.Tombstone()
}

// applyAll applies evs in one transaction; if that fails it retries them one
// at a time so that an event the database rejects is terminated alone.
func (s *Service) applyAll(ctx context.Context, evs []pending, rep *BatchReport) {
	err := s.applyGroup(ctx, evs, rep)
	if err == nil {
		return
	}
	if len(evs) > 1 {
		s.log.WarnContext(ctx, "apply batch; retrying its events one by one", "events", len(evs), "error", err)
		for i := range evs {
			if err = s.applyGroup(ctx, evs[i:i+1], rep); err == nil {
				continue
			}
			if !pgerr.Refused(err) {
				s.retry(ctx, evs[i:], err, rep)
				return
			}
			s.reject(evs[i], err, rep)
		}
		return
	}
	if pgerr.Refused(err) {
		s.reject(evs[0], err, rep)
		return
	}
	s.retry(ctx, evs, err, rep)
}

// applyGroup applies evs in one transaction and, when it commits, acks them and
// ends their spans.
func (s *Service) applyGroup(ctx context.Context, evs []pending, rep *BatchReport) error {
	list := make([]event, len(evs))
	for i, p := range evs {
		list[i] = p.ev
	}
	actx, cancel := context.WithTimeout(ctx, s.cfg.ApplyTimeout)
	defer cancel()
	out, keys, err := s.store.apply(actx, list)
	if err != nil {
		return err
	}
	adverse := false
	for i, p := range evs {
		adverse = adverse || out[i] == outcomeApplied && reputation.Adverse(p.ev.typ, p.ev.errorClass)
	}
	s.assessReputation(ctx, keys, adverse)
	for i, p := range evs {
		switch out[i] {
		case outcomeApplied:
			rep.Applied = append(rep.Applied, p.ev.id)
		case outcomeDuplicate:
			rep.Duplicates = append(rep.Duplicates, p.ev.id)
			s.log.DebugContext(p.ctx, "event already applied", "account_id", p.ev.accountID, "message_id", p.ev.messageID, "event_id", p.ev.id)
		case outcomeUnknown:
			rep.Unknown = append(rep.Unknown, p.ev.id)
			s.log.InfoContext(p.ctx, "drop event of unknown message", "account_id", p.ev.accountID,
				"message_id", p.ev.messageID, "event_id", p.ev.id, "type", p.ev.typ)
			p.span.SetAttributes(attribute.Bool("dropped", true))
		}
		s.ack(p.ctx, p.msg)
		p.span.End()
	}
	return nil
}

// reject terminates an event the database cannot store.
func (s *Service) reject(p pending, err error, rep *BatchReport) {
	s.logMalformed(p.ctx, p.msg, p.ev.id, err)
	rep.Malformed = append(rep.Malformed, p.ev.id)
	p.span.RecordError(err)
	p.span.SetStatus(codes.Error, "rejected")
	p.span.End()
}

// retry asks JetStream to redeliver evs later: the database failed.
func (s *Service) retry(ctx context.Context, evs []pending, err error, rep *BatchReport) {
	s.log.ErrorContext(ctx, "apply events; will retry", "events", len(evs), "retry_in", s.cfg.RetryDelay, "error", err)
	for _, p := range evs {
		if nerr := p.msg.NakWithDelay(s.cfg.RetryDelay); nerr != nil {
			s.log.WarnContext(p.ctx, "nak event", "message_id", p.ev.messageID, "event_id", p.ev.id, "error", nerr)
		}
		rep.Retried = append(rep.Retried, p.ev.id)
		p.span.RecordError(err)
		p.span.SetStatus(codes.Error, "retry")
		p.span.End()
	}
}

func (s *Service) logMalformed(ctx context.Context, m jetstream.Msg, eventID string, err error) {
	var seq uint64
	if md, mdErr := m.Metadata(); mdErr == nil {
		seq = md.Sequence.Stream
	}
	s.log.WarnContext(ctx, "drop malformed event", "subject", m.Subject(), "stream_seq", seq, "event_id", eventID, "error", err)
	if terr := m.TermWithReason("malformed event"); terr != nil {
		s.log.WarnContext(ctx, "term event", "subject", m.Subject(), "error", terr)
	}
}

// ack acknowledges m; when the ack cannot go out (NATS is reconnecting) it is
// kept for flushAcks.
func (s *Service) ack(ctx context.Context, m jetstream.Msg) {
	if err := m.Ack(); err != nil {
		s.log.DebugContext(ctx, "ack event; will retry", "subject", m.Subject(), "error", err)
		s.unacked = append(s.unacked, m)
	}
}

// flushAcks sends the acks of the batch that could not go out, retrying
// until they do, the events' ack wait has passed (JetStream redelivers them
// then, and applying them again changes nothing) or ctx ends. The consumer
// fetches no new batch meanwhile: its flow is bounded by its acks, so an
// outage never piles up applied but unacknowledged events.
func (s *Service) flushAcks(ctx context.Context) {
	if len(s.unacked) == 0 {
		return
	}
	deadline := time.Now().Add(s.cfg.AckWait)
	delay := 50 * time.Millisecond
	for len(s.unacked) > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			s.log.WarnContext(ctx, "acks not sent; the events will be redelivered and applied again (no change)",
				"events", len(s.unacked), "error", s.unacked[0].Ack())
			break
		}
		left := s.unacked[:0]
		for _, m := range s.unacked {
			if err := m.Ack(); err != nil {
				left = append(left, m)
			}
		}
		s.unacked = left
		delay = min(2*delay, time.Second)
	}
	s.unacked = s.unacked[:0]
}
