package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publisher is the part of JetStream that publishes (jetstream.JetStream
// implements it).
type Publisher interface {
	PublishMsgAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
}

// ErrDisconnected means the NATS connection is down: publishing is left to
// whoever retries (the outbox relay, a redelivery).
var ErrDisconnected = errors.New("nats connection is not connected")

// Connected reports whether p's NATS connection is up, when p can tell
// (jetstream.JetStream can). Publishing into a disconnected client would only
// queue the message in its reconnect buffer and wait.
func Connected(p Publisher) bool {
	c, ok := p.(interface{ Conn() *nats.Conn })
	if !ok || c.Conn() == nil {
		return true
	}
	return c.Conn().IsConnected()
}

// NewMsg is a message on subject whose Nats-Msg-Id is id, so that JetStream
// drops a second publish of it within the stream's duplicate window.
func NewMsg(subject, id string, data []byte) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, id)
	return m
}

// PublishAll publishes msgs concurrently and waits up to timeout for their
// acknowledgements. errs[i] is nil when msgs[i] is stored (or already was: a
// duplicate). It is the one publish-and-wait of the code base.
func PublishAll(ctx context.Context, p Publisher, msgs []*nats.Msg, timeout time.Duration, opts ...jetstream.PublishOpt) []error {
	if !Connected(p) {
		errs := make([]error, len(msgs))
		for i := range errs {
			errs[i] = ErrDisconnected
		}
		return errs
	}
	futures, errs := PublishAsync(p, msgs, opts...)
	for i, err := range Await(ctx, futures, timeout) {
		if errs[i] == nil {
			errs[i] = err
		}
	}
	return errs
}

// PublishAsync publishes msgs without waiting. futures[i] is nil where
// errs[i] says why msgs[i] could not be sent.
func PublishAsync(p Publisher, msgs []*nats.Msg, opts ...jetstream.PublishOpt) ([]jetstream.PubAckFuture, []error) {
	futures := make([]jetstream.PubAckFuture, len(msgs))
	errs := make([]error, len(msgs))
	for i, m := range msgs {
		f, err := p.PublishMsgAsync(m, opts...)
		if err != nil {
			errs[i] = fmt.Errorf("publish %s: %w", m.Header.Get(jetstream.MsgIDHeader), err)
			continue
		}
		futures[i] = f
	}
	return futures, errs
}

// Await waits up to timeout (and while ctx lasts) for the acknowledgements of
// futures; errs[i] is nil when futures[i]'s message is stored or futures[i] is
// nil (nothing was sent).
func Await(ctx context.Context, futures []jetstream.PubAckFuture, timeout time.Duration) []error {
	id := func(f jetstream.PubAckFuture) string { return f.Msg().Header.Get(jetstream.MsgIDHeader) }
	errs := make([]error, len(futures))
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs[i] = fmt.Errorf("publish %s: %w", id(f), err)
		case <-timer.C:
			for j := i; j < len(futures); j++ {
				if futures[j] != nil && errs[j] == nil && !Acked(futures[j]) {
					errs[j] = fmt.Errorf("publish %s: no acknowledgement within %s", id(futures[j]), timeout)
				}
			}
			return errs
		case <-ctx.Done():
			for j := i; j < len(futures); j++ {
				if futures[j] != nil && errs[j] == nil && !Acked(futures[j]) {
					errs[j] = fmt.Errorf("publish %s: %w", id(futures[j]), ctx.Err())
				}
			}
			return errs
		}
	}
	return errs
}

// Acked reports whether f has been acknowledged already, without waiting.
func Acked(f jetstream.PubAckFuture) bool {
	select {
	case <-f.Ok():
		return true
	default:
		return false
	}
}
