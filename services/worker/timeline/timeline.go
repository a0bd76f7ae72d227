// Package timeline holds a delivery's events, the message's timeline: it
// collects them in order (Set), encodes them, and publishes them on
// EMAIL_EVENTS (Publisher), each with Nats-Msg-Id = its event id so that
// publishing them again is harmless.
package timeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/telemetry"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// Publisher publishes a job's delivery events and waits until JetStream
// stored them all.
type Publisher struct {
	js  jetstream.JetStream
	tel *telemetry.Telemetry
}

// NewPublisher publishes on js, carrying the trace context of tel.
func NewPublisher(js jetstream.JetStream, tel *telemetry.Telemetry) *Publisher {
	return &Publisher{js: js, tel: tel}
}

// Publish sends encoded events of one message. Each carries Nats-Msg-Id = its
// event id, so publishing the same events again is harmless.
func (p *Publisher) Publish(ctx context.Context, accountID, messageID string, events [][]byte, ids []string) error {
	futures, err := p.PublishAsync(ctx, accountID, messageID, events, ids)
	if err != nil {
		return err
	}
	return p.Wait(ctx, futures)
}

// PublishAsync sends encoded events of one message without waiting for
// JetStream's acknowledgements; Wait (or Unconfirmed.Pending) checks them later.
func (p *Publisher) PublishAsync(ctx context.Context, accountID, messageID string, events [][]byte, ids []string) ([]jetstream.PubAckFuture, error) {
	if len(events) == 0 {
		return nil, nil
	}
	subject := queue.EventSubject(accountID, messageID)
	msgs := make([]*nats.Msg, len(events))
	for i, data := range events {
		msgs[i] = queue.NewMsg(subject, ids[i], data)
		p.tel.InjectNATS(ctx, msgs[i].Header)
	}
	futures, errs := queue.PublishAsync(p.js, msgs)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("publish event: %w", err)
	}
	return futures, nil
}

// eventAckTimeout bounds the wait for the acknowledgements of one message's
// events.
const eventAckTimeout = 10 * time.Second

// Wait waits until JetStream acknowledged every future.
func (p *Publisher) Wait(ctx context.Context, futures []jetstream.PubAckFuture) error {
	if err := errors.Join(queue.Await(ctx, futures, eventAckTimeout)...); err != nil {
		return fmt.Errorf("publish event: %w", err)
	}
	return nil
}

// Unconfirmed are events published without waiting (before the provider
// call): those whose acknowledgement has not arrived, or failed, are published
// again with the next events, and JetStream drops the copies it already has.
type Unconfirmed struct {
	Data    [][]byte
	IDs     []string
	Futures []jetstream.PubAckFuture
}

// Pending returns the events of u not acknowledged (yet).
func (u *Unconfirmed) Pending() (data [][]byte, ids []string) {
	if u == nil {
		return nil, nil
	}
	for i, f := range u.Futures {
		select {
		case <-f.Ok():
			continue
		default:
		}
		data, ids = append(data, u.Data[i]), append(ids, u.IDs[i])
	}
	return data, ids
}

// Set collects a job's events in order.
type Set struct {
	job  *queuev1.SendJob
	now  func() time.Time
	last time.Time
	list []*queuev1.DeliveryEvent
}

// NewSet collects events of job, stamped with now.
func NewSet(job *queuev1.SendJob, now func() time.Time) *Set {
	return &Set{job: job, now: now}
}

// stamp returns the time of the next event, strictly after the previous one at
// the database's microsecond resolution, so the timeline keeps the order in
// which the worker saw things happen.
func (s *Set) stamp() time.Time {
	t := s.now().Truncate(time.Microsecond)
	if !t.After(s.last) {
		t = s.last.Add(time.Microsecond)
	}
	s.last = t
	return t
}

// Add appends an event of typ and returns it for the caller to complete.
// recipients are those it concerns (nil: all); recipientKey makes the event id
// of a per-recipient event unique.
func (s *Set) Add(typ string, status v1.MessageStatus_Value, attempt int, recipients []string, recipientKey string) *queuev1.DeliveryEvent {
	ev := &queuev1.DeliveryEvent{
		EventId:    queue.EventID(s.job.GetMessageId(), attempt, typ, recipientKey),
		MessageId:  s.job.GetMessageId(),
		AccountId:  s.job.GetAccountId(),
		ProviderId: s.job.GetProviderId(),
		Type:       typ,
		Status:     status,
		OccurredAt: timestamppb.New(s.stamp()),
		Attempt:    int32(attempt),
		Recipients: recipients,
	}
	s.list = append(s.list, ev)
	return ev
}

// List returns the events collected so far.
func (s *Set) List() []*queuev1.DeliveryEvent { return s.list }

// Reset forgets the events collected so far (they were published); the
// stamps of the next ones still come after theirs.
func (s *Set) Reset() { s.list = s.list[:0] }

// Encode returns the events as bytes plus their ids.
func (s *Set) Encode() ([][]byte, []string, error) {
	out := make([][]byte, 0, len(s.list))
	ids := make([]string, 0, len(s.list))
	for _, ev := range s.list {
		b, err := proto.Marshal(ev)
		if err != nil {
			return nil, nil, fmt.Errorf("encode event: %w", err)
		}
		out = append(out, b)
		ids = append(ids, ev.GetEventId())
	}
	return out, ids, nil
}

// DecodeIDs returns the ids of recorded events (for re-publishing).
func DecodeIDs(events [][]byte) ([]string, error) {
	ids := make([]string, 0, len(events))
	for _, b := range events {
		var ev queuev1.DeliveryEvent
		if err := proto.Unmarshal(b, &ev); err != nil {
			return nil, fmt.Errorf("decode recorded event: %w", err)
		}
		ids = append(ids, ev.GetEventId())
	}
	return ids, nil
}
