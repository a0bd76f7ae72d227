package ingest_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/testkit/costmeter"
	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest"
	"github.com/namirasoft/email-sender/services/ingest/outbox"
	"github.com/namirasoft/email-sender/services/ingest/send"
)

// BenchmarkSendEmail measures what accepting one 1 KB message costs the send
// path without gRPC (validation, lookups, group commit in PostgreSQL, the job
// and ACCEPTED event published and acknowledged, the outbox row deleted), at
// 1 and 64 concurrent callers: per message, the process's CPU (the
// in-process nats-server included), the CPU of the PostgreSQL backends of
// its pool, the statements sent, the NATS messages of its connection, and
// allocations. A shared machine makes msg/s noisy; these are steadier.
//
//	go test -run '^$' -bench BenchmarkSendEmail -benchtime 5000x ./services/ingest/
func BenchmarkSendEmail(b *testing.B) {
	for _, callers := range []int{1, 64} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) { benchSendEmail(b, callers) })
	}
}

func benchSendEmail(b *testing.B, callers int) {
	ctx := context.Background()
	db := pgtest.New(b)
	pool := costmeter.NewPool(b, db.URL, 16)
	pool.Warm(b)
	srv := natstest.Start(b)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	if err := queue.EnsureStreams(ctx, js, queue.StreamConfig{}); err != nil {
		b.Fatal(err)
	}
	acc, err := ingest.Bootstrap(ctx, db.Pool, nil, ingest.BootstrapParams{
		AccountName: "bench", ProviderKind: "sandbox", Senders: []string{"example.com"}})
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	deleter := outbox.NewDeleter(pool, outbox.DeleterConfig{}, log)
	dctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- deleter.Run(dctx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})
	// The lookup cache is used while the account configuration feed is
	// watched, as in the service.
	s := send.New(send.Config{RequireVerifiedSenders: true}, send.Deps{DB: pool, Publisher: js, Deleter: deleter,
		AccountConfig: queue.AccountConfigFeed(js, 1), Logger: log})
	watching := make(chan error, 1)
	go func() { watching <- s.Watch(dctx) }()
	b.Cleanup(func() { cancel(); <-watching })
	time.Sleep(500 * time.Millisecond) // the watch established

	line := "The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.\n"
	req := &emailsenderv1.SendEmailRequest{Message: &emailsenderv1.EmailMessage{
		From:     &emailsenderv1.Address{Address: "sender@example.com", Name: "Bench Sender"},
		To:       []*emailsenderv1.Address{{Address: "someone@example.com", Name: "Bench Recipient"}},
		Subject:  "Benchmark message",
		TextBody: strings.Repeat(line, 1024/len(line)+1)[:1024],
	}}
	cctx := auth.WithPrincipal(ctx, auth.Principal{AccountID: acc.AccountID, Scopes: []string{auth.ScopeSend}})
	call := func() {
		if _, err := s.SendEmail(cctx, req); err != nil {
			b.Error(err)
		}
	}
	for range 20 { // the lookups cached, the statements prepared
		call()
	}

	b.ReportAllocs()
	b.ResetTimer()
	m := costmeter.Start(b, pool, nc)
	var wg sync.WaitGroup
	for c := range callers {
		n := b.N / callers
		if c < b.N%callers {
			n++
		}
		wg.Go(func() {
			for range n {
				call()
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	m.Report(b, b.N, "msg")
}
