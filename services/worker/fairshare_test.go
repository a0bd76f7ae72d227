package worker_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/worker"
)

// slowSender accepts every message after a fixed delay and records when each
// account's messages were sent.
type slowSender struct {
	delay time.Duration

	mu    sync.Mutex
	count map[string]int
	first map[string]time.Time
	// onSend, when set, is called (under mu) after each send with the counts so far.
	onSend func(account string, count map[string]int)
}

func (s *slowSender) Send(ctx context.Context, d *provider.Delivery) provider.Outcome {
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return provider.Outcome{Class: provider.Transient, Err: ctx.Err()}
	}
	acc := d.Job.GetAccountId()
	s.mu.Lock()
	s.count[acc]++
	if _, ok := s.first[acc]; !ok {
		s.first[acc] = time.Now()
	}
	if s.onSend != nil {
		s.onSend(acc, s.count)
	}
	s.mu.Unlock()
	return provider.Outcome{Class: provider.Sent, Response: "250 ok"}
}

func (s *slowSender) sent(acc string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[acc]
}

type fairBundle struct {
	js       jetstream.JetStream
	accounts map[string]string // name -> account id
	configs  map[string]string // name -> provider configuration id
	sender   *slowSender
	db       *pgtest.DB
}

func setupFair(t *testing.T, names ...string) *fairBundle {
	t.Helper()
	ctx := context.Background()
	db := pgtest.New(t)
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, queue.EnsureStreams(ctx, js, queue.StreamConfig{}))
	b := &fairBundle{js: js, accounts: map[string]string{}, configs: map[string]string{}, db: db,
		sender: &slowSender{delay: 2 * time.Millisecond, count: map[string]int{}, first: map[string]time.Time{}}}
	for _, name := range names {
		acc, cfg := uuid.NewString(), uuid.NewString()
		_, err := db.Pool.Exec(ctx, `INSERT INTO accounts (id, name) VALUES ($1, $2)`, acc, name)
		require.NoError(t, err)
		_, err = db.Pool.Exec(ctx, `INSERT INTO provider_configs (id, account_id, name, kind) VALUES ($1, $2, 'sandbox', 'sandbox')`, cfg, acc)
		require.NoError(t, err)
		b.accounts[name], b.configs[name] = acc, cfg
	}
	return b
}

// publish puts n jobs of account name on the stream, as ingest does.
func (b *fairBundle) publish(t *testing.T, name string, n int) {
	t.Helper()
	acc := b.accounts[name]
	subject := queue.SendSubject("sandbox", acc)
	// Workers act only on jobs whose message is stored (under the job's
	// account, with a configuration of that account), as ingest stores them.
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	_, err := b.db.Pool.Exec(context.Background(), `
		INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, recipient_count, size_bytes, created_at, updated_at)
		SELECT id, $2, $3, 'sandbox', 1, 'news@example.com', 1, 5, now(), now() FROM unnest($1::uuid[]) AS id`, ids, acc, b.configs[name])
	require.NoError(t, err)
	for i := 0; i < n; i++ {
		id := ids[i]
		data, err := proto.Marshal(&queuev1.SendJob{
			MessageId: id, AccountId: acc, ProviderId: b.configs[name], ProviderKind: "sandbox",
			AcceptedAt: timestamppb.Now(),
			Message: &v1.EmailMessage{
				From: &v1.Address{Address: "news@example.com"}, To: []*v1.Address{{Address: "someone@example.org"}},
				Subject: "burst", TextBody: "hello",
			},
		})
		require.NoError(t, err)
		msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, id)
		_, err = b.js.PublishMsgAsync(msg)
		for errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			time.Sleep(time.Millisecond)
			_, err = b.js.PublishMsgAsync(msg)
		}
		require.NoError(t, err)
	}
	select {
	case <-b.js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("publish did not complete")
	}
}

func (b *fairBundle) start(t *testing.T, cfg worker.Config) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := worker.New(ctx, cfg, worker.Deps{Pool: b.db.Pool, JetStream: b.js,
		Senders: map[string]provider.Sender{"sandbox": b.sender}})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

// TestFairShareBetweenAccounts: account A queues a burst, B then sends one
// message; B's message must not wait behind A's burst.
func TestFairShareBetweenAccounts(t *testing.T) {
	t.Parallel()
	burst := 100_000
	if testing.Short() || raceEnabled {
		burst = 20_000
	}
	const concurrency = 8
	b := setupFair(t, "a", "b", "c")

	t0 := time.Now()
	b.publish(t, "a", burst)
	// c's one message is queued behind the whole burst before the worker starts.
	b.publish(t, "c", 1)
	t.Logf("queued %d jobs of account a, then 1 of c, in %s", burst, time.Since(t0).Round(time.Millisecond))

	cSent := make(chan int, 1)
	b.sender.mu.Lock()
	b.sender.onSend = func(acc string, count map[string]int) {
		if acc == b.accounts["c"] {
			cSent <- count[b.accounts["a"]]
		}
	}
	b.sender.mu.Unlock()

	started := time.Now()
	b.start(t, worker.Config{Providers: []string{"sandbox"}, KindConcurrency: worker.KindConcurrency{"sandbox": concurrency}, Concurrency: 1,
		BackoffBase: 100 * time.Millisecond, AckWait: 5 * time.Second})

	var aBeforeC int
	select {
	case aBeforeC = <-cSent:
	case <-time.After(20 * time.Second):
		t.Fatalf("c's message not sent in 20s; a has %d sent", b.sender.sent(b.accounts["a"]))
	}
	cLatency := time.Since(started)
	t.Logf("queued before start: c's message sent %s after the worker started, after %d of a's %d (%.2f%%)",
		cLatency.Round(time.Millisecond), aBeforeC, burst, 100*float64(aBeforeC)/float64(burst))
	require.Less(t, aBeforeC, burst/100, "c waited behind more than 1%% of a's burst")

	// Let a's burst run at full speed, then b sends one message.
	require.Eventually(t, func() bool { return b.sender.sent(b.accounts["a"]) >= 500 }, 20*time.Second, time.Millisecond)
	aAtPublish := b.sender.sent(b.accounts["a"])
	bSent := make(chan int, 1)
	b.sender.mu.Lock()
	b.sender.onSend = func(acc string, count map[string]int) {
		if acc == b.accounts["b"] {
			bSent <- count[b.accounts["a"]]
		}
	}
	b.sender.mu.Unlock()
	published := time.Now()
	b.publish(t, "b", 1)
	var aAtSend int
	select {
	case aAtSend = <-bSent:
	case <-time.After(10 * time.Second):
		t.Fatalf("b's message not sent in 10s; a has %d sent", b.sender.sent(b.accounts["a"]))
	}
	bLatency := time.Since(published)
	aRate := float64(aAtSend) / time.Since(started).Seconds()
	t.Logf("mid-burst: b's message sent %s after it was published; meanwhile a sent %d (a had %d of %d sent when b published, %d when b was sent; a's rate ≈ %.0f msg/s, concurrency %d, 2 ms per send)",
		bLatency.Round(time.Millisecond), aAtSend-aAtPublish, aAtPublish, burst, aAtSend, aRate, concurrency)
	require.Less(t, aAtSend-aAtPublish, burst/100, "b waited behind more than 1%% of a's burst")
	require.Less(t, bLatency, 500*time.Millisecond)
	require.Less(t, aAtSend, burst, "a's burst was finished before b was sent: the test measured nothing")
}

// TestAccountConsumersLifecycle: the kind-wide consumer of older workers is
// deleted at start (its filter overlaps the per-account ones); an account's
// consumer removed while the worker runs (InactiveThreshold, a lost node) is
// created again when the account has jobs.
func TestAccountConsumersLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupFair(t, "a")
	_, err := b.js.CreateOrUpdateConsumer(ctx, queue.SendStream, jetstream.ConsumerConfig{
		Durable: "worker-sandbox", FilterSubject: queue.SendFilter("sandbox"), AckPolicy: jetstream.AckExplicitPolicy,
	})
	require.NoError(t, err)
	b.start(t, worker.Config{Providers: []string{"sandbox"}, Concurrency: 4, AckWait: 5 * time.Second})

	acc := b.accounts["a"]
	b.publish(t, "a", 1)
	t0 := time.Now()
	require.Eventually(t, func() bool { return b.sender.sent(acc) == 1 }, 10*time.Second, 5*time.Millisecond)
	t.Logf("first job sent in %s", time.Since(t0))
	t0 = time.Now()
	_, err = b.js.Consumer(ctx, queue.SendStream, "worker-sandbox")
	require.ErrorIs(t, err, jetstream.ErrConsumerNotFound, "the legacy consumer is deleted")

	require.NoError(t, b.js.DeleteConsumer(ctx, queue.SendStream, "worker-sandbox-"+acc))
	b.publish(t, "a", 1)
	require.Eventually(t, func() bool { return b.sender.sent(acc) == 2 }, 10*time.Second, 5*time.Millisecond)
	t.Logf("job after the consumer was removed sent in %s", time.Since(t0))
	_, err = b.js.Consumer(ctx, queue.SendStream, "worker-sandbox-"+acc)
	require.NoError(t, err, "the account's consumer exists again")
}
