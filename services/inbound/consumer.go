package inbound

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/namirasoft/email-sender/pkg/pgerr"
	"github.com/namirasoft/email-sender/pkg/queue"
)

// Consumer is the durable consumer of EMAIL_INBOUND that every replica
// records accepted mail from.
const Consumer = "inbound"

// Hooks let a test see the consumer's steps; nil hooks do nothing.
type Hooks struct {
	// Fetched is called with a batch of accepted mails taken from
	// EMAIL_INBOUND, before any of it is recorded.
	Fetched func(n int)
	// Recorded is called once a batch is recorded (its events stored),
	// before its mails are acknowledged.
	Recorded func(n int)
}

// drainIdle is how long the consumer, once told to stop, waits for more
// mail before it stops: what the MX stored last reaches it within that.
const drainIdle = 250 * time.Millisecond

// consume records the mail accepted on EMAIL_INBOUND until ctx ends, then
// goes on until no more comes for drainIdle (the sessions have ended by
// then, Run), at most ShutdownGrace, and returns nil. While JetStream is
// unreachable it keeps trying to create its consumer.
func (s *Service) consume(ctx context.Context) error {
	cfg := jetstream.ConsumerConfig{
		Durable:       Consumer,
		Description:   "inbound: accepted bounces and complaints into events and suppressions",
		FilterSubject: queue.InboundSubject,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.AckWait,
		// Room for a few replicas' buffers (each pulls two batches).
		MaxAckPending: 8 * s.cfg.BatchSize,
		// Accepted mail is never given up on for an outage (a database
		// outage only delays it); mail that cannot be recorded at all is
		// terminated (OutcomeRejected).
		MaxDeliver: -1,
	}
	var cons jetstream.Consumer
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := s.deps.JetStream.CreateOrUpdateConsumer(cctx, queue.InboundStream, cfg)
		cancel()
		if err == nil {
			cons = c
			break
		}
		s.log.WarnContext(ctx, "create consumer; retrying", "consumer", Consumer, "error", err, "retry_in", delay.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(2 * s.cfg.BatchSize))
	if err != nil {
		return fmt.Errorf("consume %s: %w", Consumer, err)
	}
	// Mail fetched but not recorded when it stops is delivered again
	// after the ack wait, to whichever replica pulls then.
	defer iter.Stop()
	s.log.InfoContext(ctx, "recording accepted mail", "consumer", Consumer, "batch_size", s.cfg.BatchSize)

	// The batch in flight is finished even when ctx ends.
	work := context.WithoutCancel(ctx)
	var drainUntil time.Time
	for {
		wait := time.Second
		if ctx.Err() != nil {
			if drainUntil.IsZero() {
				drainUntil = time.Now().Add(s.cfg.ShutdownGrace)
			}
			wait = drainIdle
		}
		batch, err := s.nextBatch(ctx, iter, wait)
		if len(batch) > 0 {
			s.handleBatch(work, batch)
		}
		switch {
		case errors.Is(err, nats.ErrTimeout):
			// Nothing came within wait.
			if ctx.Err() != nil {
				s.log.InfoContext(work, "inbound consumer stopped", "consumer", Consumer)
				return nil
			}
		case err == nil:
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			return fmt.Errorf("consume %s: %w", Consumer, err)
		default:
			s.log.WarnContext(work, "fetch accepted mail", "consumer", Consumer, "error", err)
			if ctx.Err() != nil {
				return nil
			}
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
		}
		if !drainUntil.IsZero() && time.Now().After(drainUntil) {
			s.log.WarnContext(work, "inbound consumer stopped before it was idle; the rest is recorded after the ack wait", "consumer", Consumer)
			return nil
		}
	}
}

// nextBatch waits up to wait for one mail (nats.ErrTimeout when none
// comes), then takes what is buffered or arrives within BatchWindow (only
// what is buffered once ctx has ended), up to BatchSize.
func (s *Service) nextBatch(ctx context.Context, iter jetstream.MessagesContext, wait time.Duration) ([]jetstream.Msg, error) {
	first, err := iter.Next(jetstream.NextMaxWait(wait))
	if err != nil {
		return nil, err
	}
	batch := []jetstream.Msg{first}
	deadline := time.Now().Add(s.cfg.BatchWindow)
	for len(batch) < s.cfg.BatchSize {
		// In slices, so that a stop cuts a long window short.
		wait := min(time.Until(deadline), 100*time.Millisecond)
		if wait < time.Millisecond || ctx.Err() != nil {
			// Only what is buffered already.
			wait = time.Millisecond
		}
		m, err := iter.Next(jetstream.NextMaxWait(wait))
		if errors.Is(err, nats.ErrTimeout) {
			if wait > time.Millisecond && time.Now().Before(deadline) {
				continue
			}
			break
		}
		if err != nil {
			return batch, err
		}
		batch = append(batch, m)
	}
	return batch, nil
}

// work is one accepted mail of a batch: its message on the stream and its
// requests, one per bounce address.
type work struct {
	msg  jetstream.Msg
	mail accepted
	ctx  context.Context
	span trace.Span
	reqs []*request
}

// err is the first error of w's requests.
func (w *work) err() error {
	for _, r := range w.reqs {
		if r.err != nil {
			return r.err
		}
	}
	return nil
}

// handleBatch records a batch of accepted mail and settles each: acked
// once recorded or dropped on purpose (no report, an unknown message, an
// address that no longer verifies), terminated when it can never be
// recorded, redelivered after RetryDelay on database or stream trouble.
// Recording again what was recorded (a crash before the acks) changes
// nothing: the event ids derive from the report, the suppression rule
// counts a report once.
func (s *Service) handleBatch(ctx context.Context, msgs []jetstream.Msg) {
	ctx, span := s.tracer.Start(ctx, "inbound.consume_batch", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.Int("messaging.batch.message_count", len(msgs))))
	defer span.End()
	if s.deps.Hooks.Fetched != nil {
		s.deps.Hooks.Fetched(len(msgs))
	}
	var (
		items []*work
		reqs  []*request
	)
	for _, m := range msgs {
		a, err := decodeAccepted(m)
		if err != nil {
			s.reject(ctx, m, err)
			continue
		}
		wctx, wspan := s.tracer.Start(s.deps.Telemetry.ExtractNATS(ctx, m.Headers()), "inbound.record",
			trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(trace.LinkFromContext(ctx)))
		w := &work{msg: m, mail: a, ctx: wctx, span: wspan}
		w.reqs = s.requests(wctx, a)
		items = append(items, w)
		for _, r := range w.reqs {
			if r.outcome == "" {
				reqs = append(reqs, r)
			}
		}
	}
	if len(reqs) > 0 {
		rctx, cancel := context.WithTimeout(ctx, s.cfg.ProcessTimeout)
		s.recordAll(rctx, reqs)
		cancel()
	}
	if s.deps.Hooks.Recorded != nil {
		s.deps.Hooks.Recorded(len(msgs))
	}
	var failed []*work
	for _, w := range items {
		if w.err() != nil {
			failed = append(failed, w)
			continue
		}
		s.settle(w, nil)
	}
	if len(failed) == 0 {
		return
	}
	if len(items) == 1 {
		s.settle(failed[0], failed[0].err())
		return
	}
	// One mail's data can fail the whole batch (the suppression
	// transaction is all or none): the failed ones again, one at a time,
	// so that only mail that cannot be recorded is given up on.
	s.log.WarnContext(ctx, "record batch; recording its failed mail one at a time", "mails", len(failed), "error", failed[0].err())
	for i, w := range failed {
		for _, r := range w.reqs {
			if r.err != nil {
				r.finish("", nil)
			}
		}
		if todo := w.pending(); len(todo) > 0 {
			rctx, cancel := context.WithTimeout(ctx, s.cfg.ProcessTimeout)
			s.recordAll(rctx, todo)
			cancel()
		}
		err := w.err()
		if err != nil && !pgerr.Refused(err) {
			// Database or stream trouble: the rest waits too.
			for _, rest := range failed[i:] {
				s.settle(rest, rest.err())
			}
			return
		}
		s.settle(w, err)
	}
}

// pending are w's requests with no outcome yet.
func (w *work) pending() []*request {
	var out []*request
	for _, r := range w.reqs {
		if r.outcome == "" {
			out = append(out, r)
		}
	}
	return out
}

// requests are the requests of a: one per bounce address that still
// verifies, each with the mail parsed once.
func (s *Service) requests(ctx context.Context, a accepted) []*request {
	var (
		reqs   []*request
		parsed *request
	)
	for _, rcpt := range a.rcpts {
		tok, err := s.ParseAddress(rcpt)
		if err != nil {
			// Verified at RCPT TO; its key has been removed since.
			s.log.WarnContext(ctx, "drop accepted mail whose bounce address no longer verifies", "rcpt", rcpt, "remote", a.remote, "error", err)
			reqs = append(reqs, &request{ctx: ctx, kind: "unverified", outcome: OutcomeIgnored})
			continue
		}
		if parsed == nil {
			// At an account's bounce domain the message must be that
			// account's (the owner the address verified for).
			parsed = s.parse(ctx, Mail{Token: &tok, AccountID: tok.AccountID, Raw: a.raw}, a.at)
			reqs = append(reqs, parsed)
			continue
		}
		r := *parsed
		r.mail.Token, r.mail.AccountID = &tok, tok.AccountID
		reqs = append(reqs, &r)
	}
	return reqs
}

// settle acks w (err nil), terminates it (err the database refuses its
// data) or has it redelivered after RetryDelay, and counts its requests.
func (s *Service) settle(w *work, err error) {
	defer w.span.End()
	var serr error
	switch {
	case err == nil:
		serr = w.msg.Ack()
	case pgerr.Refused(err):
		s.log.ErrorContext(w.ctx, "give up on accepted mail the database refuses", "remote", w.mail.remote, "error", err)
		for _, r := range w.reqs {
			if r.err != nil {
				r.finish(OutcomeRejected, err)
			}
		}
		serr = w.msg.TermWithReason("refused by the database")
	default:
		s.log.ErrorContext(w.ctx, "record accepted mail; will retry", "retry_in", s.cfg.RetryDelay.String(), "error", err)
		w.span.RecordError(err)
		serr = w.msg.NakWithDelay(s.cfg.RetryDelay)
	}
	if serr != nil {
		// It is delivered again after the ack wait and recorded again,
		// which changes nothing.
		s.log.WarnContext(w.ctx, "settle accepted mail", "error", serr)
	}
	for _, r := range w.reqs {
		s.metrics.report(w.ctx, r.kind, r.outcome)
	}
}

// reject terminates a message on EMAIL_INBOUND that is no accepted mail.
func (s *Service) reject(ctx context.Context, m jetstream.Msg, err error) {
	var seq uint64
	if md, mdErr := m.Metadata(); mdErr == nil {
		seq = md.Sequence.Stream
	}
	s.log.ErrorContext(ctx, "drop undecodable message of the inbound stream", "subject", m.Subject(), "stream_seq", seq, "error", err)
	s.metrics.report(ctx, "undecodable", OutcomeRejected)
	if terr := m.TermWithReason("not an accepted mail"); terr != nil {
		s.log.WarnContext(ctx, "term message of the inbound stream", "error", terr)
	}
}
