package report

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/namirasoft/email-sender/pkg/accountstate"
	"github.com/namirasoft/email-sender/pkg/apiserver"
	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/httpgateway"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/reputation"
	"github.com/namirasoft/email-sender/pkg/secretbox"
	"github.com/namirasoft/email-sender/pkg/suppression"
	"github.com/namirasoft/email-sender/pkg/telemetry"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/report/console"
	"github.com/namirasoft/email-sender/services/report/sns"
	"github.com/namirasoft/email-sender/services/report/watch"
	"github.com/namirasoft/email-sender/services/report/webhook"
)

// Deps are the clients the service uses; they are built once by the process and
// shared with other services in an all-in-one process.
type Deps struct {
	Pool          *pgxpool.Pool
	JetStream     jetstream.JetStream
	Authenticator auth.Authenticator
	// Telemetry defaults to telemetry.Nop(); Logger to a logger that discards.
	Telemetry *telemetry.Telemetry
	Logger    *slog.Logger
	// Listener, when set, is what Run serves gRPC on instead of Config.GRPCAddr.
	Listener net.Listener
	// HTTPListener, when set, is where Run serves the HTTP/JSON API instead of
	// Config.HTTPAddr.
	HTTPListener net.Listener
	// KeyStore, when set, is the API key cache Run keeps in step with
	// revocations (the process's own; in an all-in-one process, the service
	// that owns the shared cache watches it).
	KeyStore *auth.KeyStore
	// Hooks observe the consumer; nil hooks are no-ops.
	Hooks Hooks
	// SNSRootCAs, when set, are the only roots trusted for the TLS of SNS
	// signing certificate and subscription URLs (tests); nil: the system's.
	SNSRootCAs *x509.CertPool
	// Webhooks: the webhook dispatcher's clock, jitter source and transport
	// (tests); zero: the real ones (transport: netguard's).
	Webhooks WebhookDeps
	// Console: the console's clock and OpenID client (tests).
	Console ConsoleDeps
}

// ConsoleDeps are console.Deps a test may set: the clock (idle expiry) and
// the HTTP client that reaches the OpenID provider.
type ConsoleDeps struct {
	Now        func() time.Time
	HTTPClient *http.Client
}

// capturedServices keeps the service implementations Register registers, for
// the console to call in process.
type capturedServices map[string]any

func (c capturedServices) RegisterService(desc *grpc.ServiceDesc, impl any) {
	c[desc.ServiceName] = impl
}

// WebhookDeps are webhook.Deps a test may set.
type WebhookDeps struct {
	Now       func() time.Time
	Rand      func() float64
	Transport http.RoundTripper
}

// Hooks let tests observe the consumer deterministically. They run on the
// consumer goroutine and must not block for long.
type Hooks struct {
	// BatchDone is called after a batch was applied (or given up on) and every
	// event in it acked, terminated or nak'ed.
	BatchDone func(BatchReport)
}

// BatchReport says what became of the events of one batch.
type BatchReport struct {
	// Applied: event ids stored by this batch (whether or not they changed a status).
	Applied []string
	// Duplicates: event ids that were already stored (or repeated in the batch).
	Duplicates []string
	// Unknown: event ids whose message does not exist; acked and dropped.
	Unknown []string
	// Malformed: events terminated because they could not be decoded or were
	// rejected by the database. Their ids are given when known.
	Malformed []string
	// Retried: event ids nak'ed for redelivery because the database failed.
	Retried []string
	// Tombstoned: event ids of deleted or terminated accounts; acked and
	// dropped (a send under way when the account was deleted reports late).
	Tombstoned []string
}

// Service is the report service.
type Service struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	tel      *telemetry.Telemetry
	tracer   trace.Tracer
	store    *store
	metrics  *metrics
	feedback *feedback
	api      *apiserver.Server
	// states follows the account states: events of tombstoned accounts are dropped.
	states   *accountstate.View
	webhooks *webhook.Service
	watcher  *watch.Watcher
	// guard is the reputation guard: it assesses the provider
	// configurations the consumer counted events for.
	guard *reputation.Guard
	// assessing is when the guard last assessed each pair, and the pairs
	// waiting for it (assessReputation).
	assessing assessQueue
	// console is the web console (nil: CONSOLE_OFF).
	console *console.Console
	// consoleIngest is the console's client of ingest's API (nil: none).
	consoleIngest *consoleIngest
	// consoleOperator is the console's client of ingest's OperatorService
	// (nil: none).
	consoleOperator *consoleOperator
	// unacked holds the events of the batch being handled whose ack could
	// not be sent (NATS reconnecting); the consumer goroutine alone uses it.
	unacked []jetstream.Msg
}

// New returns a service; it starts nothing.
func New(cfg Config, deps Deps) (*Service, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var missing []error
	if deps.Pool == nil {
		missing = append(missing, errors.New("pool"))
	}
	if deps.JetStream == nil {
		missing = append(missing, errors.New("jetstream"))
	}
	if deps.Authenticator == nil {
		missing = append(missing, errors.New("authenticator"))
	}
	if err := errors.Join(missing...); err != nil {
		return nil, fmt.Errorf("report: missing dependencies: %w", err)
	}
	if deps.Telemetry == nil {
		deps.Telemetry = telemetry.Nop()
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	verifier, err := sns.NewVerifier(sns.Config{
		CertHostPattern: cfg.SNSCertHostPattern,
		TopicARNs:       cfg.SNSTopicARNs,
		RootCAs:         deps.SNSRootCAs,
	})
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	s := &Service{
		cfg:     cfg,
		deps:    deps,
		log:     deps.Logger,
		tel:     deps.Telemetry,
		tracer:  deps.Telemetry.Tracer("github.com/namirasoft/email-sender/services/report"),
		store:   &store{pool: deps.Pool, reputation: &cfg.Reputation},
		metrics: newMetrics(deps.Telemetry),
		states:  accountstate.NewView(deps.Pool, deps.JetStream, cfg.NATS.StreamReplicas, deps.Logger),
	}
	s.guard = reputation.NewGuard(cfg.Reputation, deps.Pool,
		accountstate.NewStore(deps.Pool, deps.JetStream, cfg.NATS.StreamReplicas), deps.JetStream, deps.Logger)
	s.feedback = &feedback{svc: s, verifier: verifier, now: time.Now, rules: suppression.New(deps.Pool, cfg.Suppression)}
	var keyring *secretbox.Keyring
	if cfg.MasterKeys != "" {
		if keyring, err = secretbox.ParseKeyring(cfg.MasterKeys, cfg.MasterKeyID); err != nil {
			return nil, fmt.Errorf("report: MASTER_KEYS: %w", err)
		}
	}
	s.webhooks, err = webhook.New(cfg.Webhooks, webhook.Deps{
		Pool: deps.Pool, JetStream: deps.JetStream, Keyring: keyring, Logger: deps.Logger,
		Now: deps.Webhooks.Now, Rand: deps.Webhooks.Rand, Transport: deps.Webhooks.Transport,
	})
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	s.watcher = watch.New(deps.JetStream, s.webhooks, deps.Logger, watch.Config{Heartbeat: cfg.WatchHeartbeat, Buffer: cfg.WatchBuffer})
	var mounts []httpgateway.Mount
	if !cfg.Console.Off {
		impls := capturedServices{}
		s.Register(impls)
		var ingestAPI console.Ingest
		if cfg.Console.IngestAddr != "" && keyring != nil {
			ci, err := newConsoleIngest(cfg.Console)
			if err != nil {
				return nil, fmt.Errorf("report: %w", err)
			}
			s.consoleIngest, ingestAPI = ci, ci
		}
		var operatorAPI console.OperatorAPI
		if cfg.Console.OperatorAddr != "" && keyring != nil {
			co, err := newConsoleOperator(cfg.Console)
			if err != nil {
				return nil, fmt.Errorf("report: %w", err)
			}
			s.consoleOperator, operatorAPI = co, co
		}
		con, err := console.New(cfg.Console, console.Deps{
			Ingest: ingestAPI, IngestScopes: consoleIngestScopes, Keyring: keyring,
			JetStream: deps.JetStream, Operator: operatorAPI,
			Thresholds: console.Thresholds{
				WarnBounce: cfg.Reputation.WarnBounceRate, PauseBounce: cfg.Reputation.PauseBounceRate,
				WarnComplaint: cfg.Reputation.WarnComplaintRate, PauseComplaint: cfg.Reputation.PauseComplaintRate,
			},
			Pool: deps.Pool, Keys: deps.Authenticator, Throttle: cfg.API.Throttle, JWT: cfg.API.JWT,
			Report:   impls[emailsenderv1.ReportService_ServiceDesc.ServiceName].(emailsenderv1.ReportServiceServer),
			Webhooks: impls[emailsenderv1.WebhookService_ServiceDesc.ServiceName].(emailsenderv1.WebhookServiceServer),
			Scopes:   MethodScopes(), Contents: s.store, Logger: deps.Logger, Now: deps.Console.Now, HTTPClient: deps.Console.HTTPClient,
		})
		if err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
		mounts = append(mounts, httpgateway.Mount{Prefix: console.Prefix, Handler: con})
		s.console = con
	}
	var revs *auth.Revocations
	if deps.KeyStore != nil {
		revs = auth.NewRevocations(deps.JetStream, cfg.NATS.StreamReplicas)
	}
	s.api, err = apiserver.New(apiserver.Config{
		GRPCAddr:             cfg.GRPCAddr,
		MaxConcurrentStreams: cfg.GRPCMaxConcurrentStreams,
		ShutdownGrace:        cfg.ShutdownGrace,
		HTTPAddr:             cfg.HTTPAddr,
		MaxHTTPBodyBytes:     httpMaxBodyBytes,
		MaxHTTPResponseBytes: httpMaxResponseBytes,
		TLS:                  apiserver.TLSFiles{CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile, ClientCAFile: cfg.TLSClientCAFile},
		API:                  cfg.API,
	}, apiserver.Deps{
		Pool: deps.Pool, Keys: deps.Authenticator, KeyStore: deps.KeyStore, Revocations: revs,
		Telemetry: deps.Telemetry, Logger: deps.Logger, Listener: deps.Listener, HTTPListener: deps.HTTPListener,
	}, apiserver.API{
		Register: s.Register,
		Gateway: []httpgateway.Register{emailsenderv1.RegisterReportServiceHandler, emailsenderv1.RegisterWebhookServiceHandler,
			s.feedback.register, watch.RegisterSSE},
		// SNS signs its posts; it sends no Authorization header.
		PublicPaths: []string{FeedbackPathPrefix},
		Scopes:      MethodScopes(),
		Mounts:      mounts,
	})
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	return s, nil
}

// Register registers the ReportService on a gRPC server. The server must
// authenticate calls with auth.Interceptor (or apigate) and MethodScopes.
func (s *Service) Register(r grpc.ServiceRegistrar) {
	emailsenderv1.RegisterReportServiceServer(r, &reportServer{store: s.store, log: s.log, watcher: s.watcher})
	s.webhooks.Register(r)
}

// MethodScopes maps each ReportService and WebhookService method to the
// scope it needs, for auth.Interceptor.
func MethodScopes() map[string]string {
	out := map[string]string{
		emailsenderv1.ReportService_GetMessage_FullMethodName:   auth.ScopeRead,
		emailsenderv1.ReportService_ListMessages_FullMethodName: auth.ScopeRead,
		emailsenderv1.ReportService_GetStats_FullMethodName:     auth.ScopeRead,
		emailsenderv1.ReportService_WatchEvents_FullMethodName:  auth.ScopeRead,
	}
	maps.Copy(out, webhook.MethodScopes())
	return out
}

// Run serves the API (pkg/apiserver: gRPC with health, reflection and
// ReportService, and, when configured, HTTP/JSON with the SES feedback
// endpoint) and consumes events until ctx ends or either fails, then shuts
// down in apiserver's order; the consumer stops fetching, applies the batch
// in flight and what it had buffered.
func (s *Service) Run(ctx context.Context) error {
	stats := telemetry.NewConsumerStats(s.tel, s.deps.JetStream, 0, s.log,
		telemetry.ConsumerRef{Stream: queue.EventStream, Consumer: s.cfg.Consumer})
	background := []func(context.Context) error{s.Consume, stats.Run, s.states.Watch, s.webhooks.Run, s.runReputationGauges, s.runStatsFold, s.runAnalyze, s.runReputationAssess, s.runLatencyPrune}
	if s.console != nil {
		background = append(background, s.console.Run)
	}
	err := s.api.Run(ctx, apiserver.Hooks{Background: background})
	if s.consoleOperator != nil {
		_ = s.consoleOperator.Close()
	}
	if s.consoleIngest != nil {
		_ = s.consoleIngest.Close()
	}
	return err
}

// every calls fn every d until ctx ends: first at once when now is true,
// else after d. It returns nil: the background loops of the report end with
// their context.
func every(ctx context.Context, d time.Duration, now bool, fn func(context.Context)) error {
	t := time.NewTicker(d)
	defer t.Stop()
	if now {
		fn(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			fn(ctx)
		}
	}
}
