package report_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/testkit/costmeter"
	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	"github.com/namirasoft/email-sender/services/report"
)

// BenchmarkApplyEvents measures what the events of one delivered message
// cost the report: b.N stored messages, and the two events a worker
// publishes for each (ATTEMPT_STARTED, SENT) waiting on EMAIL_EVENTS; the
// report then applies them all (from its start until the last batch is
// acknowledged), in batches of the default size (256 events) and of 4 (what
// a trickle of events makes: the cost of a batch itself). Per message it
// reports the process's CPU, the statements sent to PostgreSQL and the CPU
// of the backends that ran them, the NATS messages of the report's
// connection, and allocations.
//
//	go test -run '^$' -bench BenchmarkApplyEvents -benchtime 10000x ./services/report/
func BenchmarkApplyEvents(b *testing.B) {
	for _, batch := range []int{256, 4} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchApplyEvents(b, batch, deliveryEvents) })
	}
}

// BenchmarkApplyAcceptedEvents is BenchmarkApplyEvents with the one event
// ingest publishes for each message it accepts (ACCEPTED): what storing the
// acceptance timeline rows costs the report.
//
//	go test -run '^$' -bench BenchmarkApplyAcceptedEvents -benchtime 10000x ./services/report/
func BenchmarkApplyAcceptedEvents(b *testing.B) {
	for _, batch := range []int{256, 32} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchApplyEvents(b, batch, acceptedEvents) })
	}
}

// deliveryEvents are the events of one delivery, as the worker publishes them.
func deliveryEvents() []*queuev1.DeliveryEvent {
	return []*queuev1.DeliveryEvent{
		{Type: queue.EventStarted, Status: msgstatus.Sending, Attempt: 1},
		{Type: queue.EventSent, Status: msgstatus.Sent, ProviderResponse: "250 2.0.0 Ok: queued as 4F1C2", Attempt: 1},
	}
}

// acceptedEvents is the event ingest publishes with the job.
func acceptedEvents() []*queuev1.DeliveryEvent {
	return []*queuev1.DeliveryEvent{{Type: queue.EventAccepted, Status: msgstatus.Queued}}
}

func benchApplyEvents(b *testing.B, batchSize int, events func() []*queuev1.DeliveryEvent) {
	ctx := context.Background()
	db := pgtest.New(b)
	srv := natstest.Start(b)
	_, js := srv.JetStream(b)
	if err := queue.EnsureStreams(ctx, js, queue.StreamConfig{}); err != nil {
		b.Fatal(err)
	}
	acc, cfg := uuid.NewString(), uuid.NewString()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO accounts (id, name) VALUES ($1, 'bench')`, acc); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO provider_configs (id, account_id, name, kind) VALUES ($1, $2, 'sandbox', 'sandbox')`, cfg, acc); err != nil {
		b.Fatal(err)
	}
	ids := make([]string, b.N)
	for i := range ids {
		id, err := uuid.NewV7()
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = id.String()
	}
	if _, err := db.Pool.Exec(ctx, `
		INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, recipient_count, size_bytes, created_at, updated_at)
		SELECT id, $2, $3, 'sandbox', $4, 'news@example.com', 1, 1024, now(), now() FROM unnest($1::uuid[]) AS id`,
		ids, acc, cfg, int16(msgstatus.Queued)); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `
		INSERT INTO recipients (message_id, account_id, idx, kind, address, status, status_key, updated_at)
		SELECT id, $2, 0, 'to', 'someone@example.org', $3, $4, now() FROM unnest($1::uuid[]) AS id`,
		ids, acc, int16(msgstatus.Queued), msgstatus.Key(msgstatus.Queued, 0)); err != nil {
		b.Fatal(err)
	}
	// The events of each message, as the worker (or ingest) publishes them.
	now := time.Now()
	perMessage := len(events())
	for _, id := range ids {
		for i, ev := range events() {
			ev.EventId, ev.MessageId, ev.AccountId, ev.ProviderId = queue.EventID(id, int(ev.Attempt), ev.Type, ""), id, acc, cfg
			ev.OccurredAt = timestamppb.New(now.Add(time.Duration(i) * time.Millisecond))
			data, err := proto.Marshal(ev)
			if err != nil {
				b.Fatal(err)
			}
			m := nats.NewMsg(queue.EventSubject(acc, id))
			m.Data = data
			m.Header.Set(jetstream.MsgIDHeader, ev.EventId)
			_, err = js.PublishMsgAsync(m)
			for errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				time.Sleep(time.Millisecond)
				_, err = js.PublishMsgAsync(m)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publishing the events did not complete")
	}

	// The report has a pool and a connection of its own, to be measured.
	pool := costmeter.NewPool(b, db.URL, 16)
	pool.Warm(b)
	rnc, rjs := srv.JetStream(b)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var applied atomic.Int64
	all := make(chan struct{})
	svc, err := report.New(report.Config{HTTPAddr: "off", BatchSize: batchSize}, report.Deps{
		Pool: pool.Pool, JetStream: rjs, Authenticator: auth.NewKeyStore(pool.Pool, 0), Listener: lis,
		Hooks: report.Hooks{BatchDone: func(r report.BatchReport) {
			if n := applied.Add(int64(len(r.Applied))); n == int64(perMessage*b.N) {
				close(all)
			}
			if bad := len(r.Malformed) + len(r.Retried) + len(r.Unknown); bad > 0 {
				b.Errorf("batch: %d events malformed, retried or unknown", bad)
			}
		}},
	})
	if err != nil {
		b.Fatal(err)
	}

	b.ReportAllocs()
	b.ResetTimer()
	meter := costmeter.Start(b, pool, rnc)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	select {
	case <-all:
	case err := <-done:
		b.Fatalf("report stopped: %v", err)
	case <-time.After(5 * time.Minute):
		b.Fatalf("only %d of %d events applied in 5 minutes", applied.Load(), perMessage*b.N)
	}
	b.StopTimer()
	meter.Report(b, b.N, "msg")
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if perMessage == 1 {
		return // ACCEPTED changes no status
	}
	var sent int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM messages WHERE account_id = $1 AND status = $2`, acc, int16(msgstatus.Sent)).Scan(&sent); err != nil {
		b.Fatal(err)
	}
	if sent != b.N {
		b.Fatalf("%d of %d messages SENT", sent, b.N)
	}
}
