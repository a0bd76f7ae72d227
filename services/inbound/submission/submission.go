// Package submission is SMTP message submission (RFC 6409) for applications
// that speak only SMTP: port 587 with STARTTLS (and 465 with implicit TLS),
// AUTH PLAIN or LOGIN with an API key as the password, and each message
// accepted through ingest's SendEmail, called over gRPC with the client's
// API key as the bearer token. Validation, sender verification,
// suppressions, the account's rate limit and daily quota, and usage records
// are therefore exactly SendEmail's; nothing of them is implemented here.
//
// # A message
//
// The message is parsed (pkg/client/eml, the CLI's --eml parser) into the
// API's message: From, To, Cc, Reply-To, Subject, X-* headers, text and HTML
// bodies, attachments and inline parts; Date, Message-ID and the MIME
// structure are the service's to write again. The envelope's recipients are
// the recipients (the ones not in To or Cc become bcc); the envelope sender
// must be the From address or a verified sender of the account. The
// Message-ID is the idempotency key (ingest keeps keys per account for
// 24 h), so a client that resubmits after a lost reply gets the same id.
// The reply carries the service's message id: "250 2.0.0 OK <id>"; a
// refusal is the SMTP status of ingest's gRPC status (replyOf).
//
// # The boundary
//
// AUTH is offered only over TLS (538 5.7.11 before STARTTLS), unless the
// development-only SUBMISSION_INSECURE_AUTH. Failed AUTHs are throttled per
// client address here (pkg/auth's throttle) before ingest is asked. Every
// command but EHLO, STARTTLS, AUTH, RSET, NOOP and QUIT needs AUTH (530
// 5.7.0). Messages (SIZE), recipients, connections and each read and write
// are bounded. The API key is never logged.
package submission

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"

	"github.com/emersion/go-smtp"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"golang.org/x/net/netutil"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/telemetry"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// Deps are what the listener uses; zero fields take their defaults.
type Deps struct {
	// Ingest is the connection to ingest; dialed from Config.IngestTarget
	// (and closed by Run) when nil.
	Ingest grpc.ClientConnInterface
	// Listener and TLSListener, when set, are where Run accepts instead of
	// Config.Addr and Config.TLSAddr (TLSListener gets the TLS handshake).
	Listener, TLSListener net.Listener
	// Telemetry defaults to telemetry.Nop(); Logger to a logger that discards.
	Telemetry *telemetry.Telemetry
	Logger    *slog.Logger
}

// Server is the submission listener.
type Server struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	tls      *tls.Config
	send     v1.SendServiceClient
	authn    auth.Authenticator
	metrics  *metrics
	closeRPC func() error
}

// New returns a listener; it starts nothing.
func New(cfg Config, deps Deps) (*Server, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if deps.Telemetry == nil {
		deps.Telemetry = telemetry.Nop()
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, deps: deps, log: deps.Logger, metrics: newMetrics(deps.Telemetry), closeRPC: func() error { return nil }}
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("submission: tls: %w", err)
		}
		s.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	conn := deps.Ingest
	if conn == nil {
		cc, err := dialIngest(cfg, deps.Telemetry)
		if err != nil {
			return nil, err
		}
		conn, s.closeRPC = cc, cc.Close
	}
	s.send = v1.NewSendServiceClient(conn)
	s.authn = auth.NewThrottle(&keyChecker{accounts: v1.NewAccountServiceClient(conn)}, cfg.Throttle, peerOf)
	return s, nil
}

func dialIngest(cfg Config, tel *telemetry.Telemetry) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if !cfg.IngestInsecure {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.IngestCAFile != "" {
			pem, err := os.ReadFile(cfg.IngestCAFile)
			if err != nil {
				return nil, fmt.Errorf("submission: ingest ca: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("submission: ingest ca: no certificate in %s", cfg.IngestCAFile)
			}
		}
		creds = credentials.NewTLS(tc)
	}
	cc, err := grpc.NewClient(cfg.IngestTarget, grpc.WithTransportCredentials(creds), grpc.WithStatsHandler(otelgrpc.NewClientHandler(
		otelgrpc.WithTracerProvider(tel.TracerProvider),
		otelgrpc.WithMeterProvider(tel.MeterProvider),
		otelgrpc.WithPropagators(tel.Propagator),
	)))
	if err != nil {
		return nil, fmt.Errorf("submission: ingest %s: %w", cfg.IngestTarget, err)
	}
	return cc, nil
}

// Run accepts submissions until ctx ends, then lets open sessions finish for
// ShutdownGrace and closes the rest.
func (s *Server) Run(ctx context.Context) error {
	defer func() { _ = s.closeRPC() }()
	plain, implicit := s.deps.Listener, s.deps.TLSListener
	var err error
	if plain == nil && s.cfg.Addr != "" {
		if plain, err = net.Listen("tcp", s.cfg.Addr); err != nil {
			return fmt.Errorf("submission: listen %s: %w", s.cfg.Addr, err)
		}
	}
	if implicit == nil && s.cfg.TLSAddr != "" {
		if implicit, err = net.Listen("tcp", s.cfg.TLSAddr); err != nil {
			return fmt.Errorf("submission: listen %s: %w", s.cfg.TLSAddr, err)
		}
	}
	if plain == nil && implicit == nil {
		return errors.New("submission: no listener (SUBMISSION_ADDR or SUBMISSION_TLS_ADDR)")
	}
	// A message being accepted when the signal comes is finished (within
	// CallTimeout and the grace), not cut off.
	base := context.WithoutCancel(ctx)
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		peer, _, err := net.SplitHostPort(c.Conn().RemoteAddr().String())
		if err != nil {
			peer = c.Conn().RemoteAddr().String()
		}
		return &session{srv: s, conn: c, ctx: base, peer: peer}, nil
	}))
	srv.Domain = s.cfg.Hostname
	srv.MaxMessageBytes = s.cfg.MaxMessageBytes
	srv.MaxRecipients = s.cfg.MaxRecipients
	srv.ReadTimeout, srv.WriteTimeout = s.cfg.Timeout, s.cfg.Timeout
	srv.EnableSMTPUTF8 = true
	srv.TLSConfig = s.tls
	// The session decides: AUTH before TLS is answered 538 5.7.11 there,
	// and its mechanisms are advertised only over TLS.
	srv.AllowInsecureAuth = true
	srv.ErrorLog = log.New(io.Discard, "", 0)

	g := new(errgroup.Group)
	serve := func(l net.Listener) {
		l = netutil.LimitListener(l, s.cfg.MaxConnections)
		g.Go(func() error {
			if err := srv.Serve(l); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
				return fmt.Errorf("submission: serve %s: %w", l.Addr(), err)
			}
			return nil
		})
	}
	if plain != nil {
		serve(plain)
		s.log.Info("smtp submission accepting (STARTTLS)", "addr", plain.Addr().String(), "ingest", s.cfg.IngestTarget)
	}
	if implicit != nil {
		serve(tls.NewListener(implicit, s.tls))
		s.log.Info("smtp submission accepting (implicit TLS)", "addr", implicit.Addr().String(), "ingest", s.cfg.IngestTarget)
	}
	errc := make(chan error, 1)
	go func() { errc <- g.Wait() }()
	select {
	case err := <-errc:
		_ = srv.Close()
		if err == nil {
			err = errors.New("listener closed")
		}
		return fmt.Errorf("submission: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(base, s.cfg.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
		s.log.Warn("submission sessions still open at the end of the grace; closing them", "error", err)
		_ = srv.Close()
	}
	<-errc
	return ctx.Err()
}

// submit accepts raw from env as SendEmail with key and returns the
// message id; its errors are SMTP replies or ingest's gRPC statuses.
func (s *Server) submit(ctx context.Context, key string, env envelope, raw []byte, senders *senderSet) (string, error) {
	req, err := request(env, raw, senders.has)
	if err != nil {
		return "", err
	}
	resp, err := s.send.SendEmail(outgoing(ctx, key), req)
	if err != nil {
		return "", err
	}
	return resp.GetMessageId(), nil
}

type peerKey struct{}

func withPeer(ctx context.Context, ip string) context.Context {
	return context.WithValue(ctx, peerKey{}, ip)
}

// peerOf is the client's IP address, which the throttle counts failures by.
func peerOf(ctx context.Context) string {
	ip, _ := ctx.Value(peerKey{}).(string)
	return ip
}

// outgoing carries key as the call's bearer token, and the client's address
// (which ingest believes when this service is one of its TRUSTED_PROXIES,
// for usage records and its own throttle).
func outgoing(ctx context.Context, key string) context.Context {
	md := metadata.Pairs("authorization", "Bearer "+key)
	if ip := peerOf(ctx); ip != "" {
		md.Set("x-forwarded-for", ip)
	}
	return metadata.NewOutgoingContext(ctx, md)
}

// keyChecker verifies an API key by asking ingest for the account's
// senders: ListSenders answers UNAUTHENTICATED for a bad key, the verified
// senders (which the envelope sender may be) for a key that may read, and
// PERMISSION_DENIED for a send-only key, which is still a valid key.
type keyChecker struct {
	accounts v1.AccountServiceClient
}

type authResultKey struct{}

// authResult receives the senders keyChecker found (the throttle between
// the session and keyChecker passes only the principal through).
type authResult struct{ senders *senderSet }

func (k *keyChecker) Authenticate(ctx context.Context, key string) (auth.Principal, error) {
	resp, err := k.accounts.ListSenders(outgoing(ctx, key), &v1.ListSendersRequest{})
	res, _ := ctx.Value(authResultKey{}).(*authResult)
	switch status.Code(err) {
	case codes.OK:
		if res != nil {
			res.senders = newSenderSet(resp.GetSenders())
		}
		return auth.Principal{}, nil
	case codes.PermissionDenied:
		return auth.Principal{}, nil
	case codes.Unauthenticated:
		return auth.Principal{}, auth.ErrUnauthenticated
	default:
		return auth.Principal{}, fmt.Errorf("list senders: %w", err)
	}
}
