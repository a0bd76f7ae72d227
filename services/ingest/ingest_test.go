package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/secretbox"
	"github.com/namirasoft/email-sender/pkg/telemetry"
	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
	"github.com/namirasoft/email-sender/pkg/testkit/statustest"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest"
	"github.com/namirasoft/email-sender/services/ingest/outbox"
	"github.com/namirasoft/email-sender/services/ingest/send"
	"github.com/namirasoft/email-sender/services/ingest/validate"
)

type testBundle struct {
	db      *pgtest.DB
	nats    *natstest.Server
	js      jetstream.JetStream
	keyring *secretbox.Keyring
	client  emailsenderv1.SendServiceClient
	tpl     emailsenderv1.TemplateServiceClient
	account ingest.BootstrapResult
}

// setup runs the service against a fresh schema and a fresh JetStream server,
// with one sandbox account, and returns a client on 127.0.0.1.
func setup(t *testing.T, tune ...func(*ingest.Config)) *testBundle {
	t.Helper()
	ctx := context.Background()
	db := pgtest.New(t)
	ns := natstest.Start(t)

	nc, err := nats.Connect(ns.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.ReconnectBufSize(-1))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, queue.EnsureStreams(ctx, js, queue.StreamConfig{}))

	mk, err := secretbox.NewMasterKey()
	require.NoError(t, err)
	kr, err := secretbox.ParseKeyring("k1:"+mk, "")
	require.NoError(t, err)
	acct, err := ingest.Bootstrap(ctx, db.Pool, kr, ingest.BootstrapParams{AccountName: "acme", ProviderKind: "sandbox", Senders: []string{"example.com"}})
	require.NoError(t, err)

	tel, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "ingest-test"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })

	cfg := ingest.Config{
		Relay:         outbox.RelayConfig{Interval: 50 * time.Millisecond, Grace: 300 * time.Millisecond, MaxBackoff: 300 * time.Millisecond},
		Send:          send.Config{PublishTimeout: time.Second, LookupCacheTTL: -1},
		ShutdownGrace: 5 * time.Second,
	}
	for _, f := range tune {
		f(&cfg)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	svc, err := ingest.New(cfg, ingest.Deps{
		Pool: db.Pool, JetStream: js, Telemetry: tel, Listener: lis,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Auth:   auth.NewKeyStore(db.Pool, 0),
	})
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(15 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &testBundle{db: db, nats: ns, js: js, keyring: kr, client: emailsenderv1.NewSendServiceClient(conn),
		tpl: emailsenderv1.NewTemplateServiceClient(conn), account: acct}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// as returns a context calling with key.
func as(t testing.TB, key string) context.Context {
	return metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+key)
}

func (b *testBundle) ctx(t testing.TB) context.Context { return as(t, b.account.APIKey) }

func validMessage() *emailsenderv1.EmailMessage {
	return &emailsenderv1.EmailMessage{
		From:     &emailsenderv1.Address{Address: "sender@example.com", Name: "Sender"},
		To:       []*emailsenderv1.Address{{Address: "Jane@Example.com", Name: "Jane Doe"}},
		Cc:       []*emailsenderv1.Address{{Address: "cc@bücher.example", Name: "Jörg"}},
		Bcc:      []*emailsenderv1.Address{{Address: "hidden@example.org"}},
		Subject:  "Hello",
		TextBody: "hi",
		HtmlBody: "<p>hi</p>",
		Headers:  []*emailsenderv1.Header{{Name: "X-Campaign", Value: "spring"}},
		Attachments: []*emailsenderv1.Attachment{
			{Filename: "a.txt", ContentType: "text/plain", Content: []byte("attached")},
		},
		Tags: map[string]string{"campaign": "spring"},
	}
}

// sendJobs returns the messages on the send stream.
func (b *testBundle) sendJobs(t *testing.T) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	s, err := b.js.Stream(ctx, queue.SendStream)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	var out []*jetstream.RawStreamMsg
	if info.State.Msgs == 0 {
		return nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		require.NoError(t, err)
		out = append(out, m)
	}
	return out
}

// acceptedEvent returns the ACCEPTED (or SCHEDULED) event of message id on
// the events stream.
func (b *testBundle) acceptedEvent(t *testing.T, id string) *queuev1.DeliveryEvent {
	t.Helper()
	es, err := b.js.Stream(context.Background(), queue.EventStream)
	require.NoError(t, err)
	var ev queuev1.DeliveryEvent
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		m, err := es.GetLastMsgForSubject(context.Background(), queue.EventSubject(b.account.AccountID, id))
		require.NoError(c, err)
		require.NoError(c, proto.Unmarshal(m.Data, &ev))
	}, 5*time.Second, 20*time.Millisecond)
	require.Equal(t, id, ev.GetMessageId())
	require.Equal(t, queue.EventID(id, 0, ev.GetType(), ""), ev.GetEventId(), "the id the report stores it under")
	return &ev
}

func (b *testBundle) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

func (b *testBundle) messageStatus(t *testing.T, id string) msgstatus.Status {
	t.Helper()
	var s int16
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `SELECT status FROM messages WHERE id = $1`, id).Scan(&s))
	return msgstatus.Status(s)
}

func (b *testBundle) recipientStatuses(t *testing.T, id string) []msgstatus.Status {
	t.Helper()
	rows, err := b.db.Pool.Query(context.Background(), `SELECT status FROM recipients WHERE message_id = $1 ORDER BY idx`, id)
	require.NoError(t, err)
	ss, err := pgx.CollectRows(rows, pgx.RowTo[int16])
	require.NoError(t, err)
	out := make([]msgstatus.Status, len(ss))
	for i, s := range ss {
		out[i] = msgstatus.Status(s)
	}
	return out
}

func TestSendEmailAccepted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	msg := validMessage()
	resp, err := b.client.SendEmail(b.ctx(t), &emailsenderv1.SendEmailRequest{Message: msg})
	require.NoError(t, err)
	require.Equal(t, msgstatus.Queued, resp.GetStatus())
	require.False(t, resp.GetIdempotentReplay())
	id := resp.GetMessageId()

	var (
		accountID, providerID, kind, from, subject string
		recipientCount                             int
		content                                    []byte
	)
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `
		SELECT m.account_id::text, m.provider_id::text, m.provider_kind, m.from_address, m.subject, m.recipient_count, c.content
		FROM messages m JOIN message_contents c ON c.message_id = m.id AND c.account_id = m.account_id
		WHERE m.id = $1`, id).Scan(&accountID, &providerID, &kind, &from, &subject, &recipientCount, &content))
	require.Equal(t, b.account.AccountID, accountID)
	require.Equal(t, b.account.ProviderID, providerID)
	require.Equal(t, "sandbox", kind)
	require.Equal(t, "sender@example.com", from)
	require.Equal(t, 3, recipientCount)

	rows, err := b.db.Pool.Query(context.Background(), `SELECT kind, address, status, status_key FROM recipients WHERE message_id = $1 AND account_id = $2 ORDER BY idx`, id, accountID)
	require.NoError(t, err)
	type rcpt struct {
		Kind, Address string
		Status        int16
		Key           int64
	}
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[rcpt])
	require.NoError(t, err)
	q := int16(msgstatus.Queued)
	require.Equal(t, []rcpt{
		{"to", "jane@example.com", q, msgstatus.Key(msgstatus.Queued, 0)},
		{"cc", "cc@xn--bcher-kva.example", q, 0},
		{"bcc", "hidden@example.org", q, 0},
	}, rs)
	// The ACCEPTED event is on the events stream, for the report to store.
	require.Equal(t, queue.EventAccepted, b.acceptedEvent(t, id).GetType())
	require.Equal(t, 0, b.count(t, `SELECT count(*) FROM events WHERE message_id = $1`, id), "ingest stores no event row")

	// The job is on the stream and its outbox row is gone.
	var jobs []*jetstream.RawStreamMsg
	require.Eventually(t, func() bool { jobs = b.sendJobs(t); return len(jobs) == 1 }, 5*time.Second, 20*time.Millisecond)
	m := jobs[0]
	require.Equal(t, queue.SendSubject("sandbox", b.account.AccountID), m.Subject)
	require.Equal(t, id, m.Header.Get(jetstream.MsgIDHeader))
	require.NotEmpty(t, m.Header.Get("Traceparent"), "trace context travels with the job")
	require.Equal(t, content, m.Data, "the job is the stored content")
	var job queuev1.SendJob
	require.NoError(t, proto.Unmarshal(m.Data, &job))
	require.Equal(t, id, job.GetMessageId())
	require.Equal(t, b.account.AccountID, job.GetAccountId())
	require.Equal(t, b.account.ProviderID, job.GetProviderId())
	want := proto.CloneOf(msg)
	want.Cc[0].Address = "cc@xn--bcher-kva.example" // sent in ASCII form
	want.To[0].Address = "Jane@example.com"
	require.True(t, proto.Equal(want, job.GetMessage()), "job message %v\nwant %v", job.GetMessage(), want)
	require.Eventually(t, func() bool { return b.count(t, `SELECT count(*) FROM outbox`) == 0 }, 5*time.Second, 20*time.Millisecond)
}

func TestSendEmailInvalid(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	other, err := ingest.Bootstrap(ctx, b.db.Pool, b.keyring, ingest.BootstrapParams{AccountName: "other", ProviderKind: "sandbox", Senders: []string{"example.com"}})
	require.NoError(t, err)
	bare, err := ingest.Bootstrap(ctx, b.db.Pool, b.keyring, ingest.BootstrapParams{AccountName: "no-default", ProviderKind: "sandbox", Senders: []string{"example.com"}})
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(ctx, `UPDATE accounts SET default_provider_id = NULL WHERE id = $1`, bare.AccountID)
	require.NoError(t, err)
	unhealthy := otherProvider(t, b, b.account.AccountID, false)
	unknown := "0190a0b0-0000-7000-8000-000000000001"

	tests := []struct {
		name   string
		key    string
		mutate func(r *emailsenderv1.SendEmailRequest)
		code   codes.Code
		field  string
	}{
		{"no message", "", func(r *emailsenderv1.SendEmailRequest) { r.Message = nil }, codes.InvalidArgument, "message"},
		{"bad to", "", func(r *emailsenderv1.SendEmailRequest) {
			r.Message.To = append(r.Message.To, &emailsenderv1.Address{Address: "a@b.c"}, &emailsenderv1.Address{Address: "not an address"})
		}, codes.InvalidArgument, "message.to[2].address"},
		{"header injection in name", "", func(r *emailsenderv1.SendEmailRequest) { r.Message.To[0].Name = "x\r\nBcc: evil@x.com" }, codes.InvalidArgument, "message.to[0].name"},
		{"header injection in subject", "", func(r *emailsenderv1.SendEmailRequest) { r.Message.Subject = "x\nBcc: evil@x.com" }, codes.InvalidArgument, "message.subject"},
		{"header injection in header value", "", func(r *emailsenderv1.SendEmailRequest) { r.Message.Headers[0].Value = "x\r\nBcc: evil@x.com" }, codes.InvalidArgument, "message.headers[0].value"},
		{"reserved header", "", func(r *emailsenderv1.SendEmailRequest) { r.Message.Headers[0].Name = "Content-Type" }, codes.InvalidArgument, "message.headers[0].name"},
		{"no recipients", "", func(r *emailsenderv1.SendEmailRequest) { r.Message.To, r.Message.Cc, r.Message.Bcc = nil, nil, nil }, codes.InvalidArgument, "message.to"},
		{"no body", "", func(r *emailsenderv1.SendEmailRequest) { r.Message.TextBody, r.Message.HtmlBody = "", "" }, codes.InvalidArgument, "message.text_body"},
		{"bad filename", "", func(r *emailsenderv1.SendEmailRequest) { r.Message.Attachments[0].Filename = "a/b" }, codes.InvalidArgument, "message.attachments[0].filename"},
		{"bad content id", "", func(r *emailsenderv1.SendEmailRequest) { r.Message.Attachments[0].ContentId = "a b" }, codes.InvalidArgument, "message.attachments[0].content_id"},
		{"long idempotency key", "", func(r *emailsenderv1.SendEmailRequest) { r.IdempotencyKey = strings.Repeat("k", 256) }, codes.InvalidArgument, "idempotency_key"},
		{"send_at too far", "", func(r *emailsenderv1.SendEmailRequest) {
			r.SendAt = timestamppb.New(time.Now().Add(31 * 24 * time.Hour))
		}, codes.InvalidArgument, "send_at"},
		{"too many recipients", "", func(r *emailsenderv1.SendEmailRequest) {
			for range 50 {
				r.Message.Bcc = append(r.Message.Bcc, &emailsenderv1.Address{Address: "x@example.com"})
			}
		}, codes.ResourceExhausted, "message.bcc"},
		{"too many attachments", "", func(r *emailsenderv1.SendEmailRequest) {
			for range 20 {
				r.Message.Attachments = append(r.Message.Attachments, &emailsenderv1.Attachment{Filename: "x"})
			}
		}, codes.ResourceExhausted, "message.attachments"},
		{"attachment too big", "", func(r *emailsenderv1.SendEmailRequest) { r.Message.Attachments[0].Content = make([]byte, 7<<20+1) }, codes.ResourceExhausted, "message.attachments[0].content"},
		{"message too big", "", func(r *emailsenderv1.SendEmailRequest) {
			r.Message.Attachments = []*emailsenderv1.Attachment{{Filename: "a", Content: make([]byte, 6<<20)}, {Filename: "b", Content: make([]byte, 4<<20+1024)}}
		}, codes.ResourceExhausted, "message"},
		{"subject too long", "", func(r *emailsenderv1.SendEmailRequest) { r.Message.Subject = strings.Repeat("s", 999) }, codes.ResourceExhausted, "message.subject"},
		{"unknown provider", "", func(r *emailsenderv1.SendEmailRequest) { r.ProviderId = unknown }, codes.FailedPrecondition, "provider_id"},
		{"malformed provider id", "", func(r *emailsenderv1.SendEmailRequest) { r.ProviderId = "smtp-main" }, codes.FailedPrecondition, "provider_id"},
		{"provider of another account", "", func(r *emailsenderv1.SendEmailRequest) { r.ProviderId = other.ProviderID }, codes.FailedPrecondition, "provider_id"},
		{"unhealthy provider", "", func(r *emailsenderv1.SendEmailRequest) { r.ProviderId = unhealthy }, codes.FailedPrecondition, "provider_id"},
		{"no default provider", bare.APIKey, func(r *emailsenderv1.SendEmailRequest) {}, codes.FailedPrecondition, "provider_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := &emailsenderv1.SendEmailRequest{Message: validMessage()}
			tt.mutate(req)
			key := tt.key
			if key == "" {
				key = b.account.APIKey
			}
			_, err := b.client.SendEmail(as(t, key), req)
			statustest.RequireField(t, err, tt.code, tt.field)
		})
	}
	_, err = b.client.SendEmail(b.ctx(t), &emailsenderv1.SendEmailRequest{Message: validMessage(), ProviderId: other.ProviderID})
	require.Contains(t, status.Convert(err).Message(), fmt.Sprintf("no provider configuration %q in this account", other.ProviderID))
	require.Equal(t, 0, b.count(t, `SELECT count(*) FROM messages`), "nothing invalid is stored")
}

// otherProvider adds a sandbox provider configuration to accountID.
func otherProvider(t *testing.T, b *testBundle, accountID string, healthy bool) string {
	t.Helper()
	var id string
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `
		INSERT INTO provider_configs (id, account_id, name, kind, healthy)
		VALUES (gen_random_uuid(), $1, 'extra-' || gen_random_uuid(), 'sandbox', $2) RETURNING id::text`,
		accountID, healthy).Scan(&id))
	return id
}

func TestSendEmailExplicitProvider(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pid := otherProvider(t, b, b.account.AccountID, true)
	resp, err := b.client.SendEmail(b.ctx(t), &emailsenderv1.SendEmailRequest{Message: validMessage(), ProviderId: pid})
	require.NoError(t, err)
	var got string
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `SELECT provider_id::text FROM messages WHERE id = $1`, resp.GetMessageId()).Scan(&got))
	require.Equal(t, pid, got)
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	b := setup(t)
	req := &emailsenderv1.SendEmailRequest{Message: validMessage()}

	_, err := b.client.SendEmail(context.Background(), req)
	require.Equal(t, codes.Unauthenticated, status.Code(err), "no key: %v", err)
	_, err = b.client.SendEmail(as(t, "es_notakey"), req)
	require.Equal(t, codes.Unauthenticated, status.Code(err), "unknown key: %v", err)
	_, err = b.client.CancelScheduled(context.Background(), &emailsenderv1.CancelScheduledRequest{MessageId: "x"})
	require.Equal(t, codes.Unauthenticated, status.Code(err))

	key, prefix, hash, err := auth.NewKey()
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(context.Background(), `INSERT INTO api_keys (id, account_id, prefix, hash, scopes) VALUES (gen_random_uuid(), $1, $2, $3, '{read}')`,
		b.account.AccountID, prefix, hash)
	require.NoError(t, err)
	_, err = b.client.SendEmail(as(t, key), req)
	require.Equal(t, codes.PermissionDenied, status.Code(err), "read-only key: %v", err)
	require.Equal(t, 0, b.count(t, `SELECT count(*) FROM messages`))
}

func TestIdempotencyConcurrent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	req := &emailsenderv1.SendEmailRequest{Message: validMessage(), IdempotencyKey: "order-42"}
	const n = 20
	var (
		wg    sync.WaitGroup
		resps = make([]*emailsenderv1.SendEmailResponse, n)
		errs  = make([]error, n)
		start = make(chan struct{})
	)
	for i := range n {
		wg.Go(func() {
			<-start
			resps[i], errs[i] = b.client.SendEmail(b.ctx(t), req)
		})
	}
	close(start)
	wg.Wait()
	first := 0
	for i := range n {
		require.NoError(t, errs[i])
		require.Equal(t, resps[0].GetMessageId(), resps[i].GetMessageId())
		require.Equal(t, msgstatus.Queued, resps[i].GetStatus())
		if !resps[i].GetIdempotentReplay() {
			first++
		}
	}
	require.Equal(t, 1, first, "exactly one answer is the original")
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM messages`))
	require.Equal(t, 3, b.count(t, `SELECT count(*) FROM recipients`))
	require.Eventually(t, func() bool { return b.count(t, `SELECT count(*) FROM outbox`) == 0 }, 5*time.Second, 20*time.Millisecond)
	jobs := b.sendJobs(t)
	require.Len(t, jobs, 1)
	require.Equal(t, resps[0].GetMessageId(), jobs[0].Header.Get(jetstream.MsgIDHeader))

	// A later retry still answers the same.
	again, err := b.client.SendEmail(b.ctx(t), req)
	require.NoError(t, err)
	require.True(t, again.GetIdempotentReplay())
	require.Equal(t, resps[0].GetMessageId(), again.GetMessageId())
}

func TestIdempotencyKeyReuse(t *testing.T) {
	t.Parallel()
	b := setup(t)
	req := &emailsenderv1.SendEmailRequest{Message: validMessage(), IdempotencyKey: "k"}
	first, err := b.client.SendEmail(b.ctx(t), req)
	require.NoError(t, err)

	changed := proto.CloneOf(req)
	changed.Message.Subject = "something else"
	_, err = b.client.SendEmail(b.ctx(t), changed)
	statustest.RequireField(t, err, codes.AlreadyExists, "idempotency_key")

	// Another account's identical key is its own.
	other, err := ingest.Bootstrap(context.Background(), b.db.Pool, b.keyring, ingest.BootstrapParams{AccountName: "other", ProviderKind: "sandbox", Senders: []string{"example.com"}})
	require.NoError(t, err)
	theirs, err := b.client.SendEmail(as(t, other.APIKey), req)
	require.NoError(t, err)
	require.False(t, theirs.GetIdempotentReplay())
	require.NotEqual(t, first.GetMessageId(), theirs.GetMessageId())

	// A key older than 24 hours counts as new.
	_, err = b.db.Pool.Exec(context.Background(), `UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE account_id = $1`, b.account.AccountID)
	require.NoError(t, err)
	fresh, err := b.client.SendEmail(b.ctx(t), changed)
	require.NoError(t, err)
	require.False(t, fresh.GetIdempotentReplay())
	require.NotEqual(t, first.GetMessageId(), fresh.GetMessageId())
	require.Equal(t, 3, b.count(t, `SELECT count(*) FROM messages`))
}

func TestNATSDownDuringSend(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.nats.Stop()

	resp, err := b.client.SendEmail(b.ctx(t), &emailsenderv1.SendEmailRequest{Message: validMessage()})
	require.NoError(t, err, "the message is durable in the outbox")
	id := resp.GetMessageId()
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM outbox WHERE message_id = $1`, id))
	time.Sleep(700 * time.Millisecond) // the relay tries and backs off meanwhile
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM outbox WHERE message_id = $1`, id))

	b.nats.Restart()
	require.Eventually(t, func() bool { return b.count(t, `SELECT count(*) FROM outbox`) == 0 }, 15*time.Second, 50*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	jobs := b.sendJobs(t)
	require.Len(t, jobs, 1, "published exactly once")
	require.Equal(t, id, jobs[0].Header.Get(jetstream.MsgIDHeader))
	require.NotEmpty(t, jobs[0].Header.Get("Traceparent"), "the relay publishes in the call's trace")
	require.Equal(t, msgstatus.Queued, b.messageStatus(t, id))
}

func TestScheduled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sendAt := time.Now().Add(2 * time.Second)
	resp, err := b.client.SendEmail(b.ctx(t), &emailsenderv1.SendEmailRequest{Message: validMessage(), SendAt: timestamppb.New(sendAt)})
	require.NoError(t, err)
	require.Equal(t, msgstatus.Scheduled, resp.GetStatus())
	id := resp.GetMessageId()
	require.Equal(t, msgstatus.Scheduled, b.messageStatus(t, id))
	require.Equal(t, []msgstatus.Status{msgstatus.Scheduled, msgstatus.Scheduled, msgstatus.Scheduled}, b.recipientStatuses(t, id))
	require.Equal(t, queue.EventScheduled, b.acceptedEvent(t, id).GetType())

	time.Sleep(time.Second)
	require.Empty(t, b.sendJobs(t), "nothing is published before send_at")

	require.Eventually(t, func() bool { return len(b.sendJobs(t)) == 1 }, 10*time.Second, 50*time.Millisecond)
	require.False(t, time.Now().Before(sendAt), "published at or after send_at")
	// The relay publishes, then commits the status change and the outbox
	// delete: the job can be on the stream a moment before the commit.
	require.Eventually(t, func() bool { return b.messageStatus(t, id) == msgstatus.Queued }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, []msgstatus.Status{msgstatus.Queued, msgstatus.Queued, msgstatus.Queued}, b.recipientStatuses(t, id))
	require.Equal(t, 0, b.count(t, `SELECT count(*) FROM outbox`))

	// Once queued it can no longer be canceled.
	_, err = b.client.CancelScheduled(b.ctx(t), &emailsenderv1.CancelScheduledRequest{MessageId: id})
	statustest.RequireField(t, err, codes.FailedPrecondition, "message_id")
	require.Contains(t, status.Convert(err).Message(), "QUEUED")
}

func TestCancelScheduled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	resp, err := b.client.SendEmail(b.ctx(t), &emailsenderv1.SendEmailRequest{Message: validMessage(), SendAt: timestamppb.New(time.Now().Add(time.Hour))})
	require.NoError(t, err)
	id := resp.GetMessageId()

	other, err := ingest.Bootstrap(context.Background(), b.db.Pool, b.keyring, ingest.BootstrapParams{AccountName: "other", ProviderKind: "sandbox", Senders: []string{"example.com"}})
	require.NoError(t, err)
	_, err = b.client.CancelScheduled(as(t, other.APIKey), &emailsenderv1.CancelScheduledRequest{MessageId: id})
	statustest.RequireField(t, err, codes.NotFound, "message_id")
	for _, bad := range []string{"0190a0b0-0000-7000-8000-000000000001", "nope", ""} {
		_, err = b.client.CancelScheduled(b.ctx(t), &emailsenderv1.CancelScheduledRequest{MessageId: bad})
		require.Equal(t, codes.NotFound, status.Code(err), "cancel %q: %v", bad, err)
	}
	require.Equal(t, msgstatus.Scheduled, b.messageStatus(t, id), "another account's cancel changes nothing")

	got, err := b.client.CancelScheduled(b.ctx(t), &emailsenderv1.CancelScheduledRequest{MessageId: id})
	require.NoError(t, err)
	require.Equal(t, msgstatus.Canceled, got.GetStatus())
	require.Equal(t, id, got.GetMessageId())
	require.Equal(t, msgstatus.Canceled, b.messageStatus(t, id))
	require.Equal(t, []msgstatus.Status{msgstatus.Canceled, msgstatus.Canceled, msgstatus.Canceled}, b.recipientStatuses(t, id))
	require.Equal(t, 3, b.count(t, `SELECT count(*) FROM recipients WHERE message_id = $1 AND status_key = $2`, id, msgstatus.Key(msgstatus.Canceled, 0)))
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM events WHERE message_id = $1 AND type = $2`, id, queue.EventCanceled))
	require.Equal(t, 0, b.count(t, `SELECT count(*) FROM outbox`))

	_, err = b.client.CancelScheduled(b.ctx(t), &emailsenderv1.CancelScheduledRequest{MessageId: id})
	statustest.RequireField(t, err, codes.FailedPrecondition, "message_id")
	require.Contains(t, status.Convert(err).Message(), "CANCELED")

	// The cancel event reaches the events stream; no job the send stream.
	es, err := b.js.Stream(context.Background(), queue.EventStream)
	require.NoError(t, err)
	ev, err := es.GetLastMsgForSubject(context.Background(), queue.EventSubject(b.account.AccountID, id))
	require.NoError(t, err)
	var de queuev1.DeliveryEvent
	require.NoError(t, proto.Unmarshal(ev.Data, &de))
	require.Equal(t, queue.EventCanceled, de.GetType())
	time.Sleep(500 * time.Millisecond)
	require.Empty(t, b.sendJobs(t))
}

func TestSendBatch(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *ingest.Config) { c.Send.MaxBatch = 5 })
	bad := validMessage()
	bad.To[0].Address = "nope"
	dupKey := &emailsenderv1.SendEmailRequest{Message: validMessage(), IdempotencyKey: "same"}
	req := &emailsenderv1.SendBatchRequest{Messages: []*emailsenderv1.SendEmailRequest{
		{Message: validMessage()},
		{Message: bad},
		dupKey,
		{Message: validMessage(), ProviderId: "0190a0b0-0000-7000-8000-000000000001"},
		dupKey,
	}}
	resp, err := b.client.SendBatch(b.ctx(t), req)
	require.NoError(t, err)
	rs := resp.GetResults()
	require.Len(t, rs, 5)

	require.NotEmpty(t, rs[0].GetAccepted().GetMessageId())
	require.Nil(t, rs[1].GetAccepted())
	require.Equal(t, int32(codes.InvalidArgument), rs[1].GetErrorCode())
	require.True(t, strings.HasPrefix(rs[1].GetErrorMessage(), "messages[1].message.to[0].address: "), rs[1].GetErrorMessage())
	require.NotEmpty(t, rs[2].GetAccepted().GetMessageId())
	require.Equal(t, int32(codes.FailedPrecondition), rs[3].GetErrorCode())
	require.True(t, strings.HasPrefix(rs[3].GetErrorMessage(), "messages[3].provider_id: "), rs[3].GetErrorMessage())
	require.Equal(t, rs[2].GetAccepted().GetMessageId(), rs[4].GetAccepted().GetMessageId(), "same key in one batch is one message")
	require.True(t, rs[4].GetAccepted().GetIdempotentReplay())

	require.Equal(t, 2, b.count(t, `SELECT count(*) FROM messages`))
	require.Eventually(t, func() bool { return len(b.sendJobs(t)) == 2 }, 5*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return b.count(t, `SELECT count(*) FROM outbox`) == 0 }, 5*time.Second, 20*time.Millisecond)

	req.Messages = append(req.Messages, &emailsenderv1.SendEmailRequest{Message: validMessage()})
	_, err = b.client.SendBatch(b.ctx(t), req)
	statustest.RequireField(t, err, codes.ResourceExhausted, "messages")
}

func TestBootstrapSMTP(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	mk, err := secretbox.NewMasterKey()
	require.NoError(t, err)
	kr, err := secretbox.ParseKeyring("k1:"+mk, "")
	require.NoError(t, err)
	ctx := context.Background()
	res, err := ingest.Bootstrap(ctx, db.Pool, kr, ingest.BootstrapParams{
		AccountName: "acme", ProviderKind: "smtp",
		SMTP: ingest.SMTPSettings{Host: "smtp.example.com", Port: 465, TLS: "implicit", Username: "u", Password: "s3cret"},
	})
	require.NoError(t, err)

	var (
		settings, kind string
		secret         []byte
		def            string
	)
	require.NoError(t, db.Pool.QueryRow(ctx, `
		SELECT p.kind, p.settings::text, p.secret, a.default_provider_id::text
		FROM provider_configs p JOIN accounts a ON a.id = p.account_id WHERE p.id = $1 AND a.id = $2`,
		res.ProviderID, res.AccountID).Scan(&kind, &settings, &secret, &def))
	require.Equal(t, "smtp", kind)
	require.Equal(t, res.ProviderID, def)
	require.JSONEq(t, `{"host":"smtp.example.com","port":465,"tls":"implicit","username":"u","pool_size":4}`, settings)
	require.NotContains(t, string(secret), "s3cret")
	plain, err := kr.Open(secret, []byte(res.ProviderID))
	require.NoError(t, err)
	require.JSONEq(t, `{"password":"s3cret"}`, string(plain))

	p, err := auth.NewKeyStore(db.Pool, 0).Authenticate(ctx, res.APIKey)
	require.NoError(t, err)
	require.Equal(t, res.AccountID, p.AccountID)
	require.ElementsMatch(t, []string{"send", "read", "admin"}, p.Scopes)

	_, err = ingest.Bootstrap(ctx, db.Pool, nil, ingest.BootstrapParams{AccountName: "x", ProviderKind: "smtp", SMTP: ingest.SMTPSettings{Host: "h", Password: "p"}})
	require.Error(t, err, "a password needs a keyring")
	_, err = ingest.Bootstrap(ctx, db.Pool, nil, ingest.BootstrapParams{AccountName: "x", ProviderKind: "ses"})
	require.Error(t, err)

	// An account id given beforehand (a Namirasoft Account user's claim).
	id := "0b6f0f7e-3c5a-4d6e-9f10-2a3b4c5d6e7f"
	got, err := ingest.Bootstrap(ctx, db.Pool, nil, ingest.BootstrapParams{AccountID: strings.ToUpper(id), AccountName: "y", ProviderKind: "sandbox"})
	require.NoError(t, err)
	require.Equal(t, id, got.AccountID)
	p, err = auth.NewKeyStore(db.Pool, 0).Authenticate(ctx, got.APIKey)
	require.NoError(t, err)
	require.Equal(t, id, p.AccountID)
	_, err = ingest.Bootstrap(ctx, db.Pool, nil, ingest.BootstrapParams{AccountID: "not-a-uuid", AccountName: "z", ProviderKind: "sandbox"})
	require.ErrorContains(t, err, "account id")
}

func TestNewChecksNATSMaxPayload(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ns := natstest.Start(t)
	nc, err := nats.Connect(ns.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	deps := ingest.Deps{Pool: db.Pool, JetStream: js, Auth: auth.NewKeyStore(db.Pool, 0)}

	_, err = ingest.New(ingest.Config{Send: send.Config{Limits: validate.Limits{MaxMessageBytes: int(nc.MaxPayload())}}, GRPCMaxRecvBytes: 1 << 30}, deps)
	require.ErrorContains(t, err, "max_payload")
	_, err = ingest.New(ingest.Config{}, deps)
	require.NoError(t, err)
}
