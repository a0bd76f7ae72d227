package inbound

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/telemetry"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
)

// message is what a report needs of the message it is about.
type message struct {
	id, accountID, providerID string
	attempts                  int32
	// recipients are the message's addresses (canonical, lower case).
	recipients []string
}

// messageStore finds the messages bounce addresses name.
type messageStore interface {
	// messages returns the stored ones of ids, by id.
	messages(ctx context.Context, ids []string) (map[string]message, error)
}

type pgStore struct{ pool *pgxpool.Pool }

func (s *pgStore) messages(ctx context.Context, ids []string) (map[string]message, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT m.id::text, m.account_id::text, m.provider_id::text, m.attempts,
			ARRAY(SELECT r.address FROM recipients r WHERE r.message_id = m.id AND r.account_id = m.account_id ORDER BY r.idx)
		FROM messages m WHERE m.id = ANY($1::uuid[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("look up %d messages: %w", len(ids), err)
	}
	out := make(map[string]message, len(ids))
	var m message
	_, err = pgx.ForEachRow(rows, []any{&m.id, &m.accountID, &m.providerID, &m.attempts, &m.recipients}, func() error {
		out[m.id] = m
		m.recipients = nil
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("look up %d messages: %w", len(ids), err)
	}
	return out, nil
}

// publisher puts delivery events on the events stream.
type publisher interface {
	// publish stores every group's events; errs[i] is groups[i]'s error.
	publish(ctx context.Context, groups []eventGroup) (errs []error)
}

// eventGroup are one report's events, with the context of its request
// (the trace the events carry).
type eventGroup struct {
	ctx    context.Context
	events []*queuev1.DeliveryEvent
}

type streamPublisher struct {
	js  jetstream.JetStream
	tel *telemetry.Telemetry
}

// publish puts events on the events stream as a worker does (Nats-Msg-Id =
// event id), all at once, and waits until JetStream stored each (or ctx
// ends).
func (p *streamPublisher) publish(ctx context.Context, groups []eventGroup) []error {
	errs := make([]error, len(groups))
	type pending struct {
		group int
		id    string
		ack   jetstream.PubAckFuture
	}
	var acks []pending
	for g, grp := range groups {
		for _, ev := range grp.events {
			data, err := proto.Marshal(ev)
			if err != nil {
				errs[g] = fmt.Errorf("encode event: %w", err)
				break
			}
			msg := &nats.Msg{Subject: queue.EventSubject(ev.GetAccountId(), ev.GetMessageId()), Data: data, Header: nats.Header{}}
			msg.Header.Set(jetstream.MsgIDHeader, ev.GetEventId())
			p.tel.InjectNATS(grp.ctx, msg.Header)
			ack, err := p.js.PublishMsgAsync(msg)
			if err != nil {
				errs[g] = fmt.Errorf("publish event %s: %w", ev.GetEventId(), err)
				break
			}
			acks = append(acks, pending{g, ev.GetEventId(), ack})
		}
	}
	for _, a := range acks {
		select {
		case <-a.ack.Ok():
		case err := <-a.ack.Err():
			if errs[a.group] == nil {
				errs[a.group] = fmt.Errorf("publish event %s: %w", a.id, err)
			}
		case <-ctx.Done():
			if errs[a.group] == nil {
				errs[a.group] = fmt.Errorf("publish event %s: %w", a.id, ctx.Err())
			}
		}
	}
	return errs
}
