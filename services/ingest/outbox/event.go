package outbox

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/queue"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
)

// AcceptedEvent is the ACCEPTED event of a message accepted as QUEUED (or
// the SCHEDULED event of one accepted as SCHEDULED) as it goes on the events
// stream, for the report's event stream and webhooks: the same event, with
// the same id, as the one store.Accept wrote to PostgreSQL.
//
// The accepting call publishes it with the job and the outbox row stays until
// both are acknowledged, so the relay publishes a QUEUED message's event when
// the call could not. A SCHEDULED message's event is published by the call
// and again by the relay when the message is due: JetStream drops the second
// within its duplicate window; later it is a repetition with the same event
// id (consumers deduplicate by it).
//
// status is the message's status: SCHEDULED makes the SCHEDULED event, any
// other (QUEUED, or later when the relay comes after the worker) the ACCEPTED
// event, whose status is QUEUED. detail is the event's detail: for a
// templated message the template it was rendered from
// (templates.AcceptedDetail), the same on every publication.
func AcceptedEvent(accountID, messageID string, status msgstatus.Status, at time.Time, detail string) (*nats.Msg, error) {
	typ, accepted := queue.EventAccepted, msgstatus.Queued
	if status == msgstatus.Scheduled {
		typ, accepted = queue.EventScheduled, msgstatus.Scheduled
	}
	id := queue.EventID(messageID, 0, typ, "")
	data, err := proto.Marshal(&queuev1.DeliveryEvent{
		EventId: id, MessageId: messageID, AccountId: accountID, Type: typ,
		Status: accepted, OccurredAt: timestamppb.New(at), Detail: detail,
	})
	if err != nil {
		return nil, fmt.Errorf("encode %s event: %w", typ, err)
	}
	return queue.NewMsg(queue.EventSubject(accountID, messageID), id, data), nil
}

// ContentGoneEvent is the FAILED event of a message whose job the relay
// could not publish because its content is no longer stored: retention keeps
// the content of every message in the outbox (pkg/partition,
// KeepWhileQueued), so only a partition dropped by hand gets here. The
// message then ends FAILED, as any message that cannot be sent, rather than
// waiting in the outbox forever.
func ContentGoneEvent(accountID, messageID string, at time.Time) (*nats.Msg, error) {
	id := queue.EventID(messageID, 0, queue.EventFailed, "")
	data, err := proto.Marshal(&queuev1.DeliveryEvent{
		EventId: id, MessageId: messageID, AccountId: accountID, Type: queue.EventFailed,
		Status: msgstatus.Failed, OccurredAt: timestamppb.New(at), ErrorClass: "permanent",
		Detail: "the message's content was purged before it could be sent",
	})
	if err != nil {
		return nil, fmt.Errorf("encode %s event: %w", queue.EventFailed, err)
	}
	return queue.NewMsg(queue.EventSubject(accountID, messageID), id, data), nil
}
