package report_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/partition"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/telemetry"
	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/report"
)

// testBundle is one test's report service over its own PostgreSQL schema and
// JetStream server, with a gRPC client on a real TCP listener.
type testBundle struct {
	db      *pgtest.DB
	js      jetstream.JetStream
	tel     *telemetry.Telemetry
	spans   *tracetest.InMemoryExporter
	svc     *report.Service
	client  emailsenderv1.ReportServiceClient
	conn    *grpc.ClientConn
	batches *batchLog
	start   func()
}

type setupOpts struct {
	// stopped leaves the service to be started with bundle.start.
	stopped bool
	cfg     report.Config
	// deps, when set, adjusts the service's dependencies before New.
	deps func(*report.Deps)
}

func setup(t *testing.T) *testBundle { return setupWith(t, setupOpts{}) }

func setupWith(t testing.TB, opts setupOpts) *testBundle {
	t.Helper()
	ctx := context.Background()
	db := pgtest.New(t)
	ns := natstest.Start(t)
	nc, err := nats.Connect(ns.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, queue.EnsureStreams(ctx, js, queue.StreamConfig{}))

	spans := tracetest.NewInMemoryExporter()
	// Built by hand rather than with telemetry.Setup, whose resource merge fails
	// with the otel SDK in go.mod (conflicting schema URLs).
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(spans)))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tel := &telemetry.Telemetry{TracerProvider: tp, Propagator: telemetry.Nop().Propagator}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	batches := &batchLog{outcome: map[string]map[string]bool{}}
	deps := report.Deps{
		Pool:          db.Pool,
		JetStream:     js,
		Authenticator: auth.NewKeyStore(db.Pool, 0),
		Telemetry:     tel,
		Logger:        telemetry.NewLogger(t.Output(), slog.LevelDebug, "report"),
		Listener:      lis,
		Hooks:         report.Hooks{BatchDone: batches.add},
	}
	if opts.deps != nil {
		opts.deps(&deps)
	}
	svc, err := report.New(opts.cfg, deps)
	require.NoError(t, err)

	b := &testBundle{db: db, js: js, tel: tel, spans: spans, svc: svc, batches: batches}
	var once sync.Once
	b.start = func() {
		once.Do(func() {
			runCtx, cancel := context.WithCancel(ctx)
			errc := make(chan error, 1)
			go func() { errc <- svc.Run(runCtx) }()
			t.Cleanup(func() {
				cancel()
				select {
				case err := <-errc:
					require.NoError(t, err, "run")
				case <-time.After(15 * time.Second):
					t.Error("report did not stop within 15s")
				}
			})
		})
	}
	if !opts.stopped {
		b.start()
	}
	creds := insecure.NewCredentials()
	if opts.cfg.TLSCertFile != "" {
		// gRPC serves TLS too; what is tested here is not the certificate.
		creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test client
	}
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(creds))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	b.conn = conn
	b.client = emailsenderv1.NewReportServiceClient(conn)
	return b
}

// batchLog records what the consumer did with each event id.
type batchLog struct {
	mu      sync.Mutex
	outcome map[string]map[string]bool
	reports []report.BatchReport
}

func (l *batchLog) add(r report.BatchReport) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reports = append(l.reports, r)
	for _, set := range []struct {
		name string
		ids  []string
	}{{"applied", r.Applied}, {"duplicate", r.Duplicates}, {"unknown", r.Unknown}, {"malformed", r.Malformed}, {"retried", r.Retried}} {
		for _, id := range set.ids {
			if l.outcome[id] == nil {
				l.outcome[id] = map[string]bool{}
			}
			l.outcome[id][set.name] = true
		}
	}
}

func (l *batchLog) has(id, outcome string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.outcome[id][outcome]
}

func (l *batchLog) all() []report.BatchReport {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]report.BatchReport(nil), l.reports...)
}

// wait waits until the consumer settled each event id (at least once) with the given outcome.
func (b *testBundle) wait(t *testing.T, outcome string, ids ...string) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for _, id := range ids {
			require.True(c, b.batches.has(id, outcome), "event %s not %s", id, outcome)
		}
	}, 15*time.Second, 5*time.Millisecond)
}

// waitDrained waits until the consumer has nothing pending or unacknowledged.
func (b *testBundle) waitDrained(t *testing.T) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		cons, err := b.js.Consumer(context.Background(), queue.EventStream, "report")
		require.NoError(c, err)
		info, err := cons.Info(context.Background())
		require.NoError(c, err)
		require.Zero(c, info.NumPending, "pending")
		require.Zero(c, info.NumAckPending, "ack pending")
	}, 15*time.Second, 10*time.Millisecond)
}

// account is a test account with an API key.
type account struct {
	id  string
	key string
}

func (b *testBundle) newAccount(t testing.TB, scopes ...string) account {
	t.Helper()
	if len(scopes) == 0 {
		scopes = []string{auth.ScopeSend, auth.ScopeRead}
	}
	ctx := context.Background()
	a := account{id: uuid.NewString()}
	_, err := b.db.Pool.Exec(ctx, `INSERT INTO accounts (id, name) VALUES ($1, $2)`, a.id, "acct-"+a.id[:8])
	require.NoError(t, err)
	key, prefix, hash, err := auth.NewKey()
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(ctx, `INSERT INTO api_keys (id, account_id, name, prefix, hash, scopes) VALUES ($1, $2, 'test', $3, $4, $5)`,
		uuid.NewString(), a.id, prefix, hash, scopes)
	require.NoError(t, err)
	a.key = key
	return a
}

// msgSpec describes a message as ingest stores it.
type msgSpec struct {
	to, cc, bcc []string
	tags        map[string]string
	providerID  string
	status      msgstatus.Status
	createdAt   time.Time
	// unreported leaves out the ACCEPTED event's row: the message as ingest
	// stores it, before the report has applied the event.
	unreported bool
}

type recipientRow struct{ kind, address string }

// newMessage stores a message the way ingest does (the message and its
// recipients, in one transaction) with, unless spec.unreported, the row of its
// ACCEPTED event as the report stores it once ingest published it.
func (b *testBundle) newMessage(t testing.TB, a account, spec msgSpec) string {
	t.Helper()
	ctx := context.Background()
	if len(spec.to)+len(spec.cc)+len(spec.bcc) == 0 {
		spec.to = []string{"rcpt@example.com"}
	}
	if spec.providerID == "" {
		spec.providerID = "00000000-0000-7000-8000-000000000001"
	}
	if spec.status == 0 {
		spec.status = msgstatus.Queued
	}
	if spec.createdAt.IsZero() {
		spec.createdAt = time.Now()
	}
	if spec.tags == nil {
		spec.tags = map[string]string{}
	}
	id, err := partition.NewMessageID(spec.createdAt) // as ingest makes it
	require.NoError(t, err)
	var rcpts []recipientRow
	for _, r := range spec.to {
		rcpts = append(rcpts, recipientRow{"to", r})
	}
	for _, r := range spec.cc {
		rcpts = append(rcpts, recipientRow{"cc", r})
	}
	for _, r := range spec.bcc {
		rcpts = append(rcpts, recipientRow{"bcc", r})
	}
	tx, err := b.db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, `
		INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, from_name,
			subject, tags, recipient_count, size_bytes, created_at, updated_at)
		VALUES ($1, $2, $3, 'sandbox', $4, 'sender@example.com', 'Sender', 'Hello', $5, $6, 100, $7, $7)`,
		id, a.id, spec.providerID, int16(spec.status), spec.tags, len(rcpts), spec.createdAt)
	require.NoError(t, err)
	for i, r := range rcpts {
		_, err = tx.Exec(ctx, `
			INSERT INTO recipients (message_id, idx, account_id, kind, address, name, status, status_key, updated_at)
			VALUES ($1, $2, $3, $4, lower($5), '', $6, $7, $8)`,
			id, i, a.id, r.kind, r.address, int16(spec.status), msgstatus.Key(spec.status, 0), spec.createdAt)
		require.NoError(t, err)
	}
	if !spec.unreported {
		_, err = tx.Exec(ctx, `
			INSERT INTO events (id, message_id, account_id, type, status, occurred_at)
			VALUES ($1, $2, $3, $4, $5, $6)`,
			queue.EventID(id.String(), 0, queue.EventAccepted, ""), id, a.id, queue.EventAccepted, int16(spec.status), spec.createdAt)
		require.NoError(t, err)
	}
	require.NoError(t, tx.Commit(ctx))
	return id.String()
}

// event builds a delivery event as a worker publishes it.
func event(a account, messageID, typ string, st msgstatus.Status, attempt int32, at time.Time, recipients ...string) *queuev1.DeliveryEvent {
	rcpt := ""
	if len(recipients) > 0 {
		rcpt = recipients[0]
	}
	return &queuev1.DeliveryEvent{
		EventId:    queue.EventID(messageID, int(attempt), typ, rcpt),
		MessageId:  messageID,
		AccountId:  a.id,
		Type:       typ,
		Status:     st,
		Attempt:    attempt,
		OccurredAt: timestamppb.New(at),
		Recipients: recipients,
	}
}

// publish publishes ev on the events stream as workers do. msgID overrides
// the Nats-Msg-Id (to get past JetStream's duplicate window, as a redelivery
// after it would).
func (b *testBundle) publish(t *testing.T, ctx context.Context, ev *queuev1.DeliveryEvent, msgID ...string) {
	t.Helper()
	data, err := proto.Marshal(ev)
	require.NoError(t, err)
	b.publishRaw(t, ctx, queue.EventSubject(ev.GetAccountId(), ev.GetMessageId()), data, append(msgID, ev.GetEventId())[0])
}

func (b *testBundle) publishRaw(t *testing.T, ctx context.Context, subject string, data []byte, msgID string) {
	t.Helper()
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	b.tel.InjectNATS(ctx, m.Header)
	ack, err := b.js.PublishMsg(ctx, m)
	require.NoError(t, err)
	require.False(t, ack.Duplicate, "publish of %s was deduplicated", msgID)
}

// authed returns a context that calls as a.
func authed(a account) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+a.key)
}

func (b *testBundle) get(t *testing.T, a account, id string) *emailsenderv1.GetMessageResponse {
	t.Helper()
	resp, err := b.client.GetMessage(authed(a), &emailsenderv1.GetMessageRequest{MessageId: id})
	require.NoError(t, err)
	return resp
}

// requireCode checks err's gRPC code and that its message names field.
func requireCode(t *testing.T, err error, code codes.Code, field string) {
	t.Helper()
	require.Error(t, err)
	st, ok := status.FromError(err)
	require.True(t, ok, "not a gRPC status: %v", err)
	require.Equal(t, code, st.Code(), "status: %v", st)
	if field != "" {
		require.Contains(t, st.Message(), field)
	}
}

func recipientStatuses(resp *emailsenderv1.GetMessageResponse) map[string]msgstatus.Status {
	out := map[string]msgstatus.Status{}
	for _, r := range resp.GetRecipients() {
		out[r.GetAddress().GetAddress()] = r.GetStatus()
	}
	return out
}

func eventTypes(resp *emailsenderv1.GetMessageResponse) []string {
	var out []string
	for _, e := range resp.GetEvents() {
		out = append(out, e.GetType())
	}
	return out
}
