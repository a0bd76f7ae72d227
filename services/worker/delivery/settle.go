package delivery

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// settlement is what becomes of a send job on JetStream once a delivery is
// done with it: the one decision a delivery ends in.
type settlement struct {
	kind settleKind
	// delay, for nakLater, is when the job comes back.
	delay time.Duration
	// reason, for term, is recorded on the stream's advisory.
	reason string
}

type settleKind int

const (
	// leave: settle nothing; another delivery owns the job now (its lease
	// was taken over), or the worker stops and JetStream redelivers it.
	leave settleKind = iota
	// ack: the job is done (sent, failed for good and recorded, replayed,
	// moved to a fallback).
	ack
	// nakLater: the job comes back after delay (a retry, worker trouble, a
	// lease held elsewhere).
	nakLater
	// term: the job can never be delivered and must not come back.
	term
)

func (k settleKind) String() string {
	switch k {
	case ack:
		return "ack"
	case nakLater:
		return "nak"
	case term:
		return "term"
	}
	return "leave"
}

// settleJob applies s to msg, the only place a send job is acked, nak'ed or
// terminated. A failed settlement is logged: JetStream then redelivers the
// job after the ack wait, and the attempt record makes that redelivery
// harmless (a replay, never a second send).
func settleJob(ctx context.Context, log *slog.Logger, msg jetstream.Msg, s settlement) {
	var err error
	switch s.kind {
	case leave:
		return
	case ack:
		err = msg.Ack()
	case nakLater:
		err = msg.NakWithDelay(s.delay)
	case term:
		if s.reason != "" {
			err = msg.TermWithReason(s.reason)
		} else {
			err = msg.Term()
		}
	}
	if err != nil {
		log.WarnContext(ctx, "settle send job; JetStream will redeliver it", "settlement", s.kind.String(), "error", err)
	}
}

// keepAlive tells JetStream that the delivery of msg is still under way (an
// in-progress ack: the job's ack wait starts again), the only place a send job
// gets one. A failure is logged: JetStream may then hand the job to another
// delivery after the ack wait, and the attempt's lease keeps that one from
// sending beside this one.
func keepAlive(ctx context.Context, log *slog.Logger, msg jetstream.Msg) {
	if err := msg.InProgress(); err != nil {
		log.WarnContext(ctx, "in-progress ack of send job; JetStream may redeliver it after the ack wait", "error", err)
	}
}

// settleJob ends the delivery's hold on its job (see settleJob).
func (d *delivery) settleJob(ctx context.Context, s settlement) { settleJob(ctx, d.log, d.msg, s) }

// keepAlive restarts the job's ack wait (see keepAlive).
func (d *delivery) keepAlive(ctx context.Context) { keepAlive(ctx, d.log, d.msg) }
