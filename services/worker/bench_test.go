package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/netguard"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/smtp"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/testkit/costmeter"
	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
	"github.com/namirasoft/email-sender/pkg/testkit/smtpsink"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/worker"
)

// BenchmarkDelivery measures what one message costs the worker: b.N jobs of
// one account are queued (their messages stored, as ingest stores them), then
// the real worker delivers them through the SMTP provider to a local sink
// (16 pooled connections, as the bench's), from the first fetch until every
// job is acknowledged. Besides time and allocations per message (of the
// whole process: the worker, the in-process nats-server and the sink), it
// reports the process's CPU per message, the statements the worker sent to
// PostgreSQL and the CPU of the backends that ran them, and the messages the
// worker's NATS connection sent (publishes, KV writes, acks) and received.
//
//	go test -run '^$' -bench BenchmarkDelivery -benchtime 4000x ./services/worker/
func BenchmarkDelivery(b *testing.B) {
	for _, size := range []struct {
		name  string
		bytes int
	}{{"1KB", 1 << 10}, {"100KB", 100 << 10}} {
		b.Run(size.name, func(b *testing.B) { benchDelivery(b, size.bytes) })
	}
}

func benchDelivery(b *testing.B, bodySize int) {
	ctx := context.Background()
	db := pgtest.New(b)
	srv := natstest.Start(b)
	_, js := srv.JetStream(b)
	if err := queue.EnsureStreams(ctx, js, queue.StreamConfig{}); err != nil {
		b.Fatal(err)
	}
	sink := smtpsink.StartTest(b, smtpsink.Options{DiscardData: true})

	acc, cfg := uuid.NewString(), uuid.NewString()
	settings, err := json.Marshal(smtp.Settings{Host: sink.Host(), Port: sink.Port(), TLS: "none", PoolSize: 16, HELO: "bench.example.com"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO accounts (id, name) VALUES ($1, 'bench')`, acc); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO provider_configs (id, account_id, name, kind, settings) VALUES ($1, $2, 'sink', 'smtp', $3)`, cfg, acc, settings); err != nil {
		b.Fatal(err)
	}
	queueJobs(b, db, js, acc, cfg, b.N, strings.Repeat("hello world, ", bodySize/13+1)[:bodySize])

	// The worker has a pool and a connection of its own, to be measured.
	pool := costmeter.NewPool(b, db.URL, 16)
	pool.Warm(b)
	wnc, wjs := srv.JetStream(b)
	guard, err := netguard.New(netguard.Config{AllowNets: []string{"127.0.0.0/8", "::1/128"}})
	if err != nil {
		b.Fatal(err)
	}
	sender := smtp.New(smtp.Options{Guard: guard})
	b.Cleanup(func() { _ = sender.Close() })
	runCtx, cancel := context.WithCancel(ctx)
	w, err := worker.New(runCtx, worker.Config{Providers: []string{"smtp"}, Concurrency: 256},
		worker.Deps{Pool: pool.Pool, JetStream: wjs, Senders: map[string]provider.Sender{"smtp": sender}})
	if err != nil {
		b.Fatal(err)
	}
	stream, err := js.Stream(ctx, queue.SendStream)
	if err != nil {
		b.Fatal(err)
	}

	b.ReportAllocs()
	b.ResetTimer()
	meter := costmeter.Start(b, pool, wnc)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	// Done when the sink has every message and every job is acknowledged
	// (the work-queue stream is empty); the stream is asked only at the end,
	// as its answer costs this process CPU too.
	for {
		if sink.Count() >= b.N {
			info, err := stream.Info(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if info.State.Msgs == 0 {
				break
			}
		}
		select {
		case err := <-done:
			b.Fatalf("worker stopped: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	b.StopTimer()
	meter.Report(b, b.N, "msg")
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if n := sink.Count(); n != b.N {
		b.Fatalf("sink got %d messages, want %d", n, b.N)
	}
}

// queueJobs stores n messages of account acc (provider configuration cfg) and
// puts their jobs on the stream, as ingest does.
func queueJobs(tb testing.TB, db *pgtest.DB, js jetstream.JetStream, acc, cfg string, n int, body string) {
	tb.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	_, err := db.Pool.Exec(context.Background(), `
		INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, recipient_count, size_bytes, created_at, updated_at)
		SELECT id, $2, $3, 'smtp', 1, 'news@example.com', 1, $4, now(), now() FROM unnest($1::uuid[]) AS id`, ids, acc, cfg, len(body))
	if err != nil {
		tb.Fatal(err)
	}
	_, err = db.Pool.Exec(context.Background(), `
		INSERT INTO recipients (message_id, account_id, idx, kind, address, status, updated_at)
		SELECT id, $2, 0, 'to', 'someone@example.org', 1, now() FROM unnest($1::uuid[]) AS id`, ids, acc)
	if err != nil {
		tb.Fatal(err)
	}
	subject := queue.SendSubject("smtp", acc)
	for _, id := range ids {
		data, err := proto.Marshal(&queuev1.SendJob{
			MessageId: id, AccountId: acc, ProviderId: cfg, ProviderKind: "smtp",
			AcceptedAt: timestamppb.Now(),
			Message: &v1.EmailMessage{
				From: &v1.Address{Address: "news@example.com"}, To: []*v1.Address{{Address: "someone@example.org"}},
				Subject: "bench", TextBody: body,
			},
		})
		if err != nil {
			tb.Fatal(err)
		}
		msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, id)
		_, err = js.PublishMsgAsync(msg)
		for errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			time.Sleep(time.Millisecond)
			_, err = js.PublishMsgAsync(msg)
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		tb.Fatal("queueing the jobs did not complete")
	}
}
