package inbound

import (
	"context"
	"errors"
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

// errNotFound: no such message.
var errNotFound = errors.New("not found")

// message is what a report needs of the message it is about.
type message struct {
	id, accountID, providerID string
	attempts                  int32
	// recipients are the message's addresses (canonical, lower case).
	recipients []string
}

// messageStore finds the message a bounce address names.
type messageStore interface {
	message(ctx context.Context, id string) (message, error)
}

type pgStore struct{ pool *pgxpool.Pool }

func (s *pgStore) message(ctx context.Context, id string) (message, error) {
	m := message{id: id}
	err := s.pool.QueryRow(ctx, `
		SELECT m.account_id::text, m.provider_id::text, m.attempts,
			ARRAY(SELECT r.address FROM recipients r WHERE r.message_id = m.id AND r.account_id = m.account_id ORDER BY r.idx)
		FROM messages m WHERE m.id = $1`, id).Scan(&m.accountID, &m.providerID, &m.attempts, &m.recipients)
	if errors.Is(err, pgx.ErrNoRows) {
		return message{}, errNotFound
	}
	if err != nil {
		return message{}, fmt.Errorf("look up message %s: %w", id, err)
	}
	return m, nil
}

// publisher puts delivery events on the events stream.
type publisher interface {
	publish(ctx context.Context, events []*queuev1.DeliveryEvent) error
}

type streamPublisher struct {
	js  jetstream.JetStream
	tel *telemetry.Telemetry
}

// publish puts events on the events stream as a worker does (Nats-Msg-Id =
// event id) and waits for JetStream to store each.
func (p *streamPublisher) publish(ctx context.Context, events []*queuev1.DeliveryEvent) error {
	for _, ev := range events {
		data, err := proto.Marshal(ev)
		if err != nil {
			return fmt.Errorf("encode event: %w", err)
		}
		msg := &nats.Msg{Subject: queue.EventSubject(ev.GetAccountId(), ev.GetMessageId()), Data: data, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, ev.GetEventId())
		p.tel.InjectNATS(ctx, msg.Header)
		if _, err := p.js.PublishMsg(ctx, msg); err != nil {
			return fmt.Errorf("publish event %s: %w", ev.GetEventId(), err)
		}
	}
	return nil
}
