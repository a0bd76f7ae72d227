// Package inbound is the inbound SMTP service: the MX of the operator's
// bounce domain. The SMTP provider sends every message with a signed
// envelope sender b+<token>@<bounce domain> (pkg/verp); what comes back to
// it, delivery status notifications (RFC 3464) and abuse reports (ARF, RFC
// 5965), becomes BOUNCED and COMPLAINED delivery events on the events
// stream, which the report applies like the workers' events, and
// suppressions under the same rule as SES feedback (pkg/suppression).
//
// # The boundary
//
// Anyone on the internet can connect. The service accepts RCPT TO only for
// addresses of the bounce domain, or of an account's verified bounce domain
// (pkg/bouncedomain: kept in memory, reloaded on ingest's announcement and
// every INBOUND_BOUNCE_DOMAINS_REFRESH), whose HMAC verifies (550 5.1.1 for
// every other); at an account's domain the HMAC also binds the account, and
// the message must be that account's. A report can only be about the
// message its address was made for,
// and, when the address was bound to the one recipient of its envelope
// (the usual case), only about that recipient; a report about a message
// with several recipients counts only for the ones it names that are the
// message's. Nothing else of a report is trusted: the message and account
// come from the address, never from the report's text. Mail is bounded
// (INBOUND_MAX_MESSAGE_BYTES, of which INBOUND_PARSE_BYTES are kept),
// connections too (INBOUND_MAX_CONNECTIONS), and auto-replies and other
// mail to a valid address are accepted and dropped.
//
// # Accept, then record
//
// At the end of DATA the mail (its first INBOUND_PARSE_BYTES) and the
// transaction's verified bounce addresses are made durable with one
// publish on the EMAIL_INBOUND work stream (accept), and only then is the
// sender told 250; a publish that fails answers 451 4.3.0 and the sending
// MTA retries later. The SMTP reply waits for one JetStream
// acknowledgement, not for the database. A durable pull consumer
// (consume, shared by the replicas) records that mail in batches: one
// message lookup, one suppression transaction, the events published
// together, and the batch's mail acknowledged after. Database or stream
// trouble has the mail delivered again after INBOUND_RETRY_DELAY; a
// process that dies while recording has it delivered again after
// INBOUND_ACK_WAIT. The IMAP poller records through the same code
// (Record, recordAll), synchronously.
//
// # Idempotence
//
// A transaction the sender retries (it saw no 250) has the same
// Nats-Msg-Id (a digest of its addresses and mail): JetStream stores it
// once. Event ids derive from the message, the recipient and the SHA-256
// of the report's machine-readable part, and the events' time is when the
// mail was accepted, so a report recorded twice (a redelivery after a
// crash, the same report sent again later) publishes the same events,
// which the stream and the report keep once; soft bounces count once per
// message (pkg/suppression).
package inbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/netutil"

	"github.com/namirasoft/email-sender/pkg/bouncedomain"
	"github.com/namirasoft/email-sender/pkg/bouncereport"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/suppression"
	"github.com/namirasoft/email-sender/pkg/telemetry"
	"github.com/namirasoft/email-sender/pkg/verp"
)

// Deps are the clients the service uses.
type Deps struct {
	Pool      *pgxpool.Pool
	JetStream jetstream.JetStream
	// Telemetry defaults to telemetry.Nop(); Logger to a logger that discards.
	Telemetry *telemetry.Telemetry
	Logger    *slog.Logger
	// Listener, when set, is where Run accepts SMTP instead of Config.SMTPAddr.
	Listener net.Listener
	// Now defaults to time.Now.
	Now func() time.Time
	// Hooks are for tests.
	Hooks Hooks
}

// Service is the inbound SMTP service.
type Service struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	tracer   trace.Tracer
	signer   *verp.Signer
	domains  *bouncedomain.Directory
	store    *bouncereport.Store
	recorder *bouncereport.Recorder
	metrics  *metrics
	tls      *tls.Config
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
	signer, err := cfg.Bounce.Signer()
	if err != nil {
		return nil, fmt.Errorf("inbound: %w", err)
	}
	if deps.Pool == nil || deps.JetStream == nil {
		return nil, errors.New("inbound: missing dependencies: pool and jetstream")
	}
	if deps.Telemetry == nil {
		deps.Telemetry = telemetry.Nop()
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	s := &Service{
		cfg:      cfg,
		deps:     deps,
		log:      deps.Logger,
		tracer:   deps.Telemetry.Tracer("github.com/namirasoft/email-sender/services/inbound"),
		signer:   signer,
		domains:  bouncedomain.NewDirectory(deps.Pool, deps.Logger),
		store:    bouncereport.NewStore(deps.Pool),
		recorder: bouncereport.NewRecorder(suppression.New(deps.Pool, cfg.Suppression), bouncereport.NewStreamPublisher(deps.JetStream, deps.Telemetry)),
		metrics:  newMetrics(deps.Telemetry),
	}
	// An accepted mail is one message on EMAIL_INBOUND.
	if nc := deps.JetStream.Conn(); nc != nil && nc.MaxPayload() > 0 && cfg.ParseBytes+headerRoom > nc.MaxPayload() {
		return nil, fmt.Errorf("inbound config: parse bytes %d: the NATS server takes messages up to %d bytes (%d with headers)",
			cfg.ParseBytes, nc.MaxPayload(), cfg.ParseBytes+headerRoom)
	}
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("inbound: tls: %w", err)
		}
		s.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return s, nil
}

// Run accepts mail and records what it accepted until ctx ends, then lets
// open sessions finish for ShutdownGrace and closes the rest, and then
// records what was accepted and fetched before it returns.
func (s *Service) Run(ctx context.Context) error {
	lis := s.deps.Listener
	if lis == nil {
		var err error
		if lis, err = net.Listen("tcp", s.cfg.SMTPAddr); err != nil {
			return fmt.Errorf("inbound: listen %s: %w", s.cfg.SMTPAddr, err)
		}
	}
	lis = netutil.LimitListener(lis, s.cfg.MaxConnections)
	// The accounts' bounce domains are loaded before the first RCPT, and
	// kept fresh while the service runs.
	if err := s.domains.Refresh(ctx); err != nil {
		_ = lis.Close()
		return fmt.Errorf("inbound: %w", err)
	}
	dctx, stopDomains := context.WithCancel(ctx)
	domainsDone := make(chan error, 1)
	go func() { domainsDone <- s.domains.Run(dctx, s.deps.JetStream.Conn(), s.cfg.DomainsRefresh) }()
	defer func() {
		stopDomains()
		if err := <-domainsDone; err != nil {
			s.log.Warn("bounce domain directory", "error", err)
		}
	}()
	// Sessions store mail with a context that shutdown does not cancel: a
	// mail being stored when the signal comes is answered (within
	// ProcessTimeout and the grace), not cut off. The consumer stops after
	// the sessions, so it records what they accepted last.
	base := context.WithoutCancel(ctx)
	cctx, stopConsumer := context.WithCancel(base)
	defer stopConsumer()
	consumed := make(chan error, 1)
	go func() { consumed <- s.consume(cctx) }()
	// The backlog of EMAIL_INBOUND (emailsender_consumer_pending...).
	stats := telemetry.NewConsumerStats(s.deps.Telemetry, s.deps.JetStream, 0, s.log,
		telemetry.ConsumerRef{Stream: queue.InboundStream, Consumer: Consumer})
	statsDone := make(chan error, 1)
	go func() { statsDone <- stats.Run(cctx) }()
	defer func() {
		stopConsumer()
		if err := <-statsDone; err != nil {
			s.log.Warn("consumer gauges", "error", err)
		}
	}()

	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{svc: s, ctx: base, remote: c.Conn().RemoteAddr().String()}, nil
	}))
	srv.Domain = s.cfg.Hostname
	srv.MaxMessageBytes = s.cfg.MaxMessageBytes
	srv.MaxRecipients = s.cfg.MaxRecipients
	srv.ReadTimeout, srv.WriteTimeout = s.cfg.Timeout, s.cfg.Timeout
	srv.EnableSMTPUTF8 = true
	srv.TLSConfig = s.tls
	srv.ErrorLog = log.New(io.Discard, "", 0)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	s.log.Info("inbound smtp accepting", "addr", lis.Addr().String(), "bounce_domain", s.signer.Domain(), "account_bounce_domains", s.domains.Len())
	var failed error
	select {
	case err := <-served:
		served <- err
		failed = fmt.Errorf("inbound: serve: %w", err)
	case err := <-consumed:
		consumed <- err
		failed = fmt.Errorf("inbound: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(base, s.cfg.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
		s.log.Warn("inbound smtp sessions still open at the end of the grace; closing them", "error", err)
		_ = srv.Close()
	}
	<-served
	stopConsumer()
	if err := <-consumed; err != nil && failed == nil {
		failed = fmt.Errorf("inbound: %w", err)
	}
	if failed != nil {
		return failed
	}
	return ctx.Err()
}

// Signer is the service's bounce address signer (BOUNCE_DOMAIN, BOUNCE_KEY).
func (s *Service) Signer() *verp.Signer { return s.signer }

// ParseAddress verifies a bounce address: at the operator's bounce domain,
// or at an account's verified one (for a message of that account: the
// address's mac binds it).
func (s *Service) ParseAddress(addr string) (verp.Token, error) {
	return s.signer.ParseOwned(addr, s.domains.Owner)
}
