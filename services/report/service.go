package report

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/namirasoft/email-sender/pkg/apigate"
	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/connect"
	"github.com/namirasoft/email-sender/pkg/grpcserver"
	"github.com/namirasoft/email-sender/pkg/httpgateway"
	"github.com/namirasoft/email-sender/pkg/limits"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/telemetry"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/report/sns"
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
	// Hooks observe the consumer; nil hooks are no-ops.
	Hooks Hooks
	// SNSRootCAs, when set, are the only roots trusted for the TLS of SNS
	// signing certificate and subscription URLs (tests); nil: the system's.
	SNSRootCAs *x509.CertPool
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
	if cfg.httpEnabled(deps) {
		// The HTTP gateway calls gRPC over loopback with the client's address
		// in x-forwarded-for: usage records believe it from there.
		cfg.API.Usage.TrustedProxies = append(slices.Clip(cfg.API.Usage.TrustedProxies), httpgateway.LoopbackCIDRs()...)
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
		store:   &store{pool: deps.Pool},
		metrics: newMetrics(deps.Telemetry),
	}
	s.feedback = &feedback{svc: s, verifier: verifier, now: time.Now}
	return s, nil
}

// Register registers the ReportService on a gRPC server. The server must
// authenticate calls with auth.Interceptor (or apigate) and MethodScopes.
func (s *Service) Register(r grpc.ServiceRegistrar) {
	emailsenderv1.RegisterReportServiceServer(r, &reportServer{store: s.store, log: s.log})
}

// MethodScopes maps each ReportService method to the scope it needs, for
// auth.Interceptor.
func MethodScopes() map[string]string {
	return map[string]string{
		emailsenderv1.ReportService_GetMessage_FullMethodName:   auth.ScopeRead,
		emailsenderv1.ReportService_ListMessages_FullMethodName: auth.ScopeRead,
		emailsenderv1.ReportService_GetStats_FullMethodName:     auth.ScopeRead,
	}
}

// Run serves gRPC (health, reflection and ReportService) and, when
// configured, HTTP/JSON, and consumes events until ctx ends or either fails,
// then shuts both down gracefully: HTTP, then gRPC, stop taking calls and
// finish those in flight; the consumer stops
// fetching, applies the batch in flight and what it had buffered.
func (s *Service) Run(ctx context.Context) error {
	lis, err := connect.Listener(s.deps.Listener, s.cfg.GRPCAddr)
	if err != nil {
		return err
	}
	gw, httpLis, err := s.httpGateway(lis.Addr())
	if err != nil {
		_ = lis.Close()
		return err
	}
	gate, err := apigate.New(s.cfg.API, s.deps.Pool, s.deps.Authenticator, s.log)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	srv := grpcserver.New(grpcserver.Config{ShutdownGrace: s.cfg.ShutdownGrace}, s.tel, s.log,
		gate.Interceptors(MethodScopes(), limits.Sends{})...)
	s.Register(srv.GRPC)
	// The usage recorder outlives the gRPC server: it flushes the records of
	// calls that finish during the graceful stop.
	usageCtx, stopUsage := context.WithCancel(context.WithoutCancel(ctx))
	usageDone := make(chan error, 1)
	go func() { usageDone <- gate.Run(usageCtx) }()
	defer func() { stopUsage(); <-usageDone }()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return httpgateway.ServeWithGRPC(gctx, gw, httpLis, func(ctx context.Context) error { return srv.Serve(ctx, lis) })
	})
	g.Go(func() error { return s.Consume(gctx) })
	stats := telemetry.NewConsumerStats(s.tel, s.deps.JetStream, 0, s.log,
		telemetry.ConsumerRef{Stream: queue.EventStream, Consumer: s.cfg.Consumer})
	g.Go(func() error { return stats.Run(gctx) })
	return g.Wait()
}
