package webhook

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/namirasoft/email-sender/pkg/queue"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

var deliveryNamespace = uuid.MustParse("0b8e3c52-7a8f-4d8e-9a0f-7c2a51d6e9b4")

// DeliveryID is the deterministic id of the delivery of an event for one
// recipient to one endpoint (and its webhook-id header).
func DeliveryID(endpointID, eventID, recipient string) string {
	return uuid.NewSHA1(deliveryNamespace, []byte(endpointID+"|"+eventID+"|"+recipient)).String()
}

// fanOut consumes EMAIL_EVENTS with its own durable consumer and records a
// delivery per (matching endpoint, recipient) of each event, outbox style:
// an event is acknowledged once its deliveries are committed, so none is
// lost; an event fanned out twice is the same deliveries (DeliveryID).
func (s *Service) fanOut(ctx context.Context, p *pipeline) error {
	cfg := jetstream.ConsumerConfig{
		Durable:       s.cfg.Consumer,
		Description:   "report: events into webhook deliveries",
		FilterSubject: queue.EventFilter,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 4 * s.cfg.Batch,
		MaxDeliver:    -1,
	}
	var cons jetstream.Consumer
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := s.js.CreateOrUpdateConsumer(cctx, queue.EventStream, cfg)
		cancel()
		if err == nil {
			cons = c
			break
		}
		s.log.WarnContext(ctx, "create webhook consumer; retrying", "consumer", s.cfg.Consumer, "error", err, "retry_in", delay.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(2 * s.cfg.Batch))
	if err != nil {
		return fmt.Errorf("webhook consumer: %w", err)
	}
	defer iter.Stop()
	stop := context.AfterFunc(ctx, iter.Drain)
	defer stop()
	// Two stages: while one batch's deliveries are inserted (in stream
	// order, one batch at a time), the next is fetched and built.
	work := context.WithoutCancel(ctx)
	built := make(chan builtBatch, 1)
	inserted := make(chan struct{})
	go func() {
		defer close(inserted)
		for b := range built {
			s.settleBatch(ctx, p, b)
		}
	}()
	defer func() { close(built); <-inserted }()
	for {
		batch, err := s.nextBatch(iter)
		if len(batch) > 0 {
			ds, berr := s.deliveriesOf(work, batch)
			built <- builtBatch{msgs: batch, ds: ds, err: berr}
		}
		switch {
		case err == nil:
		case errors.Is(err, jetstream.ErrMsgIteratorClosed):
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("webhook consumer: %w", err)
		default:
			s.log.WarnContext(ctx, "fetch events for webhooks", "error", err)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}
}

func (s *Service) nextBatch(iter jetstream.MessagesContext) ([]jetstream.Msg, error) {
	first, err := iter.Next()
	if err != nil {
		return nil, err
	}
	batch := []jetstream.Msg{first}
	for len(batch) < s.cfg.Batch {
		m, err := iter.Next(jetstream.NextMaxWait(5 * time.Millisecond))
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

// builtBatch is a batch of events with the deliveries they make (or the
// error making them).
type builtBatch struct {
	msgs []jetstream.Msg
	ds   []delivery
	err  error
}

// settleBatch records the deliveries of a batch and settles its messages:
// acknowledged once the deliveries are committed, redelivered otherwise.
//
// When the dispatch pipeline has room for them, the deliveries that may go
// out at once are stored claimed and handed to its senders straight away
// (no claim round trip); the others wait for the dispatcher's claim.
func (s *Service) settleBatch(ctx context.Context, p *pipeline, b builtBatch) {
	work := context.WithoutCancel(ctx)
	msgs, ds, err := b.msgs, b.ds, b.err
	var leased []string
	if err == nil {
		began, reserved := time.Now(), p.reserve(len(ds))
		var until *time.Time
		if reserved {
			t := s.now().Add(s.cfg.Lease)
			until = &t
		}
		leased, err = s.store.insert(work, ds, until)
		if reserved {
			p.release(len(ds) - len(leased))
		}
		if err == nil && len(leased) > 0 {
			defer p.enqueue(ctx, ds, leased, began)
		}
	}
	if err != nil {
		s.log.WarnContext(ctx, "webhook fan-out failed; redelivering", "events", len(msgs), "error", err)
		for _, m := range msgs {
			_ = m.NakWithDelay(2 * time.Second)
		}
		return
	}
	for _, m := range msgs {
		_ = m.Ack()
	}
	if len(ds) > len(leased) {
		s.wake()
	}
}

type streamEvent struct {
	pb  *queuev1.DeliveryEvent
	seq uint64
}

// deliveriesOf are the deliveries the events of msgs make.
func (s *Service) deliveriesOf(ctx context.Context, msgs []jetstream.Msg) ([]delivery, error) {
	var evs []streamEvent
	accounts := map[string]bool{}
	for _, m := range msgs {
		var pb queuev1.DeliveryEvent
		if err := proto.Unmarshal(m.Data(), &pb); err != nil {
			continue // malformed: the report's consumer terminates it
		}
		_, msgType := Types[pb.GetType()]
		_, acctType := AccountTypes[pb.GetType()]
		if !msgType && !acctType || pb.GetWebhookId() != "" {
			continue
		}
		md, err := m.Metadata()
		if err != nil {
			continue
		}
		evs = append(evs, streamEvent{pb: &pb, seq: md.Sequence.Stream})
		accounts[pb.GetAccountId()] = true
	}
	if len(evs) == 0 {
		return nil, nil
	}
	eps, err := s.store.matchers(ctx, validUUIDs(slices.Collect(maps.Keys(accounts))))
	if err != nil {
		return nil, err
	}
	if len(eps) == 0 {
		return nil, nil
	}
	// Each message once: a batch often holds many events of one message (one
	// per recipient, one per attempt), and each lookup reads its recipients.
	var mAccts, mIDs []string
	seen := map[string]bool{}
	for _, e := range evs {
		if _, ok := AccountTypes[e.pb.GetType()]; ok {
			continue // no message
		}
		id := e.pb.GetMessageId()
		if len(eps[e.pb.GetAccountId()]) > 0 && !seen[id] && isUUID(id) && isUUID(e.pb.GetAccountId()) {
			seen[id] = true
			mAccts = append(mAccts, e.pb.GetAccountId())
			mIDs = append(mIDs, id)
		}
	}
	info, err := s.store.messages(ctx, mAccts, mIDs)
	if err != nil {
		return nil, err
	}
	now := s.now()
	var out []delivery
	for _, e := range evs {
		if name, ok := AccountTypes[e.pb.GetType()]; ok {
			ds, err := accountDeliveries(e, name, eps[e.pb.GetAccountId()], now)
			if err != nil {
				return nil, err
			}
			out = append(out, ds...)
			continue
		}
		mi, ok := info[e.pb.GetMessageId()]
		if !ok {
			continue // the message is gone (its account's data deleted)
		}
		name := Types[e.pb.GetType()]
		rcpts := e.pb.GetRecipients()
		if len(rcpts) == 0 {
			rcpts = mi.Recipients
		}
		for _, ep := range eps[e.pb.GetAccountId()] {
			if !ep.matches(name, mi.Tags) {
				continue
			}
			for _, r := range rcpts {
				r = strings.ToLower(r)
				body, err := payloadOf(e.pb, name, r, mi.Tags).Encode()
				if err != nil {
					return nil, err
				}
				out = append(out, delivery{
					ID: DeliveryID(ep.ID, e.pb.GetEventId(), r), EndpointID: ep.ID, AccountID: ep.AccountID,
					EventID: e.pb.GetEventId(), Seq: int64(e.seq), EventType: typeName(name), MessageID: e.pb.GetMessageId(),
					Recipient: r, Payload: body, At: now,
				})
			}
		}
	}
	return out, nil
}

// accountDeliveries are the deliveries of an account-level event (named
// name, one of AccountTypes): one per endpoint that names it, with no
// recipient. They are ordered per provider configuration, which stands in
// for the message (the event's message_id is the configuration's id too).
func accountDeliveries(e streamEvent, name string, eps []matcher, now time.Time) ([]delivery, error) {
	var out []delivery
	for _, ep := range eps {
		if !slices.Contains(ep.Types, name) {
			continue
		}
		body, err := reputationPayloadOf(e.pb, name).Encode()
		if err != nil {
			return nil, err
		}
		out = append(out, delivery{
			ID: DeliveryID(ep.ID, e.pb.GetEventId(), ""), EndpointID: ep.ID, AccountID: ep.AccountID,
			EventID: e.pb.GetEventId(), Seq: int64(e.seq), EventType: typeName(name), MessageID: e.pb.GetProviderId(),
			Payload: body, At: now,
		})
	}
	return out, nil
}

func reputationPayloadOf(pb *queuev1.DeliveryEvent, name string) ReputationPayload {
	at := pb.GetOccurredAt().AsTime().UTC()
	r := pb.GetReputation()
	ratio := func(a int64) float64 {
		if r.GetSends() <= 0 {
			return 0
		}
		return float64(a) / float64(r.GetSends())
	}
	return ReputationPayload{
		Type: typeName(name), Timestamp: at,
		Data: ReputationData{
			EventID: pb.GetEventId(), Event: pb.GetType(), OccurredAt: at, ProviderID: pb.GetProviderId(),
			Level: r.GetLevel(), Sends: r.GetSends(), Bounces: r.GetBounces(), Complaints: r.GetComplaints(),
			BounceRate: ratio(r.GetBounces()), ComplaintRate: ratio(r.GetComplaints()),
			WindowSeconds: r.GetWindowSeconds(), Detail: pb.GetDetail(),
		},
	}
}

// matches reports whether the endpoint takes a message event named name of a
// message with tags: no type filter means every message event type.
func (m matcher) matches(name string, tags map[string]string) bool {
	if len(m.Types) > 0 && !slices.Contains(m.Types, name) {
		return false
	}
	for k, v := range m.Tags {
		if got, ok := tags[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func payloadOf(pb *queuev1.DeliveryEvent, name, recipient string, tags map[string]string) Payload {
	at := pb.GetOccurredAt().AsTime().UTC()
	p := Payload{
		Type: typeName(name), Timestamp: at,
		Data: Data{
			EventID: pb.GetEventId(), MessageID: pb.GetMessageId(), Recipient: recipient,
			Status: emailsenderv1.MessageStatus_Value_name[int32(pb.GetStatus())], Event: pb.GetType(),
			OccurredAt: at, Attempt: pb.GetAttempt(), ProviderResponse: pb.GetProviderResponse(),
			ErrorClass: pb.GetErrorClass(), Detail: pb.GetDetail(), Tags: tags,
		},
	}
	if pb.GetRetryAt() != nil {
		t := pb.GetRetryAt().AsTime().UTC()
		p.Data.RetryAt = &t
	}
	return p
}

func isUUID(s string) bool { _, err := uuid.Parse(s); return err == nil }

func validUUIDs(ss []string) []string {
	out := ss[:0]
	for _, s := range ss {
		if isUUID(s) {
			out = append(out, s)
		}
	}
	return out
}
