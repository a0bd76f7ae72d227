// Package httpgateway serves a service's gRPC API as HTTP/JSON for clients that
// cannot speak gRPC, with grpc-gateway handlers generated from the
// google.api.http annotations of proto/emailsender/v1.
//
// The gateway does not call the service implementation directly: it calls the
// service's own gRPC server over a loopback client connection, so every HTTP
// request passes the same interceptors (authentication, scopes, rate limits,
// usage records, tracing) as a gRPC call. What crosses from HTTP to gRPC:
//
//   - Authorization → the "authorization" metadata (grpc-gateway does this for
//     every request; nothing else of the request's headers is forwarded blindly);
//   - User-Agent → "grpcgateway-user-agent" (gRPC's own user-agent is the
//     gateway's client, grpc-go);
//   - the HTTP client's address → the last entry of "x-forwarded-for" (the
//     gateway appends the TCP peer to whatever X-Forwarded-For the client sent);
//   - traceparent and tracestate, so a W3C trace started by the client goes on.
//
// The usage recorder (pkg/usage) believes x-forwarded-for and
// grpcgateway-user-agent only from a trusted proxy (TRUSTED_PROXIES); a
// service that runs the gateway trusts its loopback connection
// (LoopbackCIDRs), so usage records name the HTTP client, not the gateway.
//
// Errors are the standard google.rpc.Status JSON body ({"code", "message",
// "details"} with BadRequest field violations) under the HTTP status of the gRPC
// code (runtime.HTTPStatusFromCode), except that RESOURCE_EXHAUSTED with a
// BadRequest detail (a message over a size limit) and a body over
// Config.MaxBodyBytes are 413 rather than 429, which is left to rate limits.
package httpgateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"golang.org/x/sync/errgroup"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// Metadata keys the gateway sets besides "authorization".
const (
	// MDUserAgent carries the HTTP client's User-Agent.
	MDUserAgent = runtime.MetadataPrefix + "user-agent"
	// MDForwardedFor is the proxy chain; its last entry is the HTTP client's
	// address as the gateway saw it.
	MDForwardedFor = "x-forwarded-for"
)

// Config configures a gateway.
type Config struct {
	// MaxBodyBytes bounds a request body; a larger one is answered 413 with a
	// RESOURCE_EXHAUSTED status and never reaches gRPC. Default 1 MiB.
	MaxBodyBytes int64
	// MaxResponseBytes bounds a gRPC answer the gateway accepts. Default 64 MiB.
	MaxResponseBytes int
	// ShutdownGrace is how long in-flight requests get to finish on shutdown
	// before their connections are closed. Default 10s.
	ShutdownGrace time.Duration
	// ReadHeaderTimeout bounds reading a request's headers. Default 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections. Default 2m.
	IdleTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = 64 << 20
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 10 * time.Second
	}
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = 10 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 2 * time.Minute
	}
	return c
}

// Register adds one service's handlers to the mux; the generated
// emailsenderv1.Register<Service>Handler functions have this signature.
type Register func(ctx context.Context, mux *runtime.ServeMux, conn *grpc.ClientConn) error

// Gateway is an HTTP server whose handlers call a gRPC server.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	conn    *grpc.ClientConn
	handler http.Handler
}

// New builds a gateway that calls the gRPC server at grpcTarget (see
// LoopbackTarget) with the handlers of register. It connects lazily: nothing
// is dialed before the first request.
func New(cfg Config, grpcTarget string, log *slog.Logger, register ...Register) (*Gateway, error) {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	conn, err := grpc.NewClient(grpcTarget,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(cfg.MaxResponseBytes)),
	)
	if err != nil {
		return nil, fmt.Errorf("httpgateway: grpc client for %s: %w", grpcTarget, err)
	}
	mux := runtime.NewServeMux(
		runtime.WithIncomingHeaderMatcher(incomingHeader),
		runtime.WithOutgoingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
			// Unknown fields are an error (400), not silently dropped: a
			// misspelt "textBdy" must not send an empty mail.
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}),
		runtime.WithErrorHandler(errorHandler),
		runtime.WithHealthzEndpoint(healthpb.NewHealthClient(conn)),
	)
	for _, r := range register {
		if err := r(context.Background(), mux, conn); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("httpgateway: register handlers: %w", err)
		}
	}
	return &Gateway{cfg: cfg, log: log, conn: conn, handler: limitBody(cfg.MaxBodyBytes, mux)}, nil
}

// Handler is the gateway's HTTP handler (Serve serves it).
func (g *Gateway) Handler() http.Handler { return g.handler }

// Serve serves HTTP on lis until ctx ends, then shuts down: the listener
// closes, in-flight requests get up to ShutdownGrace to finish (their gRPC
// calls still run, so the gRPC server must stop after Serve returns), and the
// gRPC client connection is closed.
func (g *Gateway) Serve(ctx context.Context, lis net.Listener) error {
	srv := &http.Server{
		Handler:           g.handler,
		ReadHeaderTimeout: g.cfg.ReadHeaderTimeout,
		IdleTimeout:       g.cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	defer func() { _ = g.conn.Close() }()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	g.log.InfoContext(ctx, "http gateway serving", "addr", lis.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("http serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		g.log.Warn("http graceful shutdown timed out; closing connections", "error", err)
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http serve: %w", err)
	}
	return nil
}

// LoopbackTarget is the gRPC target for a server listening on addr, reached
// over loopback: an unspecified host (":8081", "0.0.0.0", "::") becomes
// 127.0.0.1.
func LoopbackTarget(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "passthrough:///" + addr.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "passthrough:///" + net.JoinHostPort(host, port)
}

// LoopbackCIDRs are the addresses the in-process gateway calls gRPC from; a
// service serving the gateway adds them to the usage recorder's trusted proxies.
func LoopbackCIDRs() []string { return []string{"127.0.0.0/8", "::1/128"} }

// incomingHeader picks the HTTP headers that become gRPC metadata. Only these:
// the rest (cookies, arbitrary Grpc-Metadata-* headers) could otherwise set
// metadata a server trusts. Authorization and X-Forwarded-For are added by
// grpc-gateway itself.
func incomingHeader(key string) (string, bool) {
	switch textproto.CanonicalMIMEHeaderKey(key) {
	case "User-Agent":
		return MDUserAgent, true
	case "Traceparent":
		return "traceparent", true
	case "Tracestate":
		return "tracestate", true
	}
	return "", false
}

type bodyLimitKey struct{}

// limitBody bounds request bodies: one with a larger Content-Length is
// refused at once; one that grows past max while being read (chunked) fails
// the decode, and errorHandler turns that into 413.
func limitBody(max int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > max {
			writeStatus(w, http.StatusRequestEntityTooLarge, tooLarge(max))
			return
		}
		exceeded := new(atomic.Bool)
		r.Body = &limitedBody{ReadCloser: http.MaxBytesReader(w, r.Body, max), exceeded: exceeded}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), bodyLimitKey{}, bodyLimit{max, exceeded})))
	})
}

type bodyLimit struct {
	max      int64
	exceeded *atomic.Bool
}

type limitedBody struct {
	io.ReadCloser
	exceeded *atomic.Bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		b.exceeded.Store(true)
	}
	return n, err
}

func tooLarge(max int64) *status.Status {
	return status.Newf(codes.ResourceExhausted, "request body exceeds %d bytes", max)
}

// errorHandler is runtime.DefaultHTTPErrorHandler (google.rpc.Status JSON)
// with 413 for bodies and messages over a size limit.
func errorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if l, ok := r.Context().Value(bodyLimitKey{}).(bodyLimit); ok && l.exceeded.Load() {
		err = tooLarge(l.max).Err()
		w = statusWriter{ResponseWriter: w, code: http.StatusRequestEntityTooLarge}
	} else if st, ok := status.FromError(err); ok && st.Code() == codes.ResourceExhausted && hasBadRequest(st) {
		w = statusWriter{ResponseWriter: w, code: http.StatusRequestEntityTooLarge}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

func hasBadRequest(st *status.Status) bool {
	for _, d := range st.Details() {
		if _, ok := d.(*errdetails.BadRequest); ok {
			return true
		}
	}
	return false
}

// statusWriter replaces the HTTP status the default error handler writes.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w statusWriter) WriteHeader(int) { w.ResponseWriter.WriteHeader(w.code) }

// Unwrap lets http.ResponseController reach the underlying writer.
func (w statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// writeStatus answers with st as google.rpc.Status JSON before any gRPC call.
func writeStatus(w http.ResponseWriter, code int, st *status.Status) {
	b, err := protojson.Marshal(st.Proto())
	if err != nil {
		http.Error(w, st.Message(), code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// ServeWithGRPC serves gw on lis and, with serveGRPC, the gRPC server gw
// calls, until ctx ends or either fails. Then the HTTP server shuts down first
// (its in-flight requests are gRPC calls that must be able to finish) and the
// gRPC server after it. A nil gw serves only gRPC.
func ServeWithGRPC(ctx context.Context, gw *Gateway, lis net.Listener, serveGRPC func(context.Context) error) error {
	if gw == nil {
		return serveGRPC(ctx)
	}
	g, gctx := errgroup.WithContext(ctx)
	grpcCtx, stopGRPC := context.WithCancel(context.WithoutCancel(gctx))
	g.Go(func() error {
		defer stopGRPC()
		return gw.Serve(gctx, lis)
	})
	g.Go(func() error { return serveGRPC(grpcCtx) })
	return g.Wait()
}
