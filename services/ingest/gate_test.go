package ingest_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/apigate"
	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/limits"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/testkit/jwttest"
	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
	"github.com/namirasoft/email-sender/pkg/usage"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest"
	"github.com/namirasoft/email-sender/services/ingest/send"
)

// gateBundle is a PostgreSQL schema and a JetStream server that any number of
// ingest instances share, with one sandbox account.
type gateBundle struct {
	db      *pgtest.DB
	js      jetstream.JetStream
	natsURL string
	account ingest.BootstrapResult
}

func setupGate(t *testing.T) *gateBundle {
	t.Helper()
	db := pgtest.New(t)
	ns := natstest.Start(t)
	nc, err := nats.Connect(ns.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, queue.EnsureStreams(t.Context(), js, queue.StreamConfig{}))
	acct, err := ingest.Bootstrap(t.Context(), db.Pool, nil, ingest.BootstrapParams{AccountName: "acme", ProviderKind: "sandbox", Senders: []string{"example.com"}})
	require.NoError(t, err)
	return &gateBundle{db: db, js: js, natsURL: ns.URL(), account: acct}
}

// instance is one running ingest replica.
type instance struct {
	conn    *grpc.ClientConn
	send    emailsenderv1.SendServiceClient
	account emailsenderv1.AccountServiceClient
	tpl     emailsenderv1.TemplateServiceClient
}

// start runs an ingest instance over the bundle's database and JetStream.
func (b *gateBundle) start(t *testing.T, api apigate.Config, dial ...grpc.DialOption) *instance {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	svc, err := ingest.New(ingest.Config{ShutdownGrace: 5 * time.Second, Send: send.Config{LookupCacheTTL: -1}, API: api}, ingest.Deps{
		Pool: b.db.Pool, JetStream: b.js, Listener: lis,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Auth:   auth.NewKeyStore(b.db.Pool, 0),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(15 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	conn, err := grpc.NewClient(lis.Addr().String(), append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, dial...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &instance{conn: conn, send: emailsenderv1.NewSendServiceClient(conn), account: emailsenderv1.NewAccountServiceClient(conn),
		tpl: emailsenderv1.NewTemplateServiceClient(conn)}
}

// key adds an API key with scopes to account and returns it.
func (b *gateBundle) key(t *testing.T, account string, scopes ...string) (key, id string) {
	t.Helper()
	key, prefix, hash, err := auth.NewKey()
	require.NoError(t, err)
	id = uuid.NewString()
	_, err = b.db.Pool.Exec(t.Context(), `INSERT INTO api_keys (id, account_id, name, prefix, hash, scopes) VALUES ($1, $2, 'test', $3, $4, $5)`,
		id, account, prefix, hash, scopes)
	require.NoError(t, err)
	return key, id
}

func sendReq() *emailsenderv1.SendEmailRequest {
	return &emailsenderv1.SendEmailRequest{Message: &emailsenderv1.EmailMessage{
		From: &emailsenderv1.Address{Address: "sender@example.com"},
		To:   []*emailsenderv1.Address{{Address: "someone@example.com"}}, Subject: "hi", TextBody: "hi",
	}}
}

func TestMethodScopesCoverEveryMethod(t *testing.T) {
	t.Parallel()
	scopes := ingest.MethodScopes()
	for _, sd := range []grpc.ServiceDesc{emailsenderv1.SendService_ServiceDesc, emailsenderv1.AccountService_ServiceDesc} {
		for _, m := range sd.Methods {
			full := "/" + sd.ServiceName + "/" + m.MethodName
			need, ok := scopes[full]
			require.True(t, ok, "%s has no scope", full)
			switch {
			case sd.ServiceName == "emailsender.v1.SendService":
				require.Equal(t, auth.ScopeSend, need, full)
			default:
				require.Equal(t, auth.ScopeAdmin, need, full)
			}
		}
	}
	require.Equal(t, auth.ScopeAdmin, auth.RequiredScope(scopes, "/emailsender.v1.SendService/Unknown"))
}

func TestPermissionDeniedWithoutScope(t *testing.T) {
	t.Parallel()
	b := setupGate(t)
	in := b.start(t, apigate.Config{})
	readOnly, _ := b.key(t, b.account.AccountID, auth.ScopeRead)
	sendOnly, _ := b.key(t, b.account.AccountID, auth.ScopeSend)

	_, err := in.send.SendEmail(as(t, readOnly), sendReq())
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	_, err = in.send.CancelScheduled(as(t, readOnly), &emailsenderv1.CancelScheduledRequest{MessageId: uuid.NewString()})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	// AccountService methods need admin (ListUsage read).
	_, err = in.account.ListApiKeys(as(t, sendOnly), &emailsenderv1.ListApiKeysRequest{})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	_, err = in.account.ListUsage(as(t, sendOnly), &emailsenderv1.ListUsageRequest{})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	_, err = in.account.ListApiKeys(as(t, readOnly), &emailsenderv1.ListApiKeysRequest{})
	require.Equal(t, codes.PermissionDenied, status.Code(err))

	_, err = in.send.SendEmail(as(t, sendOnly), sendReq())
	require.NoError(t, err)
}

func TestNamirasoftAccountTokens(t *testing.T) {
	t.Parallel()
	b := setupGate(t)
	iss := jwttest.New(t)
	iss.AddKey(t, "rogue", "RSA") // signs, never published
	in := b.start(t, apigate.Config{JWT: iss.Config()})
	acct := b.account.AccountID
	with := func(mut func(jwt.MapClaims)) jwt.MapClaims {
		c := iss.Claims(acct, "send read")
		mut(c)
		return c
	}
	tests := []struct {
		name  string
		token func() string
		want  codes.Code
	}{
		{"rs256", func() string { return iss.Sign(t, jwttest.RSAKey, iss.Claims(acct, "send")) }, codes.OK},
		{"es256", func() string { return iss.Sign(t, jwttest.ECKey, iss.Claims(acct, "send")) }, codes.OK},
		{"no scope claim: defaults send, read", func() string { return iss.Sign(t, jwttest.ECKey, iss.Claims(acct, "")) }, codes.OK},
		{"read scope only", func() string { return iss.Sign(t, jwttest.RSAKey, iss.Claims(acct, "read")) }, codes.PermissionDenied},
		{"expired", func() string {
			return iss.Sign(t, jwttest.RSAKey, with(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }))
		}, codes.Unauthenticated},
		{"wrong audience", func() string {
			return iss.Sign(t, jwttest.RSAKey, with(func(c jwt.MapClaims) { c["aud"] = "another-service" }))
		}, codes.Unauthenticated},
		{"wrong issuer", func() string {
			return iss.Sign(t, jwttest.ECKey, with(func(c jwt.MapClaims) { c["iss"] = "https://evil.test" }))
		}, codes.Unauthenticated},
		{"wrong key for a known kid", func() string { return iss.SignAs(t, "rogue", jwttest.RSAKey, iss.Claims(acct, "send")) }, codes.Unauthenticated},
		{"alg none", func() string { return jwttest.None(t, jwttest.RSAKey, iss.Claims(acct, "send admin")) }, codes.Unauthenticated},
		{"hs256 keyed with the public key", func() string { return iss.HS256WithPublicKey(t, jwttest.RSAKey, iss.Claims(acct, "send admin")) }, codes.Unauthenticated},
		{"unpublished kid", func() string { return iss.Sign(t, "rogue", iss.Claims(acct, "send")) }, codes.Unauthenticated},
	}
	for _, tt := range tests {
		_, err := in.send.SendEmail(as(t, tt.token()), sendReq())
		require.Equal(t, tt.want, status.Code(err), "%s: %v", tt.name, err)
	}

	// Key rotation: a key published after the JWKS was cached is fetched on
	// its first use.
	time.Sleep(60 * time.Millisecond) // past JWKSMinRefresh since the last fetch
	iss.AddKey(t, "rsa-2", "RSA")
	iss.Publish("rsa-2")
	_, err := in.send.SendEmail(as(t, iss.Sign(t, "rsa-2", iss.Claims(acct, "send"))), sendReq())
	require.NoError(t, err)

	// A Namirasoft account that never used the service gets its row on its
	// first valid token; with no provider yet, sending is a precondition failure.
	fresh := uuid.NewString()
	_, err = in.send.SendEmail(as(t, iss.Sign(t, jwttest.ECKey, iss.Claims(fresh, "send"))), sendReq())
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "%v", err)
	var exists bool
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1)`, fresh).Scan(&exists))
	require.True(t, exists)
}

func TestTokensRefusedWithoutProvisioning(t *testing.T) {
	t.Parallel()
	b := setupGate(t)
	iss := jwttest.New(t)
	cfg := iss.Config()
	cfg.AutoProvision = false
	in := b.start(t, apigate.Config{JWT: cfg})
	_, err := in.send.SendEmail(as(t, iss.Sign(t, jwttest.RSAKey, iss.Claims(uuid.NewString(), "send"))), sendReq())
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	_, err = in.send.SendEmail(as(t, iss.Sign(t, jwttest.RSAKey, iss.Claims(b.account.AccountID, "send"))), sendReq())
	require.NoError(t, err)
}

func exhaustedDetails(t *testing.T, err error) (*errdetails.RetryInfo, *errdetails.QuotaFailure) {
	t.Helper()
	st := status.Convert(err)
	require.Equal(t, codes.ResourceExhausted, st.Code(), "%v", err)
	var ri *errdetails.RetryInfo
	var qf *errdetails.QuotaFailure
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.RetryInfo:
			ri = d
		case *errdetails.QuotaFailure:
			qf = d
		}
	}
	require.NotNil(t, ri, "RetryInfo detail")
	require.NotNil(t, qf, "QuotaFailure detail")
	return ri, qf
}

func dbSecond(t *testing.T, b *gateBundle) int64 {
	var s int64
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT floor(extract(epoch FROM clock_timestamp()))::bigint`).Scan(&s))
	return s
}

// The request rate holds across two ingest instances on one database.
func TestRateLimitAcrossInstances(t *testing.T) {
	t.Parallel()
	b := setupGate(t)
	const rate = 5
	require.NoError(t, limits.Set(t.Context(), b.db.Pool, b.account.AccountID, &limits.Override{Value: rate}, nil))
	api := apigate.Config{Limits: limits.Config{CacheTTL: time.Hour}}
	replicas := []*instance{b.start(t, api), b.start(t, api)}

	// Bursts of concurrent calls spread over both instances, until each has
	// refused some; in every burst the two together allow at most the rate per
	// window of the database's clock.
	refusedBy := [2]atomic.Int64{}
	for burst := 0; burst < 20 && (refusedBy[0].Load() == 0 || refusedBy[1].Load() == 0); burst++ {
		var allowed atomic.Int64
		start := dbSecond(t, b)
		var wg sync.WaitGroup
		for i := range 30 {
			wg.Go(func() {
				// CancelScheduled of an unknown id: cheap, NOT_FOUND, and still a call.
				_, err := replicas[i%2].send.CancelScheduled(b.ctxOf(t), &emailsenderv1.CancelScheduledRequest{MessageId: uuid.NewString()})
				if status.Code(err) == codes.ResourceExhausted {
					ri, qf := exhaustedDetails(t, err)
					require.LessOrEqual(t, ri.GetRetryDelay().AsDuration(), time.Second)
					require.Equal(t, "account:"+b.account.AccountID, qf.GetViolations()[0].GetSubject())
					refusedBy[i%2].Add(1)
					return
				}
				require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
				allowed.Add(1)
			})
		}
		wg.Wait()
		windows := dbSecond(t, b) - start + 1
		require.LessOrEqual(t, allowed.Load(), rate*windows, "burst %d over %d window(s)", burst, windows)
		require.Positive(t, allowed.Load())
	}
	require.Positive(t, refusedBy[0].Load(), "instance 1 refused some")
	require.Positive(t, refusedBy[1].Load(), "instance 2 refused some")

	// Another account is not limited by this one's override.
	other, err := ingest.Bootstrap(t.Context(), b.db.Pool, nil, ingest.BootstrapParams{AccountName: "other", ProviderKind: "sandbox", Senders: []string{"example.com"}})
	require.NoError(t, err)
	for range 10 {
		_, err := replicas[0].send.CancelScheduled(as(t, other.APIKey), &emailsenderv1.CancelScheduledRequest{MessageId: uuid.NewString()})
		require.Equal(t, codes.NotFound, status.Code(err))
	}
}

func (b *gateBundle) ctxOf(t *testing.T) context.Context { return as(t, b.account.APIKey) }

// The daily quota counts accepted messages across instances; rejected ones
// are given back.
func TestDailyQuotaAcrossInstances(t *testing.T) {
	t.Parallel()
	b := setupGate(t)
	require.NoError(t, limits.Set(t.Context(), b.db.Pool, b.account.AccountID, nil, &limits.Override{Value: 4}))
	api := apigate.Config{Limits: limits.Config{CacheTTL: time.Hour}}
	one, two := b.start(t, api), b.start(t, api)
	ctx := b.ctxOf(t)

	bad := sendReq()
	bad.Message.To[0].Address = "not an address"
	for range 3 {
		_, err := one.send.SendEmail(ctx, bad)
		require.Equal(t, codes.InvalidArgument, status.Code(err), "rejected messages do not count")
	}
	_, err := one.send.SendEmail(ctx, sendReq())
	require.NoError(t, err)
	resp, err := two.send.SendBatch(ctx, &emailsenderv1.SendBatchRequest{Messages: []*emailsenderv1.SendEmailRequest{sendReq(), bad, sendReq()}})
	require.NoError(t, err)
	require.NotNil(t, resp.GetResults()[0].GetAccepted())
	require.Nil(t, resp.GetResults()[1].GetAccepted())
	// 3 accepted so far: one more fits, on either instance.
	_, err = two.send.SendEmail(ctx, sendReq())
	require.NoError(t, err)
	for _, in := range []*instance{one, two} {
		_, err = in.send.SendEmail(ctx, sendReq())
		ri, qf := exhaustedDetails(t, err)
		require.Positive(t, ri.GetRetryDelay().AsDuration())
		require.LessOrEqual(t, ri.GetRetryDelay().AsDuration(), 24*time.Hour)
		require.Contains(t, qf.GetViolations()[0].GetDescription(), "daily send quota")
		// A template's test send is a send: refused too.
		_, err = in.tpl.SendTestTemplate(ctx, &emailsenderv1.SendTestTemplateRequest{Template: "welcome", To: "me@example.com"})
		_, qf = exhaustedDetails(t, err)
		require.Contains(t, qf.GetViolations()[0].GetDescription(), "daily send quota")
	}
	var accepted int
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM messages WHERE account_id = $1`, b.account.AccountID).Scan(&accepted))
	require.Equal(t, 4, accepted)
}

// Usage records: successful and failed calls, client IP through a trusted or
// untrusted proxy, user agent; ListUsage filters and isolation.
func TestUsageRecords(t *testing.T) {
	t.Parallel()
	b := setupGate(t)
	iss := jwttest.New(t)
	trusting := b.start(t, apigate.Config{JWT: iss.Config(), Usage: usage.Config{TrustedProxies: []string{"127.0.0.1/32"}, FlushInterval: 20 * time.Millisecond}},
		grpc.WithUserAgent("acme-app/2.1"))
	distrusting := b.start(t, apigate.Config{Usage: usage.Config{FlushInterval: 20 * time.Millisecond}})
	readOnly, readKeyID := b.key(t, b.account.AccountID, auth.ScopeRead)
	acct := b.account.AccountID

	xff := func(ctx context.Context) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "x-forwarded-for", "198.51.100.7")
	}
	_, err := trusting.send.SendEmail(xff(b.ctxOf(t)), sendReq())
	require.NoError(t, err)
	_, err = distrusting.send.SendEmail(xff(b.ctxOf(t)), sendReq())
	require.NoError(t, err)
	_, err = trusting.send.SendEmail(as(t, readOnly), sendReq())
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	bad := sendReq()
	bad.Message.Subject = "a\r\nBcc: x@example.com"
	_, err = trusting.send.SendEmail(b.ctxOf(t), bad)
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	_, err = trusting.send.SendEmail(as(t, "es_nonsense"), sendReq())
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	_, err = trusting.send.CancelScheduled(as(t, iss.Sign(t, jwttest.ECKey, iss.Claims(acct, "send"))), &emailsenderv1.CancelScheduledRequest{MessageId: uuid.NewString()})
	require.Equal(t, codes.NotFound, status.Code(err))

	// Another account's calls.
	other, err := ingest.Bootstrap(t.Context(), b.db.Pool, nil, ingest.BootstrapParams{AccountName: "other", ProviderKind: "sandbox", Senders: []string{"example.com"}})
	require.NoError(t, err)
	_, err = trusting.send.SendEmail(as(t, other.APIKey), sendReq())
	require.NoError(t, err)

	list := func(ctx context.Context, req *emailsenderv1.ListUsageRequest) []*emailsenderv1.UsageRecord {
		t.Helper()
		resp, err := trusting.account.ListUsage(ctx, req)
		require.NoError(t, err)
		return resp.GetRecords()
	}
	var recs []*emailsenderv1.UsageRecord
	require.Eventually(t, func() bool {
		recs = list(b.ctxOf(t), &emailsenderv1.ListUsageRequest{Method: "SendEmail"})
		return len(recs) == 4
	}, 10*time.Second, 20*time.Millisecond, "4 SendEmail records of the account")
	byResult := map[string][]*emailsenderv1.UsageRecord{}
	for _, r := range recs {
		byResult[r.GetResult()] = append(byResult[r.GetResult()], r)
		require.Equal(t, emailsenderv1.SendService_SendEmail_FullMethodName, r.GetMethod())
		require.NotNil(t, r.GetTime())
	}
	require.Len(t, byResult["OK"], 2)
	require.Len(t, byResult["PERMISSION_DENIED"], 1)
	require.Len(t, byResult["INVALID_ARGUMENT"], 1)
	require.Equal(t, readKeyID, byResult["PERMISSION_DENIED"][0].GetKeyId())
	ips := []string{byResult["OK"][0].GetClientIp(), byResult["OK"][1].GetClientIp()}
	require.ElementsMatch(t, []string{"198.51.100.7", "127.0.0.1"}, ips, "trusted proxy: forwarded address; untrusted: peer")
	for _, r := range byResult["OK"] {
		if r.GetClientIp() == "198.51.100.7" {
			require.True(t, strings.HasPrefix(r.GetUserAgent(), "acme-app/2.1"), r.GetUserAgent())
		}
		require.Equal(t, b.account.APIKeyID, r.GetKeyId())
	}

	// The token call is recorded under its subject; filters by key and result.
	// Records are written asynchronously in batches: wait for this one too.
	var tokenRecs []*emailsenderv1.UsageRecord
	require.Eventually(t, func() bool {
		tokenRecs = list(b.ctxOf(t), &emailsenderv1.ListUsageRequest{KeyId: "notification-sender"})
		return len(tokenRecs) == 1
	}, 10*time.Second, 20*time.Millisecond, "the token call's record")
	require.Equal(t, "notification-sender", tokenRecs[0].GetTokenSubject())
	require.Equal(t, "NOT_FOUND", tokenRecs[0].GetResult())
	require.Len(t, list(b.ctxOf(t), &emailsenderv1.ListUsageRequest{Result: "PERMISSION_DENIED"}), 1)

	// Isolation: the other account sees only its own calls (its SendEmail, and
	// now its ListUsage).
	otherRecs := list(as(t, other.APIKey), &emailsenderv1.ListUsageRequest{})
	for _, r := range otherRecs {
		require.NotEqual(t, readKeyID, r.GetKeyId())
		require.NotEqual(t, b.account.APIKeyID, r.GetKeyId())
	}
	require.Len(t, list(as(t, other.APIKey), &emailsenderv1.ListUsageRequest{KeyId: b.account.APIKeyID}), 0)

	// The unauthenticated call is not a record of any account.
	var n int
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM usage_records WHERE account_id NOT IN ($1, $2)`, acct, other.AccountID).Scan(&n))
	require.Zero(t, n)
}
