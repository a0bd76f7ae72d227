package ingest_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/kinds"
	"github.com/namirasoft/email-sender/pkg/provider/smtp"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/secretbox"
	"github.com/namirasoft/email-sender/pkg/telemetry"
	"github.com/namirasoft/email-sender/pkg/testkit/gmailtest"
	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
	"github.com/namirasoft/email-sender/pkg/testkit/sestest"
	"github.com/namirasoft/email-sender/pkg/testkit/smtpsink"
	"github.com/namirasoft/email-sender/pkg/testkit/statustest"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest"
	"github.com/namirasoft/email-sender/services/ingest/account"
	"github.com/namirasoft/email-sender/services/ingest/outbox"
	"github.com/namirasoft/email-sender/services/ingest/send"
)

// accBundle is an ingest (or two) on one database and one JetStream, with a
// sandbox account whose bootstrap key has every scope.
type accBundle struct {
	db      *pgtest.DB
	nats    *natstest.Server
	js      jetstream.JetStream
	keys    string
	keyring *secretbox.Keyring
	acct    ingest.BootstrapResult
	// one client pair per ingest instance
	send []v1.SendServiceClient
	acc  []v1.AccountServiceClient
}

type accOptions struct {
	instances int
	// outbound is the operator's side of the senders (SES_ENDPOINT,
	// GMAIL_*); its AllowNets default to loopback, where the test servers
	// listen, unless publicOnly.
	outbound   kinds.Config
	publicOnly bool
	// cacheTTL is the API key cache of each instance (0: none).
	cacheTTL time.Duration
	// lookupTTL is the send path's cache of senders and provider
	// configurations (INGEST_LOOKUP_CACHE_TTL; 0: none).
	lookupTTL time.Duration
	now       func() time.Time
	// finalSweepAfter is INGEST_FINAL_SWEEP_AFTER (0: its default).
	finalSweepAfter time.Duration
}

func setupAccounts(t *testing.T, o accOptions) *accBundle {
	t.Helper()
	if o.instances == 0 {
		o.instances = 1
	}
	if o.outbound.AllowNets == nil && !o.publicOnly {
		o.outbound.AllowNets = []string{"127.0.0.0/8", "::1/128"}
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &accBundle{db: pgtest.New(t), nats: natstest.Start(t)}
	nc, err := nats.Connect(b.nats.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	b.js, err = jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, queue.EnsureStreams(ctx, b.js, queue.StreamConfig{}))
	mk, err := secretbox.NewMasterKey()
	require.NoError(t, err)
	b.keys = "k1:" + mk
	b.keyring, err = secretbox.ParseKeyring(b.keys, "")
	require.NoError(t, err)
	b.acct, err = ingest.Bootstrap(ctx, b.db.Pool, b.keyring, ingest.BootstrapParams{AccountName: "acme", ProviderKind: "sandbox", Senders: []string{"example.com"}})
	require.NoError(t, err)

	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	done := make(chan error, o.instances+1)
	for range o.instances {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		// Each instance has a connection of its own, as replicas do.
		inc, err := nats.Connect(b.nats.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
		require.NoError(t, err)
		ijs, err := jetstream.New(inc)
		require.NoError(t, err)
		lookupTTL := o.lookupTTL
		if lookupTTL == 0 {
			lookupTTL = -1
		}
		svc, err := ingest.New(ingest.Config{
			Relay: outbox.RelayConfig{Interval: 100 * time.Millisecond, Grace: 500 * time.Millisecond},
			Send:  send.Config{PublishTimeout: time.Second, LookupCacheTTL: lookupTTL}, MasterKeys: b.keys, HTTPAddr: "off", RetentionInterval: 100 * time.Millisecond,
			Outbound: o.outbound, FinalSweepAfter: o.finalSweepAfter,
		}, ingest.Deps{
			Pool: b.db.Pool, JetStream: ijs, Telemetry: telemetry.Nop(), Logger: log, Listener: lis,
			Auth: auth.NewKeyStore(b.db.Pool, o.cacheTTL), Now: o.now,
		})
		require.NoError(t, err)
		go func() { done <- svc.Run(ctx); inc.Close() }()
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		b.send = append(b.send, v1.NewSendServiceClient(conn))
		b.acc = append(b.acc, v1.NewAccountServiceClient(conn))
	}
	running := o.instances
	t.Cleanup(func() {
		cancel()
		for range running {
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, context.Canceled) {
					t.Error(err)
				}
			case <-time.After(15 * time.Second):
				t.Error("service did not stop")
			}
		}
		nc.Close()
	})
	return b
}

func (b *accBundle) admin(t testing.TB) context.Context { return as(t, b.acct.APIKey) }

// noSecret fails when any of secrets appears in the text form of m.
func noSecret(t *testing.T, m proto.Message, secrets ...string) {
	t.Helper()
	text := prototext.Format(m)
	for _, s := range secrets {
		require.NotContains(t, text, s, "a secret is in the answer")
	}
}

func requireCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	require.Equal(t, code, status.Code(err), "status: %v", err)
}

func TestAccountScopes(t *testing.T) {
	t.Parallel()
	m := account.Scopes()
	for _, md := range v1.AccountService_ServiceDesc.Methods {
		full := "/" + v1.AccountService_ServiceDesc.ServiceName + "/" + md.MethodName
		require.Equal(t, auth.ScopeAdmin, m[full], full)
	}
}

func TestAPIKeys(t *testing.T) {
	t.Parallel()
	b := setupAccounts(t, accOptions{})
	ctx := b.admin(t)
	acc := b.acc[0]

	created, err := acc.CreateApiKey(ctx, &v1.CreateApiKeyRequest{Name: "ci"})
	require.NoError(t, err)
	secret := created.GetSecret()
	require.True(t, strings.HasPrefix(secret, created.GetKey().GetPrefix()), "the prefix identifies the key")
	require.Equal(t, []string{"send", "read"}, created.GetKey().GetScopes())
	require.Nil(t, created.GetKey().GetRevokedAt())

	list, err := acc.ListApiKeys(ctx, &v1.ListApiKeysRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetKeys(), 2)
	noSecret(t, list, secret, b.acct.APIKey)
	var hash []byte
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT hash FROM api_keys WHERE id = $1`, created.GetKey().GetId()).Scan(&hash))
	require.Equal(t, auth.Hash(secret), hash, "only the hash is stored")

	// A send+read key sends but cannot administer.
	_, err = b.send[0].SendEmail(as(t, secret), &v1.SendEmailRequest{Message: validMessage()})
	require.NoError(t, err)
	_, err = acc.ListApiKeys(as(t, secret), &v1.ListApiKeysRequest{})
	requireCode(t, err, codes.PermissionDenied)
	// ListUsage shows other keys' client addresses and agents: admin only.
	_, err = acc.ListUsage(as(t, secret), &v1.ListUsageRequest{})
	requireCode(t, err, codes.PermissionDenied)

	readOnly, err := acc.CreateApiKey(ctx, &v1.CreateApiKeyRequest{Scopes: []string{"read", "read"}, ExpiresAt: timestamppb.New(time.Now().Add(time.Hour))})
	require.NoError(t, err)
	require.Equal(t, []string{"read"}, readOnly.GetKey().GetScopes())
	require.NotNil(t, readOnly.GetKey().GetExpiresAt())
	_, err = b.send[0].SendEmail(as(t, readOnly.GetSecret()), &v1.SendEmailRequest{Message: validMessage()})
	requireCode(t, err, codes.PermissionDenied)

	_, err = acc.CreateApiKey(ctx, &v1.CreateApiKeyRequest{Scopes: []string{"send", "root"}})
	statustest.RequireField(t, err, codes.InvalidArgument, "scopes[1]")
	_, err = acc.CreateApiKey(ctx, &v1.CreateApiKeyRequest{ExpiresAt: timestamppb.New(time.Now().Add(-time.Minute))})
	statustest.RequireField(t, err, codes.InvalidArgument, "expires_at")
	_, err = acc.CreateApiKey(ctx, &v1.CreateApiKeyRequest{Name: "a\r\nb"})
	statustest.RequireField(t, err, codes.InvalidArgument, "name")

	short, err := acc.CreateApiKey(ctx, &v1.CreateApiKeyRequest{ExpiresAt: timestamppb.New(time.Now().Add(time.Second))})
	require.NoError(t, err)
	time.Sleep(1100 * time.Millisecond)
	_, err = b.send[0].SendEmail(as(t, short.GetSecret()), &v1.SendEmailRequest{Message: validMessage()})
	requireCode(t, err, codes.Unauthenticated)

	revoked, err := acc.RevokeApiKey(ctx, &v1.RevokeApiKeyRequest{Id: created.GetKey().GetId()})
	require.NoError(t, err)
	require.NotNil(t, revoked.GetKey().GetRevokedAt())
	_, err = b.send[0].SendEmail(as(t, secret), &v1.SendEmailRequest{Message: validMessage()})
	requireCode(t, err, codes.Unauthenticated)

	_, err = acc.RevokeApiKey(ctx, &v1.RevokeApiKeyRequest{Id: "not-a-uuid"})
	statustest.RequireField(t, err, codes.NotFound, "id")
	// Another account's key is not found either.
	other, err := ingest.Bootstrap(t.Context(), b.db.Pool, nil, ingest.BootstrapParams{AccountName: "other", ProviderKind: "sandbox"})
	require.NoError(t, err)
	_, err = acc.RevokeApiKey(ctx, &v1.RevokeApiKeyRequest{Id: other.APIKeyID})
	statustest.RequireField(t, err, codes.NotFound, "id")
	_, err = acc.ListApiKeys(as(t, other.APIKey), &v1.ListApiKeysRequest{})
	require.NoError(t, err)
}

// TestRevocationAcrossReplicas revokes a key through one ingest and uses it
// at once through another whose cache (1 hour) holds it.
func TestRevocationAcrossReplicas(t *testing.T) {
	t.Parallel()
	b := setupAccounts(t, accOptions{instances: 2, cacheTTL: time.Hour})
	ctx := b.admin(t)
	for i := range 5 {
		// Wait until both caches are in use: a fresh key is looked up on both
		// replicas, then its scopes are narrowed behind their back; when both
		// still answer, both answered from their caches (for an hour). Each
		// probe uses a new key, so an entry cached while a replica was still
		// starting its watch cannot spoil the next probe.
		var k *v1.CreateApiKeyResponse
		require.Eventually(t, func() bool {
			var err error
			k, err = b.acc[0].CreateApiKey(ctx, &v1.CreateApiKeyRequest{Scopes: []string{"send", "read", "admin"}})
			require.NoError(t, err)
			_, e0 := b.acc[0].ListApiKeys(as(t, k.GetSecret()), &v1.ListApiKeysRequest{})
			_, e1 := b.acc[1].ListApiKeys(as(t, k.GetSecret()), &v1.ListApiKeysRequest{})
			if e0 != nil || e1 != nil {
				return false
			}
			_, err = b.db.Pool.Exec(t.Context(), `UPDATE api_keys SET scopes = '{read}' WHERE id = $1`, k.GetKey().GetId())
			require.NoError(t, err)
			_, e0 = b.acc[0].ListApiKeys(as(t, k.GetSecret()), &v1.ListApiKeysRequest{})
			_, e1 = b.acc[1].ListApiKeys(as(t, k.GetSecret()), &v1.ListApiKeysRequest{})
			return e0 == nil && e1 == nil
		}, 30*time.Second, 10*time.Millisecond, "round %d: both replicas answer from their caches", i)

		revoker, target := b.acc[i%2], b.acc[(i+1)%2]
		_, err := revoker.RevokeApiKey(ctx, &v1.RevokeApiKeyRequest{Id: k.GetKey().GetId()})
		require.NoError(t, err)
		_, err = target.ListApiKeys(as(t, k.GetSecret()), &v1.ListApiKeysRequest{})
		requireCode(t, err, codes.Unauthenticated)
		_, err = revoker.ListApiKeys(as(t, k.GetSecret()), &v1.ListApiKeysRequest{})
		requireCode(t, err, codes.Unauthenticated)
	}
}

func TestProviders(t *testing.T) {
	t.Parallel()
	b := setupAccounts(t, accOptions{})
	ctx, acc := b.admin(t), b.acc[0]
	const password = "s3cret-p4ssw0rd"

	put, err := acc.PutProvider(ctx, &v1.PutProviderRequest{Name: "relay", Settings: &v1.PutProviderRequest_Smtp{Smtp: &v1.SmtpSettings{
		Host: "smtp.example.com", TlsMode: "implicit", Username: "acme", Password: password,
	}}})
	require.NoError(t, err)
	noSecret(t, put, password)
	p := put.GetProvider()
	require.Equal(t, "smtp", p.GetKind())
	require.Equal(t, []string{"password"}, p.GetSecretsSet())
	require.EqualValues(t, 465, p.GetSmtp().GetPort(), "implicit TLS defaults to 465")
	require.EqualValues(t, 4, p.GetSmtp().GetPoolSize())
	require.Empty(t, p.GetSmtp().GetPassword())
	require.False(t, p.GetIsDefault(), "the bootstrap sandbox stays the default")
	require.True(t, p.GetHealthy())

	// At rest: sealed under MASTER_KEY_ID, no plaintext, and what the worker reads.
	var settings, secret []byte
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT settings, secret FROM provider_configs WHERE id = $1`, p.GetId()).Scan(&settings, &secret))
	require.NotContains(t, string(secret), password)
	require.NotContains(t, string(settings), password)
	kid, err := secretbox.KeyID(secret)
	require.NoError(t, err)
	require.Equal(t, "k1", kid)
	plain, err := b.keyring.Open(secret, []byte(p.GetId()))
	require.NoError(t, err)
	require.JSONEq(t, `{"password":"`+password+`"}`, string(plain))
	st, err := smtp.ParseSettings(provider.Config{ID: p.GetId(), Kind: "smtp", Settings: settings, Secret: plain})
	require.NoError(t, err)
	require.Equal(t, smtp.Settings{Host: "smtp.example.com", Port: 465, TLS: "implicit", Username: "acme", PoolSize: 4, TimeoutSeconds: 30}, st, "no HELO stored: the worker says EHLO with its own FQDN or address literal")

	// Replace without a password keeps it; make it the default.
	put2, err := acc.PutProvider(ctx, &v1.PutProviderRequest{Id: p.GetId(), MakeDefault: true, Settings: &v1.PutProviderRequest_Smtp{Smtp: &v1.SmtpSettings{
		Host: "smtp2.example.com", Port: 2525, TlsMode: "starttls", Username: "acme",
	}}})
	require.NoError(t, err)
	require.True(t, put2.GetProvider().GetIsDefault())
	require.Equal(t, "relay", put2.GetProvider().GetName())
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT secret FROM provider_configs WHERE id = $1`, p.GetId()).Scan(&secret))
	plain, err = b.keyring.Open(secret, []byte(p.GetId()))
	require.NoError(t, err)
	require.Contains(t, string(plain), password)

	const awsSecret, gSecret, gToken = "wJalrXUtnFEMI/K7MDENG", "g-client-secret", "1//refresh-token"
	ses, err := acc.PutProvider(ctx, &v1.PutProviderRequest{Name: "ses", FallbackProviderId: p.GetId(), Settings: &v1.PutProviderRequest_Ses{Ses: &v1.SesSettings{
		Region: "eu-west-1", AccessKeyId: "AKIAEXAMPLE", SecretAccessKey: awsSecret, ConfigurationSet: "cs",
	}}})
	require.NoError(t, err)
	require.Equal(t, p.GetId(), ses.GetProvider().GetFallbackProviderId())
	require.Equal(t, "AKIAEXAMPLE", ses.GetProvider().GetSes().GetAccessKeyId())
	gm, err := acc.PutProvider(ctx, &v1.PutProviderRequest{Name: "gmail", Settings: &v1.PutProviderRequest_Gmail{Gmail: &v1.GmailSettings{
		ClientId: "cid", ClientSecret: gSecret, RefreshToken: gToken,
	}}})
	require.NoError(t, err)
	require.Equal(t, "me", gm.GetProvider().GetGmail().GetSenderUser())
	require.ElementsMatch(t, []string{"client_secret", "refresh_token"}, gm.GetProvider().GetSecretsSet())

	list, err := acc.ListProviders(ctx, &v1.ListProvidersRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetProviders(), 4)
	noSecret(t, list, password, awsSecret, gSecret, gToken)

	for _, tc := range []struct {
		name  string
		req   *v1.PutProviderRequest
		code  codes.Code
		field string
	}{
		{"no settings", &v1.PutProviderRequest{Name: "x"}, codes.InvalidArgument, "settings"},
		{"smtp host", &v1.PutProviderRequest{Settings: &v1.PutProviderRequest_Smtp{Smtp: &v1.SmtpSettings{}}}, codes.InvalidArgument, "smtp.host"},
		{"smtp tls", &v1.PutProviderRequest{Settings: &v1.PutProviderRequest_Smtp{Smtp: &v1.SmtpSettings{Host: "h", TlsMode: "ssl"}}}, codes.InvalidArgument, "smtp.tls_mode"},
		{"smtp port", &v1.PutProviderRequest{Settings: &v1.PutProviderRequest_Smtp{Smtp: &v1.SmtpSettings{Host: "h", Port: 70000}}}, codes.InvalidArgument, "smtp.port"},
		{"smtp password", &v1.PutProviderRequest{Settings: &v1.PutProviderRequest_Smtp{Smtp: &v1.SmtpSettings{Host: "h", Username: "u"}}}, codes.InvalidArgument, "smtp.password"},
		{"smtp pool", &v1.PutProviderRequest{Settings: &v1.PutProviderRequest_Smtp{Smtp: &v1.SmtpSettings{Host: "h", PoolSize: 1000}}}, codes.InvalidArgument, "smtp.pool_size"},
		{"smtp host injection", &v1.PutProviderRequest{Settings: &v1.PutProviderRequest_Smtp{Smtp: &v1.SmtpSettings{Host: "h\r\nRCPT"}}}, codes.InvalidArgument, "smtp.host"},
		{"ses region", &v1.PutProviderRequest{Settings: &v1.PutProviderRequest_Ses{Ses: &v1.SesSettings{AccessKeyId: "a", SecretAccessKey: "s"}}}, codes.InvalidArgument, "ses.region"},
		{"ses secret", &v1.PutProviderRequest{Settings: &v1.PutProviderRequest_Ses{Ses: &v1.SesSettings{Region: "us-east-1", AccessKeyId: "a"}}}, codes.InvalidArgument, "ses.secret_access_key"},
		{"ses endpoint", &v1.PutProviderRequest{Settings: &v1.PutProviderRequest_Ses{Ses: &v1.SesSettings{Region: "us-east-1", AccessKeyId: "a", SecretAccessKey: "s", Endpoint: "ftp://x"}}}, codes.InvalidArgument, "ses.endpoint"},
		{"ses aws account id", &v1.PutProviderRequest{Settings: &v1.PutProviderRequest_Ses{Ses: &v1.SesSettings{Region: "us-east-1", AccessKeyId: "a", SecretAccessKey: "s", AwsAccountId: "1234"}}}, codes.InvalidArgument, "ses.aws_account_id"},
		{"ses feedback topic", &v1.PutProviderRequest{Settings: &v1.PutProviderRequest_Ses{Ses: &v1.SesSettings{Region: "us-east-1", AccessKeyId: "a", SecretAccessKey: "s", AwsAccountId: "123456789012", FeedbackTopicArns: []string{"arn:aws:sns:*:123456789012:*"}}}}, codes.InvalidArgument, "ses.feedback_topic_arns"},
		{"ses feedback topic without account", &v1.PutProviderRequest{Settings: &v1.PutProviderRequest_Ses{Ses: &v1.SesSettings{Region: "us-east-1", AccessKeyId: "a", SecretAccessKey: "s", FeedbackTopicArns: []string{"arn:aws:sns:us-east-1:123456789012:t"}}}}, codes.InvalidArgument, "ses.aws_account_id"},
		{"ses endpoint is the operator's", &v1.PutProviderRequest{Settings: &v1.PutProviderRequest_Ses{Ses: &v1.SesSettings{Region: "us-east-1", AccessKeyId: "a", SecretAccessKey: "s", Endpoint: "https://email.us-east-1.amazonaws.com"}}}, codes.InvalidArgument, "ses.endpoint"},
		{"gmail token_url is the operator's", &v1.PutProviderRequest{Settings: &v1.PutProviderRequest_Gmail{Gmail: &v1.GmailSettings{ClientId: "c", ClientSecret: "s", RefreshToken: "r", TokenUrl: "https://oauth2.googleapis.com/token"}}}, codes.InvalidArgument, "gmail.token_url"},
		{"gmail api_endpoint is the operator's", &v1.PutProviderRequest{Settings: &v1.PutProviderRequest_Gmail{Gmail: &v1.GmailSettings{ClientId: "c", ClientSecret: "s", RefreshToken: "r", ApiEndpoint: "http://169.254.169.254/"}}}, codes.InvalidArgument, "gmail.api_endpoint"},
		{"gmail token", &v1.PutProviderRequest{Settings: &v1.PutProviderRequest_Gmail{Gmail: &v1.GmailSettings{ClientId: "c", ClientSecret: "s"}}}, codes.InvalidArgument, "gmail.refresh_token"},
		{"name taken", &v1.PutProviderRequest{Name: "relay", Settings: &v1.PutProviderRequest_Sandbox{Sandbox: &v1.SandboxSettings{}}}, codes.AlreadyExists, "name"},
		{"unknown id", &v1.PutProviderRequest{Id: "0190d1d6-0000-7000-8000-000000000000", Settings: &v1.PutProviderRequest_Sandbox{Sandbox: &v1.SandboxSettings{}}}, codes.NotFound, "id"},
		{"fallback", &v1.PutProviderRequest{Name: "fb", FallbackProviderId: "0190d1d6-0000-7000-8000-000000000000", Settings: &v1.PutProviderRequest_Sandbox{Sandbox: &v1.SandboxSettings{}}}, codes.InvalidArgument, "fallback_provider_id"},
	} {
		_, err := acc.PutProvider(ctx, tc.req)
		statustest.RequireField(t, err, tc.code, tc.field)
	}

	// Delete: the default is cleared, fallbacks to it too.
	_, err = acc.DeleteProvider(ctx, &v1.DeleteProviderRequest{Id: p.GetId()})
	require.NoError(t, err)
	_, err = acc.DeleteProvider(ctx, &v1.DeleteProviderRequest{Id: p.GetId()})
	statustest.RequireField(t, err, codes.NotFound, "id")
	list, err = acc.ListProviders(ctx, &v1.ListProvidersRequest{})
	require.NoError(t, err)
	for _, x := range list.GetProviders() {
		require.False(t, x.GetIsDefault())
		require.Empty(t, x.GetFallbackProviderId())
	}
	_, err = b.send[0].SendEmail(ctx, &v1.SendEmailRequest{Message: validMessage()})
	statustest.RequireField(t, err, codes.FailedPrecondition, "provider_id")
}

func TestRotateMasterKey(t *testing.T) {
	t.Parallel()
	b := setupAccounts(t, accOptions{})
	ctx := b.admin(t)
	ids := map[string]string{}
	for _, name := range []string{"a", "b", "c"} {
		r, err := b.acc[0].PutProvider(ctx, &v1.PutProviderRequest{Name: name, Settings: &v1.PutProviderRequest_Smtp{Smtp: &v1.SmtpSettings{
			Host: "h.example", Username: "u", Password: "pw-" + name,
		}}})
		require.NoError(t, err)
		ids[r.GetProvider().GetId()] = "pw-" + name
	}
	// A webhook endpoint (the report's) mid secret rotation: two sealed secrets.
	hookID := uuid.NewString()
	hookSecret, err := b.keyring.Seal([]byte("whsec_current"), []byte(hookID))
	require.NoError(t, err)
	hookPrev, err := b.keyring.Seal([]byte("whsec_previous"), []byte(hookID))
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(t.Context(), `INSERT INTO webhook_endpoints (id, account_id, url, secret, previous_secret, created_at, updated_at)
		VALUES ($1, $2, 'https://hooks.example/in', $3, $4, now(), now())`, hookID, b.acct.AccountID, hookSecret, hookPrev)
	require.NoError(t, err)

	k2, err := secretbox.NewMasterKey()
	require.NoError(t, err)
	rotated, err := secretbox.ParseKeyring(b.keys+",k2:"+k2, "k2")
	require.NoError(t, err)
	res, err := ingest.RotateMasterKey(t.Context(), b.db.Pool, rotated, 2)
	require.NoError(t, err)
	require.Equal(t, ingest.RotateResult{Rewrapped: 5}, res)
	res, err = ingest.RotateMasterKey(t.Context(), b.db.Pool, rotated, 2)
	require.NoError(t, err)
	require.Equal(t, ingest.RotateResult{Current: 5}, res, "a second run has nothing to do")

	onlyNew, err := secretbox.ParseKeyring("k2:"+k2, "")
	require.NoError(t, err)
	for id, pw := range ids {
		var secret []byte
		require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT secret FROM provider_configs WHERE id = $1`, id).Scan(&secret))
		kid, err := secretbox.KeyID(secret)
		require.NoError(t, err)
		require.Equal(t, "k2", kid)
		plain, err := onlyNew.Open(secret, []byte(id))
		require.NoError(t, err, "the worker opens it with the new key alone")
		require.Contains(t, string(plain), pw)
	}

	var cur, prev []byte
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT secret, previous_secret FROM webhook_endpoints WHERE id = $1`, hookID).Scan(&cur, &prev))
	for blob, want := range map[*[]byte]string{&cur: "whsec_current", &prev: "whsec_previous"} {
		plain, err := onlyNew.Open(*blob, []byte(hookID))
		require.NoError(t, err, "the report opens webhook secrets with the new key alone")
		require.Equal(t, want, string(plain))
	}

	// A key missing from MASTER_KEYS is named.
	k3, err := secretbox.NewMasterKey()
	require.NoError(t, err)
	missing, err := secretbox.ParseKeyring("k3:"+k3, "")
	require.NoError(t, err)
	_, err = ingest.RotateMasterKey(t.Context(), b.db.Pool, missing, 10)
	require.ErrorContains(t, err, `"k2"`)
}

func TestVerifyProvider(t *testing.T) {
	t.Parallel()
	sesFake := sestest.NewFake(t)
	b := setupAccounts(t, accOptions{outbound: kinds.Config{SESEndpoint: sesFake.URL}})
	ctx, acc := b.admin(t), b.acc[0]
	sink := smtpsink.StartTest(t, smtpsink.Options{Username: "acme", Password: "right"})

	put := func(name, password string, port int) string {
		r, err := acc.PutProvider(ctx, &v1.PutProviderRequest{Name: name, Settings: &v1.PutProviderRequest_Smtp{Smtp: &v1.SmtpSettings{
			Host: sink.Host(), Port: int32(port), TlsMode: "none", Username: "acme", Password: password,
		}}})
		require.NoError(t, err)
		return r.GetProvider().GetId()
	}
	good := put("good", "right", sink.Port())
	res, err := acc.VerifyProvider(ctx, &v1.VerifyProviderRequest{Id: good})
	require.NoError(t, err)
	require.True(t, res.GetResult().GetOk(), res.GetResult().GetDetail())
	require.Contains(t, res.GetResult().GetDetail(), "authenticated as acme")
	require.NotNil(t, res.GetResult().GetCheckedAt())
	require.Zero(t, sink.Count(), "verification sends nothing")

	bad := put("bad", "wrong", sink.Port())
	res, err = acc.VerifyProvider(ctx, &v1.VerifyProviderRequest{Id: bad})
	require.NoError(t, err)
	require.False(t, res.GetResult().GetOk())
	require.NotContains(t, res.GetResult().GetDetail(), "wrong")

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := closed.Addr().(*net.TCPAddr).Port
	require.NoError(t, closed.Close())
	down := put("down", "right", port)
	res, err = acc.VerifyProvider(ctx, &v1.VerifyProviderRequest{Id: down})
	require.NoError(t, err)
	require.False(t, res.GetResult().GetOk())

	res, err = acc.VerifyProvider(ctx, &v1.VerifyProviderRequest{Id: b.acct.ProviderID})
	require.NoError(t, err)
	require.True(t, res.GetResult().GetOk(), "sandbox")

	// SES: GetAccount against a local fake (TestVerifyProviderSES has the rest).
	ses, err := acc.PutProvider(ctx, &v1.PutProviderRequest{Name: "ses", Settings: &v1.PutProviderRequest_Ses{Ses: &v1.SesSettings{
		Region: "eu-west-1", AccessKeyId: "AKIA", SecretAccessKey: "x",
	}}})
	require.NoError(t, err)
	res, err = acc.VerifyProvider(ctx, &v1.VerifyProviderRequest{Id: ses.GetProvider().GetId()})
	require.NoError(t, err)
	require.True(t, res.GetResult().GetOk(), res.GetResult().GetDetail())
	require.Equal(t, 14.0, res.GetResult().GetSes().GetMaxSendRate())

	_, err = acc.VerifyProvider(ctx, &v1.VerifyProviderRequest{Id: "nope"})
	statustest.RequireField(t, err, codes.NotFound, "id")

	// The results are stored and listed; refused credentials mark it unhealthy.
	list, err := acc.ListProviders(ctx, &v1.ListProvidersRequest{})
	require.NoError(t, err)
	byID := map[string]*v1.Provider{}
	for _, p := range list.GetProviders() {
		byID[p.GetId()] = p
	}
	require.True(t, byID[good].GetLastVerify().GetOk())
	require.NotNil(t, byID[good].GetLastVerify().GetCheckedAt())
	require.True(t, byID[good].GetHealthy())
	require.False(t, byID[bad].GetLastVerify().GetOk())
	require.False(t, byID[bad].GetHealthy())
	require.NotEmpty(t, byID[bad].GetHealthNote())
	require.True(t, byID[down].GetHealthy(), "a network failure says nothing about the credentials")
}

// TestVerifyProviderGmail: VerifyProvider of a gmail configuration redeems the
// refresh token and reads users.getProfile from a fake Gmail; the result and
// its time are stored and listed, and a revoked refresh token marks the
// configuration unhealthy.
func TestVerifyProviderGmail(t *testing.T) {
	t.Parallel()
	fake := gmailtest.StartTest(t)
	b := setupAccounts(t, accOptions{outbound: kinds.Config{GmailTokenURL: fake.TokenURL(), GmailAPIEndpoint: fake.APIEndpoint()}})
	ctx, acc := b.admin(t), b.acc[0]
	put := func(name, refreshToken string) string {
		r, err := acc.PutProvider(ctx, &v1.PutProviderRequest{Name: name, Settings: &v1.PutProviderRequest_Gmail{Gmail: &v1.GmailSettings{
			ClientId: gmailtest.DefaultClientID, ClientSecret: gmailtest.DefaultClientSecret, RefreshToken: refreshToken,
		}}})
		require.NoError(t, err)
		return r.GetProvider().GetId()
	}
	good := put("gmail-good", gmailtest.DefaultRefreshToken)
	res, err := acc.VerifyProvider(ctx, &v1.VerifyProviderRequest{Id: good})
	require.NoError(t, err)
	require.True(t, res.GetResult().GetOk(), res.GetResult().GetDetail())
	require.Contains(t, res.GetResult().GetDetail(), "authorized for "+gmailtest.DefaultEmail+" (0 messages, 0 threads) by users.getProfile")
	require.NotNil(t, res.GetResult().GetCheckedAt())
	require.Empty(t, fake.Messages(), "verification sends nothing")

	revoked := put("gmail-revoked", "1//revoked-refresh-token")
	res, err = acc.VerifyProvider(ctx, &v1.VerifyProviderRequest{Id: revoked})
	require.NoError(t, err)
	require.False(t, res.GetResult().GetOk())
	require.Contains(t, res.GetResult().GetDetail(), "invalid_grant")
	require.NotContains(t, res.GetResult().GetDetail(), "revoked-refresh-token")

	list, err := acc.ListProviders(ctx, &v1.ListProvidersRequest{})
	require.NoError(t, err)
	byID := map[string]*v1.Provider{}
	for _, p := range list.GetProviders() {
		byID[p.GetId()] = p
	}
	require.True(t, byID[good].GetLastVerify().GetOk())
	require.NotNil(t, byID[good].GetLastVerify().GetCheckedAt())
	require.True(t, byID[good].GetHealthy())
	require.False(t, byID[revoked].GetLastVerify().GetOk())
	require.False(t, byID[revoked].GetHealthy(), "a refused refresh token marks the configuration unhealthy")
}

var codeRE = regexp.MustCompile(`(?m)^\s+(\d{8})\s*$`)

func TestSuppressions(t *testing.T) {
	t.Parallel()
	b := setupAccounts(t, accOptions{})
	ctx, acc := b.admin(t), b.acc[0]
	for _, a := range []string{"C@example.org", "a@example.org", "b@example.org"} {
		r, err := acc.AddSuppression(ctx, &v1.AddSuppressionRequest{Address: a, Reason: "bounce"})
		require.NoError(t, err)
		require.Equal(t, strings.ToLower(a), r.GetSuppression().GetAddress())
	}
	_, err := acc.AddSuppression(ctx, &v1.AddSuppressionRequest{Address: "nope"})
	statustest.RequireField(t, err, codes.InvalidArgument, "address")
	_, err = acc.AddSuppression(ctx, &v1.AddSuppressionRequest{Address: "x@example.org", Reason: "spite"})
	statustest.RequireField(t, err, codes.InvalidArgument, "reason")

	page, err := acc.ListSuppressions(ctx, &v1.ListSuppressionsRequest{PageSize: 2})
	require.NoError(t, err)
	require.Len(t, page.GetSuppressions(), 2)
	require.Equal(t, "a@example.org", page.GetSuppressions()[0].GetAddress())
	require.Equal(t, "bounce", page.GetSuppressions()[0].GetReason())
	require.NotEmpty(t, page.GetNextPageToken())
	page, err = acc.ListSuppressions(ctx, &v1.ListSuppressionsRequest{PageSize: 2, PageToken: page.GetNextPageToken()})
	require.NoError(t, err)
	require.Len(t, page.GetSuppressions(), 1)
	require.Equal(t, "c@example.org", page.GetSuppressions()[0].GetAddress())
	require.Empty(t, page.GetNextPageToken())
	_, err = acc.ListSuppressions(ctx, &v1.ListSuppressionsRequest{PageToken: "!!"})
	statustest.RequireField(t, err, codes.InvalidArgument, "page_token")

	// Search: a case-insensitive substring, paged like the list; % and _ are
	// text, not patterns.
	for _, a := range []string{"jane_doe@shop.example", "janedoe@shop.example", "john@shop.example"} {
		_, err := acc.AddSuppression(ctx, &v1.AddSuppressionRequest{Address: a, Reason: "manual"})
		require.NoError(t, err)
	}
	search := func(text string, size int32, token string) *v1.ListSuppressionsResponse {
		t.Helper()
		r, err := acc.ListSuppressions(ctx, &v1.ListSuppressionsRequest{AddressContains: text, PageSize: size, PageToken: token})
		require.NoError(t, err)
		return r
	}
	addresses := func(r *v1.ListSuppressionsResponse) (out []string) {
		for _, x := range r.GetSuppressions() {
			out = append(out, x.GetAddress())
		}
		return out
	}
	require.Equal(t, []string{"jane_doe@shop.example", "janedoe@shop.example"}, addresses(search("JANE", 0, "")))
	require.Equal(t, []string{"jane_doe@shop.example"}, addresses(search("e_d", 0, "")), "_ is a character, not a wildcard")
	require.Empty(t, addresses(search("%", 0, "")))
	first := search("shop.example", 2, "")
	require.Equal(t, []string{"jane_doe@shop.example", "janedoe@shop.example"}, addresses(first))
	require.Equal(t, []string{"john@shop.example"}, addresses(search("shop.example", 2, first.GetNextPageToken())))
	_, err = acc.ListSuppressions(ctx, &v1.ListSuppressionsRequest{AddressContains: strings.Repeat("x", 321)})
	statustest.RequireField(t, err, codes.InvalidArgument, "address_contains")

	// Accepting a message does not look the suppression list up: the worker
	// does, at delivery (services/worker/delivery TestJobAdmission, e2e
	// TestSuppressedRecipientGetsNothing). The job names no suppressed
	// recipient, and the message is accepted as usual.
	resp, err := b.send[0].SendEmail(ctx, &v1.SendEmailRequest{Message: &v1.EmailMessage{
		From: &v1.Address{Address: "sender@example.com"}, To: []*v1.Address{{Address: "A@example.org"}, {Address: "d@example.org"}},
		Subject: "s", TextBody: "t",
	}})
	require.NoError(t, err)
	var content []byte
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT content FROM message_contents WHERE message_id = $1`, resp.GetMessageId()).Scan(&content))
	var job queuev1.SendJob
	require.NoError(t, proto.Unmarshal(content, &job))
	require.Empty(t, job.GetSuppressed())

	_, err = acc.RemoveSuppression(ctx, &v1.RemoveSuppressionRequest{Address: "A@example.org"})
	require.NoError(t, err)
	_, err = acc.RemoveSuppression(ctx, &v1.RemoveSuppressionRequest{Address: "a@example.org"})
	statustest.RequireField(t, err, codes.NotFound, "address")
}

func newID(t *testing.T) string {
	t.Helper()
	id, err := uuid.NewV7()
	require.NoError(t, err)
	return id.String()
}
