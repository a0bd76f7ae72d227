package outbox_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/telemetry"
	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	"github.com/namirasoft/email-sender/services/ingest/outbox"
	"github.com/namirasoft/email-sender/services/ingest/store"
	"github.com/namirasoft/email-sender/services/ingest/templates"
)

// countingPublisher counts publishes per message id.
type countingPublisher struct {
	jetstream.JetStream
	mu sync.Mutex
	n  map[string]int
}

func (p *countingPublisher) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	p.mu.Lock()
	p.n[m.Header.Get(jetstream.MsgIDHeader)]++
	p.mu.Unlock()
	return p.JetStream.PublishMsgAsync(m, opts...)
}

type testBundle struct {
	db  *pgtest.DB
	pub *countingPublisher
	js  jetstream.JetStream
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	db := pgtest.New(t)
	ns := natstest.Start(t)
	nc, err := nats.Connect(ns.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, queue.EnsureStreams(t.Context(), js, queue.StreamConfig{}))
	return &testBundle{db: db, js: js, pub: &countingPublisher{JetStream: js, n: map[string]int{}}}
}

// accept stores n messages of one account straight through the store, as if
// every accepting call had failed to publish.
func (b *testBundle) accept(t *testing.T, n int, st msgstatus.Status) []string {
	t.Helper()
	account := uuid.NewString()
	require.NoError(t, store.CreateAccount(t.Context(), b.db.Pool, store.NewAccount{ID: account, Name: "relay"}))
	var (
		msgs []*store.NewMessage
		ids  []string
	)
	for range n {
		id := uuid.Must(uuid.NewV7()).String()
		ids = append(ids, id)
		m := &store.NewMessage{
			ID: id, AccountID: account, ProviderID: uuid.NewString(), ProviderKind: "sandbox", Status: st,
			FromAddress: "a@example.com", Recipients: []store.Recipient{{Kind: "to", Address: "b@example.com"}},
			Content: []byte("job " + id), NATSSubject: queue.SendSubject("sandbox", account), CreatedAt: time.Now(),
		}
		if st == msgstatus.Scheduled {
			m.SendAt = time.Now().Add(-time.Second) // already due
		}
		msgs = append(msgs, m)
	}
	_, err := store.Accept(t.Context(), b.db.Pool, msgs)
	require.NoError(t, err)
	return ids
}

func TestRelayReplicasPublishEachRowOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.accept(t, 300, msgstatus.Queued)
	scheduled := b.accept(t, 20, msgstatus.Scheduled)

	relays := make([]*outbox.Relay, 3)
	for i := range relays {
		relays[i] = outbox.NewRelay(b.db.Pool, b.pub, telemetry.Nop(), slog.New(slog.DiscardHandler),
			outbox.RelayConfig{Batch: 25, Grace: -1, PublishTimeout: 5 * time.Second}) // no grace
	}
	var wg sync.WaitGroup
	for _, r := range relays {
		wg.Go(func() {
			for {
				n, err := r.RunOnce(t.Context())
				if err != nil {
					t.Errorf("RunOnce: %v", err)
					return
				}
				if n == 0 {
					return
				}
			}
		})
	}
	wg.Wait()

	var left int
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM outbox`).Scan(&left))
	require.Zero(t, left)
	for _, id := range append(ids, scheduled...) {
		require.Equal(t, 1, b.pub.n[id], "message %s published once", id)
	}
	s, err := b.js.Stream(t.Context(), queue.SendStream)
	require.NoError(t, err)
	info, err := s.Info(t.Context())
	require.NoError(t, err)
	require.Equal(t, uint64(len(ids)+len(scheduled)), info.State.Msgs)

	var queued int
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `
		SELECT count(*) FROM messages m JOIN recipients r ON r.message_id = m.id
		WHERE m.id = ANY($1::uuid[]) AND m.status = $2 AND r.status = $2`, scheduled, int16(msgstatus.Queued)).Scan(&queued))
	require.Equal(t, len(scheduled), queued, "published scheduled messages are QUEUED")
}

func TestRelayGraceLeavesFreshRows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.accept(t, 3, msgstatus.Queued)
	r := outbox.NewRelay(b.db.Pool, b.pub, telemetry.Nop(), slog.New(slog.DiscardHandler), outbox.RelayConfig{Grace: time.Hour})
	n, err := r.RunOnce(t.Context())
	require.NoError(t, err)
	require.Zero(t, n, "rows younger than the grace are the accepting call's to publish")
}

func TestDeleterFlushesOnShutdown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.accept(t, 5, msgstatus.Queued)
	d := outbox.NewDeleter(b.db.Pool, outbox.DeleterConfig{Interval: time.Hour}, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var account string
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT account_id::text FROM outbox LIMIT 1`).Scan(&account))
	for _, id := range ids {
		d.Add(store.MessageKey{AccountID: account, MessageID: id})
	}
	d.Add(store.MessageKey{AccountID: uuid.NewString(), MessageID: ids[0]}) // another account: no effect
	cancel()
	require.NoError(t, <-done)
	var left int
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM outbox`).Scan(&left))
	require.Zero(t, left)
}

// TestRelayFailsMessageWithoutContent: a queued message whose content is
// gone (retention keeps it for messages in the outbox, so only a partition
// dropped by hand does this) is not left in the outbox forever: the relay
// publishes its FAILED event, sends no job, and removes the row; a row whose
// message is gone altogether is dropped without an event.
func TestRelayFailsMessageWithoutContent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.accept(t, 3, msgstatus.Queued)
	gone, orphan := ids[0], ids[1]
	_, err := b.db.Pool.Exec(t.Context(), `DELETE FROM message_contents WHERE message_id = ANY($1::uuid[])`, []string{gone, orphan})
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(t.Context(), `DELETE FROM messages WHERE id = $1`, orphan)
	require.NoError(t, err)

	r := outbox.NewRelay(b.db.Pool, b.pub, telemetry.Nop(), slog.New(slog.DiscardHandler), outbox.RelayConfig{Grace: -1})
	n, err := r.RunOnce(t.Context())
	require.NoError(t, err)
	require.Equal(t, 3, n)
	var left int
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM outbox`).Scan(&left))
	require.Zero(t, left)

	s, err := b.js.Stream(t.Context(), queue.SendStream)
	require.NoError(t, err)
	info, err := s.Info(t.Context())
	require.NoError(t, err)
	require.EqualValues(t, 1, info.State.Msgs, "only the message with content is sent")

	events, err := b.js.Stream(t.Context(), queue.EventStream)
	require.NoError(t, err)
	account := accountOf(t, b, gone)
	var types []string
	for _, id := range []string{gone, orphan} {
		m, err := events.GetLastMsgForSubject(t.Context(), queue.EventSubject(account, id))
		if id == orphan {
			require.Error(t, err, "no event for a message that is gone")
			continue
		}
		require.NoError(t, err)
		var ev queuev1.DeliveryEvent
		require.NoError(t, proto.Unmarshal(m.Data, &ev))
		types = append(types, ev.GetType())
		require.Equal(t, msgstatus.Failed, ev.GetStatus())
		require.Equal(t, "permanent", ev.GetErrorClass())
		require.Contains(t, ev.GetDetail(), "content")
	}
	require.Equal(t, []string{queue.EventFailed}, types)
}

func accountOf(t *testing.T, b *testBundle, messageID string) string {
	t.Helper()
	var account string
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT account_id::text FROM messages WHERE id = $1`, messageID).Scan(&account))
	return account
}

// TestRelayAcceptedEventNamesTemplate: the ACCEPTED event the relay
// publishes (the accepting call could not) carries the same template detail
// as the call's, built from the message's tags; a plain message's has none.
func TestRelayAcceptedEventNamesTemplate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.accept(t, 2, msgstatus.Queued)
	tagged, plain := ids[0], ids[1]
	_, err := b.db.Pool.Exec(t.Context(), `UPDATE messages SET tags = $2 WHERE id = $1`, tagged,
		map[string]string{templates.TagTemplate: "0190-tpl", templates.TagTemplateAlias: "welcome", templates.TagTemplateVersion: "3"})
	require.NoError(t, err)
	r := outbox.NewRelay(b.db.Pool, b.pub, telemetry.Nop(), slog.New(slog.DiscardHandler), outbox.RelayConfig{Grace: -1})
	_, err = r.RunOnce(t.Context())
	require.NoError(t, err)

	events, err := b.js.Stream(t.Context(), queue.EventStream)
	require.NoError(t, err)
	account := accountOf(t, b, tagged)
	for id, want := range map[string]string{tagged: "rendered from template welcome (0190-tpl) version 3", plain: ""} {
		m, err := events.GetLastMsgForSubject(t.Context(), queue.EventSubject(account, id))
		require.NoError(t, err)
		var ev queuev1.DeliveryEvent
		require.NoError(t, proto.Unmarshal(m.Data, &ev))
		require.Equal(t, queue.EventAccepted, ev.GetType())
		require.Equal(t, want, ev.GetDetail())
	}
}
