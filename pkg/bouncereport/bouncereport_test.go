package bouncereport_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/bounce"
	"github.com/namirasoft/email-sender/pkg/bouncereport"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/suppression"
	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
)

// message stores a SENT message of account to rcpts and returns its id.
func message(t *testing.T, db *pgtest.DB, account string, rcpts ...string) string {
	t.Helper()
	ctx := context.Background()
	id := uuid.Must(uuid.NewV7()).String()
	_, err := db.Pool.Exec(ctx, `
		INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, recipient_count, size_bytes, attempts, created_at, updated_at)
		VALUES ($1, $2, $3, 'smtp', 5, 'sender@example.com', $4, 100, 1, now(), now())`, id, account, uuid.NewString(), len(rcpts))
	require.NoError(t, err)
	for i, r := range rcpts {
		_, err := db.Pool.Exec(ctx, `INSERT INTO recipients (message_id, idx, account_id, kind, address, status, updated_at)
			VALUES ($1, $2, $3, 'to', $4, 5, now())`, id, i, account, r)
		require.NoError(t, err)
	}
	return id
}

func account(t *testing.T, db *pgtest.DB) string {
	t.Helper()
	id := uuid.NewString()
	_, err := db.Pool.Exec(context.Background(), `INSERT INTO accounts (id, name) VALUES ($1, 'a')`, id)
	require.NoError(t, err)
	return id
}

// fakePublisher is a Publisher that is no GroupPublisher: RecordAll
// publishes group by group; a message id in fail fails.
type fakePublisher struct {
	events []*queuev1.DeliveryEvent
	fail   string
}

func (p *fakePublisher) Publish(_ context.Context, events []*queuev1.DeliveryEvent) error {
	for _, ev := range events {
		if ev.GetMessageId() == p.fail {
			return errors.New("stream down")
		}
	}
	p.events = append(p.events, events...)
	return nil
}

func TestRecordAllBatch(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	acc := account(t, db)
	m1 := message(t, db, acc, "hard@x.example", "other@x.example")
	m2 := message(t, db, acc, "angry@x.example")
	m3 := message(t, db, acc, "full@x.example")

	store := bouncereport.NewStore(db.Pool)
	msgs, err := store.Messages(ctx, []string{m1, m2, m3, uuid.NewString()})
	require.NoError(t, err)
	require.Len(t, msgs, 3)
	require.Equal(t, []string{"hard@x.example", "other@x.example"}, msgs[m1].Recipients)
	require.Equal(t, acc, msgs[m2].AccountID)

	pub := &fakePublisher{fail: m3}
	rec := bouncereport.NewRecorder(suppression.New(db.Pool, suppression.Config{SoftBounces: 3, SoftBounceWindow: time.Hour}), pub)
	now := time.Now()
	res, errs := rec.RecordAll(ctx, []bouncereport.Entry{
		{Message: msgs[m1], At: now, Report: bouncereport.Report{ID: "r1", Source: "test", Via: "by test", Findings: []bouncereport.Finding{
			{Address: "hard@x.example", Class: bounce.Hard, Response: "550 5.1.1", What: "5.1.1"},
			{Address: "hard@x.example", Class: bounce.Hard},       // repeated: once
			{Address: "other@x.example", Class: bounce.AutoReply}, // no event
		}}},
		{Message: msgs[m2], At: now, Report: bouncereport.Report{ID: "r2", Source: "test", Via: "by test", Findings: []bouncereport.Finding{
			{Address: "angry@x.example", Class: bounce.Complaint, What: "ARF abuse"},
		}}},
		{Message: msgs[m1], At: now, Report: bouncereport.Report{ID: "r3", Source: "test", Via: "by test"}}, // nothing
		{Message: msgs[m3], At: now, Report: bouncereport.Report{ID: "r4", Source: "test", Via: "by test", Findings: []bouncereport.Finding{
			{Address: "full@x.example", Class: bounce.Soft},
		}}},
	})
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	require.NoError(t, errs[2])
	require.Error(t, errs[3])
	require.Equal(t, bouncereport.Result{Events: 1, Suppressed: map[string]string{"hard@x.example": "bounce"}}, res[0])
	require.Equal(t, bouncereport.Result{Events: 1, Suppressed: map[string]string{"angry@x.example": "complaint"}}, res[1])
	require.Equal(t, bouncereport.Result{}, res[2])
	require.Len(t, pub.events, 2)
	require.Equal(t, queue.EventBounced, pub.events[0].GetType())
	require.Equal(t, "hard bounce (5.1.1, by test): address suppressed", pub.events[0].GetDetail())
	require.Equal(t, queue.EventComplained, pub.events[1].GetType())

	// Record is RecordAll of one, with the same event ids.
	one, err := rec.Record(ctx, msgs[m1], bouncereport.Report{ID: "r1", Source: "test", Via: "by test", Findings: []bouncereport.Finding{
		{Address: "hard@x.example", Class: bounce.Hard, Response: "550 5.1.1", What: "5.1.1"},
	}}, now)
	require.NoError(t, err)
	require.Equal(t, 1, one.Events)
	require.Equal(t, pub.events[0].GetEventId(), pub.events[2].GetEventId())
}

func TestStreamPublisherGroups(t *testing.T) {
	t.Parallel()
	_, js := natstest.Start(t).JetStream(t)
	ctx := context.Background()
	require.NoError(t, queue.EnsureStreams(ctx, js, queue.StreamConfig{}))
	pub := bouncereport.NewStreamPublisher(js, nil)
	ev := func(id string) *queuev1.DeliveryEvent {
		return &queuev1.DeliveryEvent{EventId: id, AccountId: uuid.NewString(), MessageId: uuid.NewString(), Type: queue.EventBounced}
	}
	errs := pub.PublishGroups(ctx, []bouncereport.Group{
		{Events: []*queuev1.DeliveryEvent{ev("a"), ev("b")}},
		{Ctx: ctx, Events: []*queuev1.DeliveryEvent{ev("c")}},
		{},
	})
	require.Equal(t, []error{nil, nil, nil}, errs)
	require.NoError(t, pub.Publish(ctx, []*queuev1.DeliveryEvent{ev("a")})) // a duplicate: stored once
	s, err := js.Stream(ctx, queue.EventStream)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 3, info.State.Msgs)
}
