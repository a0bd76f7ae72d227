// Package grpcserver builds the gRPC server every service runs: tracing and
// metrics stats handler, authentication, the standard health service and reflection, and the
// shutdown order (health NOT_SERVING, GracefulStop, then a timed hard Stop).
//
// Besides the network listener it serves in-process connections
// (DialInProcess), which the process's own HTTP gateway uses: calls on them
// are known as the gateway's (InProcess) without trusting any address, and
// they skip TLS.
package grpcserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/grpc/test/bufconn"

	"github.com/namirasoft/email-sender/pkg/telemetry"
)

// Config configures a server. It has no defaults of its own: the services
// pass their configuration's (whose env tags are the one source of them).
type Config struct {
	// MaxRecvMsgSize bounds a request; it must exceed the largest accepted
	// message. 0 keeps gRPC's own limit (4 MiB), for services that take no
	// messages.
	MaxRecvMsgSize int
	// ShutdownGrace is how long GracefulStop may take before a hard Stop; 0
	// stops at once (a server with nothing to drain, such as a worker's
	// health service).
	ShutdownGrace time.Duration
	// MaxConcurrentStreams bounds the calls in flight on one connection (0:
	// gRPC's default, unbounded).
	MaxConcurrentStreams uint32
	// StreamWorkers is how many goroutines serve calls and stay for the next
	// one (grpc.NumStreamWorkers); 0: a new goroutine per call. A call on a
	// goroutine of its own grows its stack (copying it) as it goes down the
	// interceptors into the handler, every time; a worker keeps the stack it
	// grew. Calls beyond the idle workers get a goroutine of their own.
	StreamWorkers uint32
	// TLS, when set, is the TLS configuration of network connections
	// (ClientAuth and ClientCAs included); nil serves plaintext.
	TLS *tls.Config
	// Admit, when set, runs on every call's metadata before its request is
	// read (grpc.InTapHandle): refusing there costs no request bytes. It runs
	// in the connection's reader and must not block.
	Admit tap.ServerInHandle
}

// Server is a gRPC server with health and reflection.
type Server struct {
	GRPC   *grpc.Server
	health *health.Server
	cfg    Config
	log    *slog.Logger
	inproc *bufconn.Listener
}

// New builds the server. Every call, unary or streaming, passes the same
// chain: telemetry (the stats handler), Recover, then interceptors in order;
// streaming calls pass them through Stream, so a streaming RPC cannot bypass
// authentication, limits or usage records.
func New(cfg Config, tel *telemetry.Telemetry, log *slog.Logger, interceptors ...grpc.UnaryServerInterceptor) *Server {
	unary := append([]grpc.UnaryServerInterceptor{Recover(log)}, interceptors...)
	stream := make([]grpc.StreamServerInterceptor, 0, len(unary))
	for _, u := range unary {
		stream = append(stream, Stream(u))
	}
	opts := []grpc.ServerOption{
		grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(tel.TracerProvider),
			otelgrpc.WithMeterProvider(tel.MeterProvider),
			otelgrpc.WithPropagators(tel.Propagator),
		)),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.Creds(newServerCreds(cfg.TLS)),
	}
	if cfg.MaxRecvMsgSize > 0 {
		opts = append(opts, grpc.MaxRecvMsgSize(cfg.MaxRecvMsgSize))
	}
	if cfg.MaxConcurrentStreams > 0 {
		opts = append(opts, grpc.MaxConcurrentStreams(cfg.MaxConcurrentStreams))
	}
	if cfg.Admit != nil {
		opts = append(opts, grpc.InTapHandle(cfg.Admit))
	}
	if cfg.StreamWorkers > 0 {
		opts = append(opts, grpc.NumStreamWorkers(cfg.StreamWorkers))
	}
	s := grpc.NewServer(opts...)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(s, hs)
	reflection.Register(s)
	return &Server{GRPC: s, health: hs, cfg: cfg, log: log, inproc: bufconn.Listen(inProcessBuffer)}
}

// DialInProcess connects to the server from within the process (a
// grpc.WithContextDialer dialer; the address is ignored). Such calls skip TLS
// and are known by InProcess. Serve serves them.
func (s *Server) DialInProcess(ctx context.Context, _ string) (net.Conn, error) {
	return s.inproc.DialContext(ctx)
}

// Serve serves on lis until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	for name := range s.GRPC.GetServiceInfo() {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	errc := make(chan error, 1)
	go func() { errc <- s.GRPC.Serve(lis) }()
	inprocDone := make(chan struct{})
	go func() {
		defer close(inprocDone)
		// It ends when the server stops; its error is the network listener's too.
		_ = s.GRPC.Serve(inProcessListener{s.inproc})
	}()
	defer func() { s.GRPC.Stop(); <-inprocDone }()
	s.log.InfoContext(ctx, "grpc serving", "addr", lis.Addr().String())
	select {
	case err := <-errc:
		if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("grpc serve: %w", err)
		}
		return nil
	case <-ctx.Done():
	}
	s.health.Shutdown() // every service NOT_SERVING: load balancers stop sending
	done := make(chan struct{})
	go func() { s.GRPC.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.cfg.ShutdownGrace):
		s.log.Warn("grpc graceful stop timed out; stopping hard")
		s.GRPC.Stop()
	}
	<-errc
	return nil
}

// Standby answers health checks on addr with NOT_SERVING (for the whole
// server, "", and for each of names) while a process waits for PostgreSQL or
// NATS at start, so that orchestrators see it alive but not ready, and every
// other call with UNAVAILABLE. stop ends
// it and closes its listener, so that the real server can listen on addr.
func Standby(addr string, log *slog.Logger, names ...string) (stop func(), err error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	// Every other call is UNAVAILABLE, which clients retry: not
	// UNIMPLEMENTED, which would tell them the call can never work.
	s := grpc.NewServer(grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		return status.Error(codes.Unavailable, "starting: waiting for PostgreSQL and NATS; retry")
	}))
	hs := health.NewServer()
	for _, n := range append([]string{""}, names...) {
		hs.SetServingStatus(n, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	healthpb.RegisterHealthServer(s, hs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			log.Warn("standby health server", "error", err)
		}
	}()
	log.Info("waiting for infrastructure; health NOT_SERVING", "addr", lis.Addr().String())
	return func() { s.Stop(); <-done }, nil
}
