package ingest_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/secretbox"
	"github.com/namirasoft/email-sender/pkg/testkit/costmeter"
	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest"
	"github.com/namirasoft/email-sender/services/ingest/outbox"
	"github.com/namirasoft/email-sender/services/ingest/send"
)

// BenchmarkSendBatchTemplate measures what a message of a SendBatch of 100
// costs through ingest (gRPC, validation, the group commit to PostgreSQL,
// the publishes to JetStream), plain and rendered from a stored template
// (layout, partial, #each, per-recipient variables), per message: CPU of
// this process (ingest with its in-process gRPC client and nats-server),
// PostgreSQL backend CPU and statements.
//
//	go test -run '^$' -bench BenchmarkSendBatchTemplate -benchtime 50x ./services/ingest/
func BenchmarkSendBatchTemplate(b *testing.B) {
	for _, templated := range []bool{false, true} {
		name := "plain"
		if templated {
			name = "templated"
		}
		b.Run(name, func(b *testing.B) { benchSendBatch(b, templated) })
	}
}

const benchBatch = 100

func benchSendBatch(b *testing.B, templated bool) {
	ctx := context.Background()
	db := pgtest.New(b)
	ns := natstest.Start(b)
	nc, js := ns.JetStream(b)
	if err := queue.EnsureStreams(ctx, js, queue.StreamConfig{}); err != nil {
		b.Fatal(err)
	}
	mk, err := secretbox.NewMasterKey()
	if err != nil {
		b.Fatal(err)
	}
	kr, err := secretbox.ParseKeyring("k1:"+mk, "")
	if err != nil {
		b.Fatal(err)
	}
	acct, err := ingest.Bootstrap(ctx, db.Pool, kr, ingest.BootstrapParams{AccountName: "acme", ProviderKind: "sandbox", Senders: []string{"example.com"}})
	if err != nil {
		b.Fatal(err)
	}
	pool := costmeter.NewPool(b, db.URL, 16)
	pool.Warm(b)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	svc, err := ingest.New(ingest.Config{
		Relay:         outbox.RelayConfig{Interval: time.Second},
		Send:          send.Config{PublishTimeout: 5 * time.Second},
		ShutdownGrace: 5 * time.Second,
	}, ingest.Deps{Pool: pool.Pool, JetStream: js, Listener: lis, Logger: slog.New(slog.DiscardHandler), Auth: auth.NewKeyStore(pool.Pool, 0)})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	client := emailsenderv1.NewSendServiceClient(conn)
	call := as(b, acct.APIKey)

	html := `<h1>Hello {{name}}</h1><p>Your order {{order}} has shipped:</p><ul>{{#each items}}<li>{{title}} x {{qty}}</li>{{/each}}</ul><p><a href="{{url}}">Track it</a></p>`
	if templated {
		tc := emailsenderv1.NewTemplateServiceClient(conn)
		if _, err := tc.CreateTemplate(call, &emailsenderv1.CreateTemplateRequest{Alias: "layout", Content: &emailsenderv1.TemplateContent{
			Subject: "layout", Html: "<html><body>{{{content}}}{{> footer}}</body></html>",
			Partials: map[string]string{"footer": "<footer>{{company}}</footer>"}}}); err != nil {
			b.Fatal(err)
		}
		if _, err := tc.PublishTemplate(call, &emailsenderv1.PublishTemplateRequest{Template: "layout"}); err != nil {
			b.Fatal(err)
		}
		if _, err := tc.CreateTemplate(call, &emailsenderv1.CreateTemplateRequest{Alias: "shipped", Content: &emailsenderv1.TemplateContent{
			Subject: "Order {{order}} shipped, {{name}}", Html: html, Layout: "layout",
			Partials:  map[string]string{"footer": "<footer>{{company}}</footer>"},
			Variables: []*emailsenderv1.TemplateVariable{{Name: "name", Required: true}, {Name: "company", DefaultValue: structpb.NewStringValue("ACME")}},
		}}); err != nil {
			b.Fatal(err)
		}
		if _, err := tc.PublishTemplate(call, &emailsenderv1.PublishTemplateRequest{Template: "shipped"}); err != nil {
			b.Fatal(err)
		}
	}
	// The plain message is what the template renders, so both store and
	// queue the same bytes.
	batch := func(n int) *emailsenderv1.SendBatchRequest {
		req := &emailsenderv1.SendBatchRequest{}
		for i := range benchBatch {
			name, order, url := fmt.Sprintf("Customer %d", i), fmt.Sprintf("#%d-%d", n, i), fmt.Sprintf("https://shop.example/track/%d/%d", n, i)
			m := &emailsenderv1.EmailMessage{
				From: &emailsenderv1.Address{Address: "shop@example.com"},
				To:   []*emailsenderv1.Address{{Address: fmt.Sprintf("c%d@example.org", i)}},
			}
			item := &emailsenderv1.SendEmailRequest{Message: m}
			if templated {
				v, err := structpb.NewStruct(map[string]any{"name": name, "order": order, "url": url,
					"items": []any{map[string]any{"title": "Tea", "qty": 2}, map[string]any{"title": "Cup", "qty": 1}}})
				if err != nil {
					b.Fatal(err)
				}
				item.Template = &emailsenderv1.TemplateRef{Template: "shipped", Variables: v}
			} else {
				m.Subject = "Order " + order + " shipped, " + name
				m.HtmlBody = "<html><body><h1>Hello " + name + "</h1><p>Your order " + order + " has shipped:</p><ul><li>Tea x 2</li><li>Cup x 1</li></ul><p><a href=\"" + url + "\">Track it</a></p><footer>ACME</footer></body></html>"
				m.TextBody = "Hello " + name + "\n\nYour order " + order + " has shipped:\n\n- Tea x 2\n- Cup x 1\n\nTrack it (" + url + ")\n\nACME"
			}
			req.Messages = append(req.Messages, item)
		}
		return req
	}
	// The requests are encoded before the clock starts: the client is in
	// this process, and what is measured is the server's side of the call
	// (decoding included), not the client's encoding (a Struct of variables
	// costs a client more to encode than the rendered strings).
	reqs := make([]preEncoded, b.N)
	for n := range reqs {
		raw, err := proto.Marshal(batch(n))
		if err != nil {
			b.Fatal(err)
		}
		reqs[n] = preEncoded(raw)
	}
	// One batch first: connections, caches and the template compiled.
	if _, err := client.SendBatch(call, batch(-1)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	meter := costmeter.Start(b, pool, nc)
	start := time.Now()
	for n := 0; n < b.N; n++ {
		resp := &emailsenderv1.SendBatchResponse{}
		err := conn.Invoke(call, emailsenderv1.SendService_SendBatch_FullMethodName, reqs[n], resp, grpc.ForceCodecV2(preEncodedCodec{}))
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range resp.GetResults() {
			if r.GetAccepted() == nil {
				b.Fatalf("rejected: %s", r.GetErrorMessage())
			}
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	meter.Report(b, b.N*benchBatch, "msg")
	b.ReportMetric(float64(b.N*benchBatch)/elapsed.Seconds(), "msg/s")
}

// preEncoded is a request already in its wire form.
type preEncoded []byte

// preEncodedCodec sends preEncoded requests as they are and decodes answers as
// protobuf: the "proto" codec without the encoding work.
type preEncodedCodec struct{}

func (preEncodedCodec) Name() string { return "proto" }

func (preEncodedCodec) Marshal(v any) (mem.BufferSlice, error) {
	if p, ok := v.(preEncoded); ok {
		return mem.BufferSlice{mem.SliceBuffer(p)}, nil
	}
	return encoding.GetCodecV2("proto").Marshal(v)
}

func (preEncodedCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return encoding.GetCodecV2("proto").Unmarshal(data, v)
}
