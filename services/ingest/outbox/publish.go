// Package outbox moves accepted messages from PostgreSQL onto JetStream without
// losing or doubling one: the accepting call publishes its jobs at once and
// hands the acknowledged ones to a Deleter, which removes their outbox rows in
// batches; the Relay publishes whatever is still in the outbox when it is due
// (scheduled messages, and jobs whose first publish failed). Every publish
// carries Nats-Msg-Id = message id, so JetStream drops a job published twice
// within its duplicate window.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publisher is the part of JetStream the outbox needs (jetstream.JetStream
// implements it).
type Publisher interface {
	PublishMsgAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
}

// ErrDisconnected means the NATS connection is down; publishing is left to the
// relay, which retries when it is back.
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

// NewMsg builds the JetStream message of a job.
func NewMsg(subject, messageID string, content []byte) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = content
	m.Header.Set(jetstream.MsgIDHeader, messageID)
	return m
}

// PublishAll publishes msgs concurrently to stream and waits up to timeout for
// their acknowledgements. errs[i] is nil when msgs[i] is stored on the stream
// (or was already: a duplicate).
func PublishAll(ctx context.Context, p Publisher, stream string, msgs []*nats.Msg, timeout time.Duration) []error {
	errs := make([]error, len(msgs))
	if len(msgs) == 0 {
		return errs
	}
	if !Connected(p) {
		for i := range errs {
			errs[i] = ErrDisconnected
		}
		return errs
	}
	futures := make([]jetstream.PubAckFuture, len(msgs))
	for i, m := range msgs {
		f, err := p.PublishMsgAsync(m, jetstream.WithExpectStream(stream))
		if err != nil {
			errs[i] = fmt.Errorf("publish %s: %w", m.Header.Get(jetstream.MsgIDHeader), err)
			continue
		}
		futures[i] = f
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs[i] = fmt.Errorf("publish %s: %w", msgs[i].Header.Get(jetstream.MsgIDHeader), err)
		case <-timer.C:
			for j := i; j < len(futures); j++ {
				if futures[j] != nil && errs[j] == nil && !acked(futures[j]) {
					errs[j] = fmt.Errorf("publish %s: no acknowledgement within %s", msgs[j].Header.Get(jetstream.MsgIDHeader), timeout)
				}
			}
			return errs
		case <-ctx.Done():
			for j := i; j < len(futures); j++ {
				if futures[j] != nil && errs[j] == nil && !acked(futures[j]) {
					errs[j] = fmt.Errorf("publish %s: %w", msgs[j].Header.Get(jetstream.MsgIDHeader), ctx.Err())
				}
			}
			return errs
		}
	}
	return errs
}

// acked reports whether f has already been acknowledged, without waiting.
func acked(f jetstream.PubAckFuture) bool {
	select {
	case <-f.Ok():
		return true
	default:
		return false
	}
}
