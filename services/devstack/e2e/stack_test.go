package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/provider/kinds"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/secretbox"
	"github.com/namirasoft/email-sender/pkg/telemetry"
	"github.com/namirasoft/email-sender/pkg/testkit/dnstest"
	"github.com/namirasoft/email-sender/pkg/testkit/jwttest"
	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
	"github.com/namirasoft/email-sender/pkg/testkit/smtpsink"
	operatorv1 "github.com/namirasoft/email-sender/proto/emailsender/operator/v1"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest"
	"github.com/namirasoft/email-sender/services/ingest/outbox"
	"github.com/namirasoft/email-sender/services/report"
	"github.com/namirasoft/email-sender/services/worker"
	"github.com/namirasoft/email-sender/services/worker/gmailpoll"
)

// stackOptions tune a test's system.
type stackOptions struct {
	maxAttempts     int
	ambiguousPolicy string
	sendTimeout     time.Duration
	ackWait         time.Duration
	// noWorker leaves the worker out (the test runs its own, e.g. as a process).
	noWorker bool
	// http serves the HTTP/JSON API too (stack.ingestURL, stack.reportURL).
	http bool
	// telemetry by service ("ingest", "worker", "report"), as if each ran in its
	// own process; telemetry.Nop() for those not given.
	telemetry map[string]*telemetry.Telemetry
	// logs, when set, also receives every service's log lines from debug up
	// (the test's own output keeps warn and up).
	logs *logBuffer
	// report, when set, adjusts the report service's config and dependencies.
	report func(*report.Config, *report.Deps)
	// outbound is the operator's side of the senders, ingest's and the
	// worker's: the SES and Gmail endpoints (emulators and fakes) and
	// OUTBOUND_ALLOW_NETS, which withDefaults sets to loopback (the SMTP
	// sink and the emulators run there) unless outboundPublicOnly.
	outbound           kinds.Config
	outboundPublicOnly bool
	// finalSweepAfter is ingest's INGEST_FINAL_SWEEP_AFTER (0: its default).
	finalSweepAfter time.Duration
	// jwt, when set, makes ingest accept its tokens (auto-provisioning).
	jwt *jwttest.Issuer
	// dns starts a DNS server (stack.dns) and makes it ingest's DNS_SERVER,
	// for bounce domain verification.
	dns bool
}

// operatorToken is the stack's operator token (actor "operator:e2e").
const operatorToken = "op_e2e-operator-token"

func (o stackOptions) tel(service string) *telemetry.Telemetry {
	if t := o.telemetry[service]; t != nil {
		return t
	}
	return telemetry.Nop()
}

// stack is one test's whole system.
type stack struct {
	t  *testing.T
	db *pgtest.DB
	// dns is the stack's DNS server (stackOptions.dns), nil otherwise.
	dns     *dnstest.Server
	nats    *natstest.Server
	sink    *smtpsink.Sink
	js      jetstream.JetStream
	keys    string
	keyring *secretbox.Keyring
	opts    stackOptions

	send    v1.SendServiceClient
	report  v1.ReportServiceClient
	account v1.AccountServiceClient
	// templates is the TemplateService on ingest.
	templates v1.TemplateServiceClient
	// operator is the OperatorService on ingest's operator listener.
	operator operatorv1.OperatorServiceClient
	// webhooks is served by the report service (reportAddr).
	webhooks v1.WebhookServiceClient
	// ingestURL and reportURL are the HTTP/JSON API's base URLs (opts.http).
	ingestURL, reportURL string
	// ingestAddr and reportAddr are the gRPC addresses (host:port).
	ingestAddr, reportAddr string
	// accounts by name: "a" uses the SMTP sink, "b" too, "sandbox" the sandbox.
	accounts map[string]ingest.BootstrapResult
}

func (o stackOptions) withDefaults() stackOptions {
	if o.maxAttempts == 0 {
		o.maxAttempts = 5
	}
	if o.ambiguousPolicy == "" {
		o.ambiguousPolicy = worker.AmbiguousFail
	}
	if o.sendTimeout == 0 {
		o.sendTimeout = 10 * time.Second
	}
	if o.ackWait == 0 {
		o.ackWait = 5 * time.Second
	}
	if o.outbound.AllowNets == nil && !o.outboundPublicOnly {
		o.outbound.AllowNets = loopbackNets
	}
	return o
}

func newStack(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	s := &stack{t: t, db: pgtest.New(t), nats: natstest.Start(t), sink: smtpsink.StartTest(t), opts: opts, accounts: map[string]ingest.BootstrapResult{}}

	mk, err := secretbox.NewMasterKey()
	require.NoError(t, err)
	s.keys = "k1:" + mk
	s.keyring, err = secretbox.ParseKeyring(s.keys, "")
	require.NoError(t, err)

	nc, err := nats.Connect(s.nats.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	require.NoError(t, err)
	s.js, err = jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, queue.EnsureStreams(ctx, s.js, queue.StreamConfig{}))

	for _, name := range []string{"a", "b"} {
		acc, err := ingest.Bootstrap(ctx, s.db.Pool, s.keyring, ingest.BootstrapParams{
			AccountName: name, ProviderKind: "smtp",
			SMTP:    ingest.SMTPSettings{Host: s.sink.Host(), Port: s.sink.Port(), TLS: "none", PoolSize: 4},
			Senders: []string{"example.com"},
		})
		require.NoError(t, err)
		s.accounts[name] = acc
	}
	acc, err := ingest.Bootstrap(ctx, s.db.Pool, s.keyring, ingest.BootstrapParams{AccountName: "sandbox", ProviderKind: "sandbox", Senders: []string{"example.com"}})
	require.NoError(t, err)
	s.accounts["sandbox"] = acc

	var handler slog.Handler = slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})
	if opts.logs != nil {
		handler = slog.NewMultiHandler(handler, slog.NewTextHandler(opts.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	log := slog.New(handler)
	keyStore := auth.NewKeyStore(s.db.Pool, 0)
	ingestLis := listen(t)
	reportLis := listen(t)
	s.ingestAddr, s.reportAddr = ingestLis.Addr().String(), reportLis.Addr().String()
	var ingestHTTP, reportHTTP net.Listener
	if opts.http {
		ingestHTTP, reportHTTP = listen(t), listen(t)
		s.ingestURL, s.reportURL = "http://"+ingestHTTP.Addr().String(), "http://"+reportHTTP.Addr().String()
	}

	opHash := sha256.Sum256([]byte(operatorToken))
	operatorLis := listen(t)
	ic := ingest.Config{Relay: outbox.RelayConfig{Interval: 200 * time.Millisecond, Grace: time.Second}, MasterKeys: s.keys, Outbound: opts.outbound,
		FinalSweepAfter: opts.finalSweepAfter, OperatorTokens: "e2e:" + hex.EncodeToString(opHash[:])}
	if opts.jwt != nil {
		ic.API.JWT = opts.jwt.Config()
	}
	if opts.dns {
		s.dns = dnstest.Start(t)
		ic.Account.DNS.Server = s.dns.Addr()
	}
	ingestSvc, err := ingest.New(ic, ingest.Deps{Pool: s.db.Pool, JetStream: s.js, Telemetry: opts.tel("ingest"), Logger: log, Auth: keyStore, Listener: ingestLis, HTTPListener: ingestHTTP,
		OperatorListener: operatorLis})
	require.NoError(t, err)
	rc, rd := report.Config{MasterKeys: s.keys}, report.Deps{Pool: s.db.Pool, JetStream: s.js, Telemetry: opts.tel("report"), Logger: log, Authenticator: keyStore, Listener: reportLis, HTTPListener: reportHTTP}
	// Webhook receivers of the tests listen on loopback.
	rc.Webhooks.Outbound.AllowNets = []string{"127.0.0.0/8", "::1/128"}
	rc.Webhooks.Poll = 50 * time.Millisecond
	if opts.report != nil {
		opts.report(&rc, &rd)
	}
	reportSvc, err := report.New(rc, rd)
	require.NoError(t, err)

	var wg sync.WaitGroup
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("%s: %v", name, err)
			}
		}()
	}
	run("ingest", ingestSvc.Run)
	run("report", reportSvc.Run)
	if !opts.noWorker {
		// The worker's senders, as cmd/worker builds them (kinds.Senders).
		so, err := opts.outbound.Options(log)
		require.NoError(t, err)
		senders, closeSenders := kinds.Senders(so)
		t.Cleanup(func() { _ = closeSenders() })
		w, err := worker.New(ctx, s.workerConfig(), worker.Deps{
			Pool: s.db.Pool, JetStream: s.js, Telemetry: opts.tel("worker"), Logger: log, Keyring: s.keyring,
			Senders: senders,
		})
		require.NoError(t, err)
		run("worker", w.Run)
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		nc.Close()
	})

	ingestConn := dial(t, ingestLis.Addr().String())
	s.send = v1.NewSendServiceClient(ingestConn)
	s.account = v1.NewAccountServiceClient(ingestConn)
	s.templates = v1.NewTemplateServiceClient(ingestConn)
	reportConn := dial(t, reportLis.Addr().String())
	s.report = v1.NewReportServiceClient(reportConn)
	s.webhooks = v1.NewWebhookServiceClient(reportConn)
	s.operator = operatorv1.NewOperatorServiceClient(dial(t, operatorLis.Addr().String()))
	return s
}

func (s *stack) workerConfig() worker.Config {
	return worker.Config{
		Providers:       []string{"smtp", "sandbox", "gmail", "ses"},
		Concurrency:     8,
		MaxAttempts:     s.opts.maxAttempts,
		BackoffBase:     100 * time.Millisecond,
		BackoffMax:      500 * time.Millisecond,
		AckWait:         s.opts.ackWait,
		SendTimeout:     s.opts.sendTimeout,
		AmbiguousPolicy: s.opts.ambiguousPolicy,
		MasterKeys:      s.keys,
		Outbound:        s.opts.outbound,
		GmailPoll:       gmailpoll.Config{Interval: 100 * time.Millisecond, MaxBackoff: time.Second, Lease: 5 * time.Second, Discovery: 100 * time.Millisecond},
	}
}

// loopbackNets is OUTBOUND_ALLOW_NETS of the test stacks, as of `make run`.
var loopbackNets = []string{"127.0.0.0/8", "::1/128"}

// workerEnv is the environment of a worker process for this stack.
func (s *stack) workerEnv() []string {
	c := s.workerConfig()
	return append(os.Environ(),
		"DATABASE_URL="+s.db.URL,
		"NATS_URL="+s.nats.URL(),
		"MASTER_KEYS="+s.keys,
		"WORKER_PROVIDERS=smtp",
		"WORKER_GRPC_ADDR=127.0.0.1:0",
		"WORKER_METRICS_ADDR=127.0.0.1:0",
		"WORKER_MAX_ATTEMPTS="+strconv.Itoa(c.MaxAttempts),
		"WORKER_BACKOFF_BASE="+c.BackoffBase.String(),
		"WORKER_BACKOFF_MAX="+c.BackoffMax.String(),
		"WORKER_ACK_WAIT="+c.AckWait.String(),
		"WORKER_SEND_TIMEOUT="+c.SendTimeout.String(),
		"OUTBOUND_ALLOW_NETS="+strings.Join(c.Outbound.AllowNets, ","),
		"LOG_LEVEL=warn",
	)
}

// ctx returns a call context authenticated as account name.
func (s *stack) ctx(name string) context.Context {
	s.t.Helper()
	acc, ok := s.accounts[name]
	require.True(s.t, ok, "unknown account %q", name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	s.t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+acc.APIKey)
}

// sendOK sends a message as account name and returns its id.
func (s *stack) sendOK(name string, req *v1.SendEmailRequest) string {
	s.t.Helper()
	resp, err := s.send.SendEmail(s.ctx(name), req)
	require.NoError(s.t, err)
	require.NotEmpty(s.t, resp.GetMessageId())
	return resp.GetMessageId()
}

// waitStatus polls the report until the message has status want, and returns it.
func (s *stack) waitStatus(name, id string, want v1.MessageStatus_Value) *v1.GetMessageResponse {
	s.t.Helper()
	var last *v1.GetMessageResponse
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := s.report.GetMessage(s.ctx(name), &v1.GetMessageRequest{MessageId: id})
		require.NoError(s.t, err)
		last = resp
		if resp.GetMessage().GetStatus() == want {
			return resp
		}
		if msgstatus.Final(resp.GetMessage().GetStatus()) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("message %s: status %v, want %v; events: %v", id, last.GetMessage().GetStatus(), want, last.GetEvents())
	return nil
}

func simple(to string) *v1.SendEmailRequest {
	return &v1.SendEmailRequest{Message: &v1.EmailMessage{
		From:     &v1.Address{Address: "sender@example.com", Name: "Sender"},
		To:       []*v1.Address{{Address: to}},
		Subject:  "Hello",
		TextBody: "Hello there",
	}}
}

func eventTypes(resp *v1.GetMessageResponse) []string {
	var out []string
	for _, e := range resp.GetEvents() {
		out = append(out, e.GetType())
	}
	return out
}

func countType(resp *v1.GetMessageResponse, typ string) int {
	n := 0
	for _, e := range resp.GetEvents() {
		if e.GetType() == typ {
			n++
		}
	}
	return n
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return l
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// logBuffer collects log lines; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// workerBinary builds the worker command once per test binary.
var workerBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "emailsender-worker")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "worker")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/namirasoft/email-sender/services/worker/cmd/worker").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build worker: %v: %s", err, out)
	}
	return bin, nil
})
