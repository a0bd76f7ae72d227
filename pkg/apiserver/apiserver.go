// Package apiserver is the skeleton every service that serves the public API
// (ingest, report) runs: the gRPC server (pkg/grpcserver: telemetry,
// recovery, health, reflection), the HTTP/JSON gateway beside it
// (pkg/httpgateway, calling gRPC in process), TLS on both when configured
// (mutual TLS with a client CA), the checks made before a request is read
// (credentials on metadata or headers, bounded bytes in flight), the gate every call passes, unary
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
//  5. Run returns, and the caller closes NATS and PostgreSQL (infra.Infra).
package apiserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/namirasoft/email-sender/pkg/apigate"
	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/grpcserver"
	"github.com/namirasoft/email-sender/pkg/httpgateway"
	"github.com/namirasoft/email-sender/pkg/infra"
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
	// MaxConcurrentStreams bounds the gRPC calls in flight on one connection
	// (0: unbounded).
	MaxConcurrentStreams uint32
	// StreamWorkers are the goroutines kept to serve calls
	// (grpcserver.Config.StreamWorkers; 0: a goroutine per call).
	StreamWorkers uint32
	// UnverifiedInflightBytes bounds the gRPC request bytes of calls whose
	// credentials are not verified yet (each counted at MaxRecvMsgSize) that
	// may be read at once; 0: no bound. Calls without well-formed
	// credentials are refused before their request is read either way.
	UnverifiedInflightBytes int64
	// ShutdownGrace is how long in-flight calls (gRPC and HTTP) get to finish.
	ShutdownGrace time.Duration
	// HTTPAddr is where the HTTP/JSON gateway is served unless
	// Deps.HTTPListener is given; "" or "off" serves none.
	HTTPAddr string
	// MaxHTTPBodyBytes and MaxHTTPResponseBytes bound the gateway's requests
	// and the gRPC answers it relays.
	MaxHTTPBodyBytes     int64
	MaxHTTPResponseBytes int
	// TLS, when its files are set, makes gRPC and the gateway serve TLS
	// (mutual TLS with a client CA); the files are read once, at start.
	TLS TLSFiles
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
	// PublicPaths are HTTP path prefixes served without an Authorization
	// header (handlers with their own authentication, such as signed
	// webhooks); every other HTTP request is authenticated before its body
	// is read.
	PublicPaths []string
	// Mounts are plain HTTP handlers served on the HTTP listener under their
	// prefixes, beside the gateway (httpgateway.Mount).
	Mounts []httpgateway.Mount
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
	tls  *tls.Config
}

// New builds the server; it listens on nothing until Run.
func New(cfg Config, deps Deps, api API) (*Server, error) {
	if deps.Pool == nil || deps.Keys == nil || api.Register == nil {
		return nil, errors.New("apiserver: Pool, Keys and API.Register are required")
	}
	if cfg.ShutdownGrace <= 0 {
		return nil, fmt.Errorf("apiserver: shutdown grace %s: want a positive duration", cfg.ShutdownGrace)
	}
	if HTTPEnabled(cfg.HTTPAddr, deps.HTTPListener) && (cfg.MaxHTTPBodyBytes <= 0 || cfg.MaxHTTPResponseBytes <= 0) {
		return nil, fmt.Errorf("apiserver: HTTP limits %d/%d: want positive sizes", cfg.MaxHTTPBodyBytes, cfg.MaxHTTPResponseBytes)
	}
	tlsCfg, err := cfg.TLS.serverTLS()
	if err != nil {
		return nil, fmt.Errorf("apiserver: %w", err)
	}
	if deps.Telemetry == nil {
		deps.Telemetry = telemetry.Nop()
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	// The gateway calls gRPC over an in-process connection, which the usage
	// recorder knows (grpcserver.InProcess): loopback is trusted for nothing.
	gate, err := apigate.New(cfg.API, deps.Pool, deps.Keys, deps.Logger)
	if err != nil {
		return nil, fmt.Errorf("apiserver: %w", err)
	}
	adm := newAdmission(deps.KeyStore, cfg.UnverifiedInflightBytes, cfg.MaxRecvMsgSize, gate.Recorder.NoteUnauthenticated)
	gs := grpcserver.New(grpcserver.Config{
		MaxRecvMsgSize:       cfg.MaxRecvMsgSize,
		ShutdownGrace:        cfg.ShutdownGrace,
		MaxConcurrentStreams: cfg.MaxConcurrentStreams,
		StreamWorkers:        cfg.StreamWorkers,
		TLS:                  tlsCfg,
		Admit:                adm.tap,
	}, deps.Telemetry, deps.Logger, append([]grpc.UnaryServerInterceptor{adm.readInterceptor()}, append(gate.Interceptors(api.Scopes, api.Sends), api.Interceptors...)...)...)
	api.Register(gs.GRPC)
	return &Server{cfg: cfg, deps: deps, log: deps.Logger, gate: gate, grpc: gs, api: api, tls: tlsCfg}, nil
}

// Run serves until ctx ends or a task fails, then shuts down in the order the
// package documents.
func (s *Server) Run(ctx context.Context, h Hooks) error {
	lis, err := infra.Listener(s.deps.Listener, s.cfg.GRPCAddr)
	if err != nil {
		return err
	}
	gw, httpLis, err := s.gateway()
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

// gateway builds the HTTP/JSON gateway calling the gRPC server in process,
// and its listener; nil when HTTP is off.
func (s *Server) gateway() (*httpgateway.Gateway, net.Listener, error) {
	if !HTTPEnabled(s.cfg.HTTPAddr, s.deps.HTTPListener) {
		return nil, nil, nil
	}
	lis, err := infra.Listener(s.deps.HTTPListener, s.cfg.HTTPAddr)
	if err != nil {
		return nil, nil, err
	}
	if s.tls != nil {
		c := s.tls.Clone()
		c.NextProtos = []string{"http/1.1"}
		lis = tls.NewListener(lis, c)
	}
	gw, err := httpgateway.New(httpgateway.Config{
		MaxBodyBytes:     s.cfg.MaxHTTPBodyBytes,
		MaxResponseBytes: s.cfg.MaxHTTPResponseBytes,
		ShutdownGrace:    s.cfg.ShutdownGrace,
		Dialer:           s.grpc.DialInProcess,
		PreAuth:          httpPreAuth(s.gate.Auth),
		PublicPaths:      s.api.PublicPaths,
		Mounts:           s.api.Mounts,
	}, httpgateway.InProcessTarget, s.log, s.api.Gateway...)
	if err != nil {
		_ = lis.Close()
		return nil, nil, err
	}
	return gw, lis, nil
}
