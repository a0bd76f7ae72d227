// Package apiserver is the skeleton every service that serves the public API
// (ingest, report) runs: the gRPC server (pkg/grpcserver: telemetry,
// recovery, health, reflection), the HTTP/JSON gateway beside it
// (pkg/httpgateway, HTTPS when configured), the gate every call passes, unary
// and streaming alike (pkg/apigate: authentication, usage records, scopes,
// limits), the usage flush, the API-key revocation watch, and one shutdown
// order.
//
// Adding an RPC to a service is: implement it, register it in the service's
// API.Register (and its gateway handler in API.Gateway), and give it a scope in
// API.Scopes (a method without one needs admin).
//
// Shutdown, when Run's context ends:
//
//  1. stop accepting: the HTTP gateway stops taking requests and finishes
//     those in flight, health turns NOT_SERVING, the gRPC server stops taking
//     calls;
//  2. drain: in-flight RPCs get ShutdownGrace to finish, then the server stops
//     hard; the service's Background tasks (relay, consumer, watches) end with
//     the context meanwhile;
//  3. the service's Drains run, in order (work RPCs left behind: queued
//     deletions, a deletion's settle pass);
//  4. usage records are flushed;
//  5. Run returns, and the caller closes NATS and PostgreSQL (connect.Infra).
package apiserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/namirasoft/email-sender/pkg/apigate"
	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/connect"
	"github.com/namirasoft/email-sender/pkg/grpcserver"
	"github.com/namirasoft/email-sender/pkg/httpgateway"
	"github.com/namirasoft/email-sender/pkg/limits"
	"github.com/namirasoft/email-sender/pkg/telemetry"
)

// Config is the part of a service's configuration the skeleton reads. It has
// no defaults of its own: the services fill it from their Config, whose env
// tags are the one source of defaults.
type Config struct {
	// GRPCAddr is where gRPC is served unless Deps.Listener is given.
	GRPCAddr string
	// MaxRecvMsgSize bounds a gRPC request (0: gRPC's 4 MiB).
	MaxRecvMsgSize int
	// ShutdownGrace is how long in-flight calls (gRPC and HTTP) get to finish.
	ShutdownGrace time.Duration
	// HTTPAddr is where the HTTP/JSON gateway is served unless
	// Deps.HTTPListener is given; "" or "off" serves none.
	HTTPAddr string
	// MaxHTTPBodyBytes and MaxHTTPResponseBytes bound the gateway's requests
	// and the gRPC answers it relays.
	MaxHTTPBodyBytes     int64
	MaxHTTPResponseBytes int
	// TLSCertFile and TLSKeyFile, when set, make the gateway serve HTTPS; the
	// certificate is read once, at start.
	TLSCertFile, TLSKeyFile string
	// API configures the gate (JWT, limits, usage records).
	API apigate.Config
}

// HTTPEnabled reports whether a gateway is served: on lis when given, else on
// addr unless it is empty or "off".
func HTTPEnabled(addr string, lis net.Listener) bool {
	return lis != nil || (addr != "" && addr != "off")
}

// Deps are the clients the skeleton uses; the caller builds and closes them.
type Deps struct {
	Pool *pgxpool.Pool
	// Keys authenticates API keys (usually an *auth.KeyStore).
	Keys auth.Authenticator
	// KeyStore and Revocations, when both set, are the key cache Run keeps in
	// step with revocations announced by any replica.
	KeyStore    *auth.KeyStore
	Revocations *auth.Revocations
	// Telemetry defaults to telemetry.Nop(); Logger to one that discards.
	Telemetry *telemetry.Telemetry
	Logger    *slog.Logger
	// Listener and HTTPListener, when set, are served instead of listening on
	// the configured addresses (tests).
	Listener, HTTPListener net.Listener
}

// API is what a service serves.
type API struct {
	// Register registers the service's gRPC services.
	Register func(grpc.ServiceRegistrar)
	// Gateway registers their HTTP/JSON handlers (and any other routes).
	Gateway []httpgateway.Register
	// Scopes is the scope each method needs (unlisted: admin).
	Scopes map[string]string
	// Sends names the calls that use the daily send quota (zero: none).
	Sends limits.Sends
	// Interceptors run after the gate (the caller is authenticated).
	Interceptors []grpc.UnaryServerInterceptor
}

// Hooks are a service's own work around the server.
type Hooks struct {
	// Background tasks run beside the server until Run's context ends; one
	// that fails stops the service.
	Background []func(context.Context) error
	// Drains run after the gRPC server has stopped, in order, before the
	// usage flush; their context ends ShutdownGrace after the first starts.
	Drains []func(context.Context) error
}

// Server is a service's API server.
type Server struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	gate *apigate.Gate
	grpc *grpcserver.Server
	api  API
}

// New builds the server; it listens on nothing until Run.
func New(cfg Config, deps Deps, api API) (*Server, error) {
	if deps.Pool == nil || deps.Keys == nil || api.Register == nil {
		return nil, errors.New("apiserver: Pool, Keys and API.Register are required")
	}
	if cfg.ShutdownGrace <= 0 {
		return nil, fmt.Errorf("apiserver: shutdown grace %s: want a positive duration", cfg.ShutdownGrace)
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, errors.New("apiserver: tls: set both the certificate and the key file, or neither")
	}
	if deps.Telemetry == nil {
		deps.Telemetry = telemetry.Nop()
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if HTTPEnabled(cfg.HTTPAddr, deps.HTTPListener) {
		// The gateway calls gRPC over loopback with the client's address in
		// x-forwarded-for: usage records believe it from there.
		cfg.API.Usage.TrustedProxies = append(slices.Clip(cfg.API.Usage.TrustedProxies), httpgateway.LoopbackCIDRs()...)
	}
	gate, err := apigate.New(cfg.API, deps.Pool, deps.Keys, deps.Logger)
	if err != nil {
		return nil, fmt.Errorf("apiserver: %w", err)
	}
	gs := grpcserver.New(grpcserver.Config{MaxRecvMsgSize: cfg.MaxRecvMsgSize, ShutdownGrace: cfg.ShutdownGrace},
		deps.Telemetry, deps.Logger, append(gate.Interceptors(api.Scopes, api.Sends), api.Interceptors...)...)
	api.Register(gs.GRPC)
	return &Server{cfg: cfg, deps: deps, log: deps.Logger, gate: gate, grpc: gs, api: api}, nil
}

// Run serves until ctx ends or a task fails, then shuts down in the order the
// package documents.
func (s *Server) Run(ctx context.Context, h Hooks) error {
	lis, err := connect.Listener(s.deps.Listener, s.cfg.GRPCAddr)
	if err != nil {
		return err
	}
	gw, httpLis, err := s.gateway(lis.Addr())
	if err != nil {
		_ = lis.Close()
		return err
	}
	// The usage recorder outlives the gRPC server: it flushes the records of
	// calls that finish during the graceful stop.
	usageCtx, stopUsage := context.WithCancel(context.WithoutCancel(ctx))
	usageDone := make(chan error, 1)
	go func() { usageDone <- s.gate.Run(usageCtx) }()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return httpgateway.ServeWithGRPC(gctx, gw, httpLis, func(ctx context.Context) error { return s.grpc.Serve(ctx, lis) })
	})
	if s.deps.KeyStore != nil && s.deps.Revocations != nil {
		g.Go(func() error { return s.deps.KeyStore.Watch(gctx, s.deps.Revocations) })
	}
	for _, task := range h.Background {
		g.Go(func() error { return task(gctx) })
	}
	err = g.Wait()

	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownGrace)
	defer cancel()
	for _, drain := range h.Drains {
		if derr := drain(drainCtx); derr != nil && err == nil {
			err = derr
		}
	}
	stopUsage()
	if uerr := <-usageDone; uerr != nil && err == nil {
		err = uerr
	}
	return err
}

// gateway builds the HTTP/JSON gateway calling the gRPC server on grpcAddr,
// and its listener; nil when HTTP is off.
func (s *Server) gateway(grpcAddr net.Addr) (*httpgateway.Gateway, net.Listener, error) {
	if !HTTPEnabled(s.cfg.HTTPAddr, s.deps.HTTPListener) {
		return nil, nil, nil
	}
	lis, err := connect.Listener(s.deps.HTTPListener, s.cfg.HTTPAddr)
	if err != nil {
		return nil, nil, err
	}
	if s.cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
		if err != nil {
			_ = lis.Close()
			return nil, nil, fmt.Errorf("tls certificate: %w", err)
		}
		lis = tls.NewListener(lis, &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
			NextProtos:   []string{"http/1.1"},
		})
	}
	gw, err := httpgateway.New(httpgateway.Config{
		MaxBodyBytes:     s.cfg.MaxHTTPBodyBytes,
		MaxResponseBytes: s.cfg.MaxHTTPResponseBytes,
		ShutdownGrace:    s.cfg.ShutdownGrace,
	}, httpgateway.LoopbackTarget(grpcAddr), s.log, s.api.Gateway...)
	if err != nil {
		_ = lis.Close()
		return nil, nil, err
	}
	return gw, lis, nil
}
