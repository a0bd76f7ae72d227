// Package httpgateway serves a service's gRPC API as HTTP/JSON for clients that
// cannot speak gRPC, with grpc-gateway handlers generated from the
// google.api.http annotations of proto/emailsender/v1.
//
// The gateway does not call the service implementation directly: it calls the
// service's own gRPC server over a client connection (in process, see
// Config.Dialer), so every HTTP
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
// grpcgateway-user-agent only from a trusted proxy (TRUSTED_PROXIES) or from
// the gateway itself: a service's gateway calls its gRPC server over an
// in-process connection (Config.Dialer, grpcserver.DialInProcess), which no
// network peer can pose as, so usage records name the HTTP client, not the
// gateway, and loopback is trusted for nothing.
//
// Before a request's body is read, Config.PreAuth checks its Authorization
// header (every path but /healthz and Config.PublicPaths): a request with
// bad credentials costs its headers only. Bodies are bounded
// (MaxBodyBytes), and so is the time to read them (ReadTimeout).
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
	"strings"
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

// Config configures a gateway. Its caller (pkg/apiserver) passes the limits
// and the grace from its service's configuration; New refuses zero values
// rather than keeping defaults of its own.
type Config struct {
	// MaxBodyBytes bounds a request body; a larger one is answered 413 with a
	// RESOURCE_EXHAUSTED status and never reaches gRPC.
	MaxBodyBytes int64
	// MaxResponseBytes bounds a gRPC answer the gateway accepts.
	MaxResponseBytes int
	// ShutdownGrace is how long in-flight requests get to finish on shutdown
	// before their connections are closed.
	ShutdownGrace time.Duration
	// Dialer, when set, connects to the gRPC server instead of dialing the
	// target (grpcserver.Server.DialInProcess).
	Dialer func(context.Context, string) (net.Conn, error)
	// PreAuth, when set, checks a request's credentials (its Authorization
	// header) before its body is read; its error, a gRPC status, is the
	// answer. Paths under /healthz and PublicPaths skip it.
	PreAuth func(*http.Request) error
	// PublicPaths are path prefixes served without PreAuth (endpoints with
	// their own authentication, such as signed webhooks).
	PublicPaths []string
	// Mounts are plain HTTP handlers served under their path prefix instead
	// of the gateway (the report's console): no PreAuth, no body limit, no
	// gRPC; they authenticate and bound requests themselves.
	Mounts []Mount
}

// Mount is an HTTP handler served under Prefix (which ends in "/"; a request
// for Prefix without its slash is redirected to it).
type Mount struct {
	Prefix  string
	Handler http.Handler
}

func (c Config) validate() error {
	switch {
	case c.MaxBodyBytes <= 0:
		return fmt.Errorf("httpgateway: MaxBodyBytes %d: want a positive size", c.MaxBodyBytes)
	case c.MaxResponseBytes <= 0:
		return fmt.Errorf("httpgateway: MaxResponseBytes %d: want a positive size", c.MaxResponseBytes)
	case c.ShutdownGrace <= 0:
		return fmt.Errorf("httpgateway: ShutdownGrace %s: want a positive duration", c.ShutdownGrace)
	}
	for _, m := range c.Mounts {
		if !strings.HasPrefix(m.Prefix, "/") || !strings.HasSuffix(m.Prefix, "/") || len(m.Prefix) < 3 || m.Handler == nil {
			return fmt.Errorf("httpgateway: mount %q: want a handler under a prefix /.../", m.Prefix)
		}
	}
	return nil
}

// The HTTP server's own bounds: protections against slow or oversized
// clients, not settings (no service has a variable for them).
const (
	// readHeaderTimeout bounds reading a request's headers.
	readHeaderTimeout = 10 * time.Second
	// readTimeout bounds reading a whole request, body included.
	readTimeout = time.Minute
	// writeTimeout bounds a request from the end of its headers to the end
	// of its answer.
	writeTimeout = 2 * time.Minute
	// idleTimeout closes idle keep-alive connections.
	idleTimeout = 2 * time.Minute
	// maxHeaderBytes bounds a request's headers.
	maxHeaderBytes = 64 << 10
)

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
// is dialed before the first request. It fails when a limit or the shutdown
// grace is not set.
func New(cfg Config, grpcTarget string, log *slog.Logger, register ...Register) (*Gateway, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(cfg.MaxResponseBytes)),
	}
	if cfg.Dialer != nil {
		opts = append(opts, grpc.WithContextDialer(cfg.Dialer))
	}
	conn, err := grpc.NewClient(grpcTarget, opts...)
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
	return &Gateway{cfg: cfg, log: log, conn: conn, handler: mount(cfg.Mounts, preAuth(cfg, limitBody(cfg.MaxBodyBytes, mux)))}, nil
}

// mount routes the requests under a mount's prefix to its handler, the rest
// to next.
func mount(mounts []Mount, next http.Handler) http.Handler {
	if len(mounts) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, m := range mounts {
			if strings.HasPrefix(r.URL.Path, m.Prefix) {
				m.Handler.ServeHTTP(w, r)
				return
			}
			if r.URL.Path == strings.TrimSuffix(m.Prefix, "/") && r.Method == http.MethodGet {
				http.Redirect(w, r, m.Prefix, http.StatusMovedPermanently)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
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
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
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

// InProcessTarget is the gRPC target to use with a Config.Dialer.
const InProcessTarget = "passthrough:///in-process"

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

// preAuth answers a request whose credentials cfg.PreAuth refuses before its
// body is read (and closes the connection, rather than drain the body).
func preAuth(cfg Config, next http.Handler) http.Handler {
	if cfg.PreAuth == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if public(cfg.PublicPaths, r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		if err := cfg.PreAuth(r); err != nil {
			st := status.Convert(err)
			w.Header().Set("Connection", "close")
			writeStatus(w, runtime.HTTPStatusFromCode(st.Code()), st)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func public(prefixes []string, path string) bool {
	if path == "/healthz" || strings.HasPrefix(path, "/healthz/") {
		return true
	}
	for _, p := range prefixes {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
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
