package report_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/queue"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
)

func TestConsumerAppliesLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	a := b.newAccount(t)
	t0 := time.Now().Add(-time.Minute).UTC()
	id := b.newMessage(t, a, msgSpec{to: []string{"Ann@Example.com"}, cc: []string{"bob@example.com"}, createdAt: t0})

	started1 := event(a, id, queue.EventStarted, msgstatus.Sending, 1, t0.Add(1*time.Second))
	retry := event(a, id, queue.EventRetry, msgstatus.Retrying, 1, t0.Add(2*time.Second))
	retry.ErrorClass, retry.Detail, retry.ProviderResponse = "transient", "connection reset", "421 try later"
	retry.RetryAt = timestamppb.New(t0.Add(30 * time.Second))
	started2 := event(a, id, queue.EventStarted, msgstatus.Sending, 2, t0.Add(31*time.Second))
	sent := event(a, id, queue.EventSent, msgstatus.Sent, 2, t0.Add(32*time.Second))
	sent.ProviderResponse, sent.ProviderMessageId = "250 2.0.0 Ok: queued as 4F1C2", "4F1C2"

	steps := []struct {
		ev       *queuev1.DeliveryEvent
		want     msgstatus.Status
		attempts int32
	}{
		{started1, msgstatus.Sending, 1},
		{retry, msgstatus.Retrying, 1},
		{started2, msgstatus.Sending, 2},
		{sent, msgstatus.Sent, 2},
	}
	for _, s := range steps {
		b.publish(t, ctx, s.ev)
		b.wait(t, "applied", s.ev.GetEventId())
		got := b.get(t, a, id)
		require.Equal(t, s.want, got.GetMessage().GetStatus(), "after %s", s.ev.GetType())
		require.Equal(t, s.attempts, got.GetMessage().GetAttempts(), "after %s", s.ev.GetType())
		for addr, st := range recipientStatuses(got) {
			require.Equal(t, s.want, st, "recipient %s after %s", addr, s.ev.GetType())
		}
	}

	got := b.get(t, a, id)
	m := got.GetMessage()
	require.Equal(t, "4F1C2", m.GetProviderMessageId())
	require.Equal(t, "connection reset", m.GetLastError())
	require.WithinDuration(t, sent.GetOccurredAt().AsTime(), m.GetUpdatedAt().AsTime(), time.Microsecond)
	require.Equal(t, []string{queue.EventAccepted, queue.EventStarted, queue.EventRetry, queue.EventStarted, queue.EventSent}, eventTypes(got))
	ev := got.GetEvents()[2]
	require.Equal(t, retry.GetEventId(), ev.GetEventId())
	require.Equal(t, "transient", ev.GetErrorClass())
	require.Equal(t, "421 try later", ev.GetProviderResponse())
	require.WithinDuration(t, retry.GetRetryAt().AsTime(), ev.GetRetryAt().AsTime(), time.Microsecond)
	require.Equal(t, "250 2.0.0 Ok: queued as 4F1C2", got.GetEvents()[4].GetProviderResponse())
	require.Equal(t, "ann@example.com", got.GetRecipients()[0].GetAddress().GetAddress())
	require.Equal(t, "250 2.0.0 Ok: queued as 4F1C2", got.GetRecipients()[0].GetDetail())
	require.Equal(t, "cc", got.GetRecipients()[1].GetKind())
}

// The ACCEPTED event (ingest publishes it with the job; the timeline row is
// the report's to store) adds its row and leaves the message's row alone:
// it changes nothing of it. The next event does change it.
func TestConsumerAcceptedStoresItsRowOnly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	a := b.newAccount(t)
	t0 := time.Now().Add(-time.Minute).UTC()
	id := b.newMessage(t, a, msgSpec{createdAt: t0, unreported: true})
	version := func() string {
		var x string
		require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT xmin::text FROM messages WHERE id = $1`, id).Scan(&x))
		return x
	}
	before := version()

	accepted := event(a, id, queue.EventAccepted, msgstatus.Queued, 0, t0)
	b.publish(t, ctx, accepted)
	b.wait(t, "applied", accepted.GetEventId())
	got := b.get(t, a, id)
	require.Equal(t, []string{queue.EventAccepted}, eventTypes(got))
	require.Equal(t, msgstatus.Queued, got.GetMessage().GetStatus())
	require.Equal(t, before, version(), "the message's row was not rewritten")

	sent := event(a, id, queue.EventSent, msgstatus.Sent, 1, t0.Add(time.Second))
	b.publish(t, ctx, sent)
	b.wait(t, "applied", sent.GetEventId())
	got = b.get(t, a, id)
	require.Equal(t, msgstatus.Sent, got.GetMessage().GetStatus())
	require.NotEqual(t, before, version())
}

func TestConsumerDuplicateChangesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	a := b.newAccount(t)
	t0 := time.Now().UTC()
	id := b.newMessage(t, a, msgSpec{createdAt: t0})

	sent := event(a, id, queue.EventSent, msgstatus.Sent, 1, t0.Add(time.Second))
	sent.ProviderMessageId = "first"
	b.publish(t, ctx, sent)
	b.wait(t, "applied", sent.GetEventId())
	before := b.get(t, a, id)

	// The same event id again (a redelivery after JetStream's duplicate window),
	// even with a different payload, changes nothing.
	again := proto.Clone(sent).(*queuev1.DeliveryEvent)
	again.Status, again.Type, again.ProviderMessageId, again.Detail = msgstatus.Failed, queue.EventFailed, "second", "boom"
	b.publish(t, ctx, again, "redelivery-1")
	b.wait(t, "duplicate", sent.GetEventId())
	after := b.get(t, a, id)
	require.True(t, proto.Equal(before, after), "before %v\nafter %v", before, after)
	require.Len(t, after.GetEvents(), 2)
	b.waitDrained(t)
}

func TestConsumerDuplicatesWithinBatch(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOpts{stopped: true})
	ctx := context.Background()
	a := b.newAccount(t)
	t0 := time.Now().UTC()

	const messages = 40
	var ids, eventIDs []string
	for i := range messages {
		id := b.newMessage(t, a, msgSpec{to: []string{"x@example.com", "y@example.com"}, createdAt: t0})
		ids = append(ids, id)
		for n, ev := range []*queuev1.DeliveryEvent{
			event(a, id, queue.EventStarted, msgstatus.Sending, 1, t0.Add(time.Second)),
			event(a, id, queue.EventSent, msgstatus.Sent, 1, t0.Add(2*time.Second)),
			event(a, id, queue.EventDelivered, msgstatus.Delivered, 0, t0.Add(3*time.Second), "x@example.com"),
		} {
			b.publish(t, ctx, ev)
			if n == 1 && i%2 == 0 {
				b.publish(t, ctx, ev, "dup-"+ev.GetEventId()) // the same event twice
			}
			eventIDs = append(eventIDs, ev.GetEventId())
		}
	}
	b.start()
	b.wait(t, "applied", eventIDs...)
	b.waitDrained(t)

	biggest := 0
	for _, r := range b.batches.all() {
		biggest = max(biggest, len(r.Applied)+len(r.Duplicates))
	}
	require.Greater(t, biggest, 1, "events should be applied in batches")
	for _, id := range ids {
		got := b.get(t, a, id)
		require.Equal(t, msgstatus.Sent, got.GetMessage().GetStatus()) // SENT beats DELIVERED in the summary
		require.Equal(t, map[string]msgstatus.Status{"x@example.com": msgstatus.Delivered, "y@example.com": msgstatus.Sent}, recipientStatuses(got))
		require.Len(t, got.GetEvents(), 4)
	}
}

func TestConsumerOutOfOrderNeverMovesBackwards(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	a := b.newAccount(t)
	t0 := time.Now().UTC()
	id := b.newMessage(t, a, msgSpec{createdAt: t0})

	sent := event(a, id, queue.EventSent, msgstatus.Sent, 2, t0.Add(10*time.Second))
	b.publish(t, ctx, sent)
	b.wait(t, "applied", sent.GetEventId())

	retry := event(a, id, queue.EventRetry, msgstatus.Retrying, 1, t0.Add(2*time.Second))
	retry.ErrorClass, retry.Detail = "transient", "timeout"
	late := []*queuev1.DeliveryEvent{
		event(a, id, queue.EventStarted, msgstatus.Sending, 2, t0.Add(9*time.Second)),
		retry,
		event(a, id, queue.EventStarted, msgstatus.Sending, 1, t0.Add(1*time.Second)),
	}
	for _, ev := range late {
		b.publish(t, ctx, ev)
	}
	b.wait(t, "applied", late[0].GetEventId(), late[1].GetEventId(), late[2].GetEventId())

	got := b.get(t, a, id)
	require.Equal(t, msgstatus.Sent, got.GetMessage().GetStatus())
	require.Equal(t, msgstatus.Sent, got.GetRecipients()[0].GetStatus())
	require.Equal(t, int32(2), got.GetMessage().GetAttempts())
	require.Empty(t, got.GetMessage().GetLastError(), "a late retry must not set last_error")
	// The timeline still holds every event, in the order they happened.
	require.Equal(t, []string{queue.EventAccepted, queue.EventStarted, queue.EventRetry, queue.EventStarted, queue.EventSent}, eventTypes(got))
}

func TestConsumerDeliveredAfterSent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	a := b.newAccount(t)
	t0 := time.Now().UTC()

	t.Run("in order", func(t *testing.T) {
		id := b.newMessage(t, a, msgSpec{createdAt: t0})
		sent := event(a, id, queue.EventSent, msgstatus.Sent, 1, t0.Add(time.Second))
		b.publish(t, ctx, sent)
		b.wait(t, "applied", sent.GetEventId())
		require.Equal(t, msgstatus.Sent, b.get(t, a, id).GetMessage().GetStatus())

		delivered := event(a, id, queue.EventDelivered, msgstatus.Delivered, 0, t0.Add(time.Minute))
		delivered.Detail = "delivered to mx.example.com"
		b.publish(t, ctx, delivered)
		b.wait(t, "applied", delivered.GetEventId())
		got := b.get(t, a, id)
		require.Equal(t, msgstatus.Delivered, got.GetMessage().GetStatus())
		require.Equal(t, "delivered to mx.example.com", got.GetRecipients()[0].GetDetail())
	})
	t.Run("delivered first", func(t *testing.T) {
		id := b.newMessage(t, a, msgSpec{createdAt: t0})
		delivered := event(a, id, queue.EventDelivered, msgstatus.Delivered, 0, t0.Add(time.Minute))
		b.publish(t, ctx, delivered)
		b.wait(t, "applied", delivered.GetEventId())
		sent := event(a, id, queue.EventSent, msgstatus.Sent, 1, t0.Add(time.Second))
		sent.ProviderMessageId = "pm-7"
		b.publish(t, ctx, sent)
		b.wait(t, "applied", sent.GetEventId())
		got := b.get(t, a, id)
		require.Equal(t, msgstatus.Delivered, got.GetMessage().GetStatus())
		require.Equal(t, "pm-7", got.GetMessage().GetProviderMessageId(), "a late SENT still records the provider's id")
	})
}

func TestConsumerPerRecipientEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	a := b.newAccount(t)
	t0 := time.Now().UTC()
	id := b.newMessage(t, a, msgSpec{to: []string{"a@example.com"}, cc: []string{"b@example.com"}, bcc: []string{"c@example.com"}, createdAt: t0})

	sent := event(a, id, queue.EventSent, msgstatus.Sent, 1, t0.Add(time.Second))
	delivered := event(a, id, queue.EventDelivered, msgstatus.Delivered, 0, t0.Add(2*time.Second), "A@Example.com")
	bounced := event(a, id, queue.EventBounced, msgstatus.Bounced, 0, t0.Add(3*time.Second), "b@example.com")
	bounced.ProviderResponse = "550 5.1.1 no such user"
	for _, ev := range []*queuev1.DeliveryEvent{sent, delivered, bounced} {
		b.publish(t, ctx, ev)
		b.wait(t, "applied", ev.GetEventId())
	}
	got := b.get(t, a, id)
	require.Equal(t, map[string]msgstatus.Status{
		"a@example.com": msgstatus.Delivered,
		"b@example.com": msgstatus.Bounced,
		"c@example.com": msgstatus.Sent,
	}, recipientStatuses(got))
	require.Equal(t, "550 5.1.1 no such user", got.GetRecipients()[1].GetDetail())
	require.Equal(t, msgstatus.Summarise([]msgstatus.Status{msgstatus.Delivered, msgstatus.Bounced, msgstatus.Sent}), got.GetMessage().GetStatus())
	require.Equal(t, []string{"b@example.com"}, got.GetEvents()[3].GetRecipients())

	// The last recipient bounces too: every recipient is now past SENT.
	bouncedC := event(a, id, queue.EventBounced, msgstatus.Bounced, 0, t0.Add(4*time.Second), "c@example.com")
	b.publish(t, ctx, bouncedC)
	b.wait(t, "applied", bouncedC.GetEventId())
	got = b.get(t, a, id)
	require.Equal(t, msgstatus.Delivered, got.GetMessage().GetStatus())
}

func TestConsumerUnknownMessageIsDropped(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	a := b.newAccount(t)
	other := b.newAccount(t)
	t0 := time.Now().UTC()
	id := b.newMessage(t, a, msgSpec{createdAt: t0})

	unknown := event(a, uuid.NewString(), queue.EventSent, msgstatus.Sent, 1, t0)
	// Another account naming a's message: for the consumer, no such message.
	foreign := event(other, id, queue.EventFailed, msgstatus.Failed, 1, t0)
	b.publish(t, ctx, unknown)
	b.publish(t, ctx, foreign)
	sent := event(a, id, queue.EventSent, msgstatus.Sent, 1, t0.Add(time.Second))
	b.publish(t, ctx, sent)

	b.wait(t, "unknown", unknown.GetEventId(), foreign.GetEventId())
	b.wait(t, "applied", sent.GetEventId())
	b.waitDrained(t)
	got := b.get(t, a, id)
	require.Equal(t, msgstatus.Sent, got.GetMessage().GetStatus())
	require.Len(t, got.GetEvents(), 2)

	var stored int
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE id = ANY($1::uuid[])`,
		[]string{unknown.GetEventId(), foreign.GetEventId()}).Scan(&stored))
	require.Zero(t, stored)
}

func TestConsumerMalformedDoesNotBlock(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	a := b.newAccount(t)
	t0 := time.Now().UTC()
	id := b.newMessage(t, a, msgSpec{createdAt: t0})
	subject := queue.EventSubject(a.id, id)

	b.publishRaw(t, ctx, subject, []byte("\xff\xfe not a protobuf"), "garbage-1")
	badID := event(a, id, queue.EventSent, msgstatus.Sent, 1, t0)
	badID.EventId = "not-a-uuid"
	data, err := proto.Marshal(badID)
	require.NoError(t, err)
	b.publishRaw(t, ctx, subject, data, "garbage-2")
	badStatus := event(a, id, queue.EventSent, 99, 1, t0)
	data, err = proto.Marshal(badStatus)
	require.NoError(t, err)
	b.publishRaw(t, ctx, subject, data, "garbage-3")

	sent := event(a, id, queue.EventSent, msgstatus.Sent, 1, t0.Add(time.Second))
	sent.Detail = "nul\x00byte" // stored without the NUL PostgreSQL rejects
	b.publish(t, ctx, sent)

	b.wait(t, "malformed", "garbage-1", "garbage-2", "garbage-3")
	b.wait(t, "applied", sent.GetEventId())
	b.waitDrained(t)
	got := b.get(t, a, id)
	require.Equal(t, msgstatus.Sent, got.GetMessage().GetStatus())
	require.Equal(t, "nulbyte", got.GetEvents()[1].GetDetail())
}

func TestConsumerSpanJoinsMessageTrace(t *testing.T) {
	t.Parallel()
	b := setup(t)
	a := b.newAccount(t)
	t0 := time.Now().UTC()
	id := b.newMessage(t, a, msgSpec{createdAt: t0})

	// The worker's publish happens inside the message's trace.
	ctx, span := b.tel.Tracer("worker").Start(context.Background(), "worker.deliver")
	traceID := span.SpanContext().TraceID()
	sent := event(a, id, queue.EventSent, msgstatus.Sent, 1, t0)
	b.publish(t, ctx, sent)
	span.End()
	b.wait(t, "applied", sent.GetEventId())

	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var found bool
		for _, s := range b.spans.GetSpans() {
			if s.Name == "report.apply_event" && s.SpanContext.TraceID() == traceID {
				found = true
				require.Equal(c, trace.SpanKindConsumer, s.SpanKind)
			}
		}
		require.True(c, found, "no report.apply_event span in the message's trace")
	}, 5*time.Second, 10*time.Millisecond)
}
