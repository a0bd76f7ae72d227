package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// DefaultTimeout bounds a call whose context has no deadline, unless
// WithDefaultTimeout says otherwise.
const DefaultTimeout = 30 * time.Second

// Client is a connection to Email Sender. It is safe for concurrent use; make
// one and share it. Close releases its connections.
type Client struct {
	conns   []*grpc.ClientConn
	send    v1.SendServiceClient
	account v1.AccountServiceClient
	report  v1.ReportServiceClient
	webhook v1.WebhookServiceClient
	tmpl    v1.TemplateServiceClient

	retry   RetryPolicy
	timeout time.Duration
	newKey  func() (string, error)
	waiter  statusWaiter
}

// Option configures New.
type Option func(*settings) error

type settings struct {
	creds        *bearer
	tls          *tls.Config
	insecure     bool
	keepalive    *keepalive.ClientParameters
	timeout      time.Duration
	retry        RetryPolicy
	reportTarget string
	userAgent    string
	dialOptions  []grpc.DialOption
	poll         pollSettings
}

// WithAPIKey authenticates every call with an account API key ("es_…").
func WithAPIKey(key string) Option {
	return func(s *settings) error {
		if key == "" {
			return errors.New("WithAPIKey: empty key")
		}
		s.creds = &bearer{ts: staticToken(key)}
		return nil
	}
}

// WithTokenSource authenticates every call with a token from ts (a Namirasoft
// Account JWT, for instance), asked for on each call: ts caches and refreshes.
func WithTokenSource(ts TokenSource) Option {
	return func(s *settings) error {
		if ts == nil {
			return errors.New("WithTokenSource: nil token source")
		}
		s.creds = &bearer{ts: ts}
		return nil
	}
}

// WithTLS uses TLS with cfg (nil: the system roots and the target's host
// name). TLS is the default; this option is for a custom CA or client
// certificates.
func WithTLS(cfg *tls.Config) Option {
	return func(s *settings) error {
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		s.tls, s.insecure = cfg, false
		return nil
	}
}

// WithInsecure connects in plaintext (development servers such as `make run`).
// Credentials are then sent unencrypted: never use it across a network.
func WithInsecure() Option {
	return func(s *settings) error {
		s.insecure, s.tls = true, nil
		return nil
	}
}

// WithKeepalive sends HTTP/2 pings on idle connections. The servers enforce
// gRPC's default policy (no pings more often than every 5 minutes, none
// without active calls), so p.Time below 5 minutes or PermitWithoutStream make
// the server close the connection.
func WithKeepalive(p keepalive.ClientParameters) Option {
	return func(s *settings) error {
		s.keepalive = &p
		return nil
	}
}

// WithDefaultTimeout bounds every call, retries included, whose context has
// no deadline (default 30 s; 0 leaves such calls unbounded). It does not bound
// the waiting of SendAndWait, only each call it makes.
func WithDefaultTimeout(d time.Duration) Option {
	return func(s *settings) error {
		if d < 0 {
			return fmt.Errorf("WithDefaultTimeout: negative %s", d)
		}
		s.timeout = d
		return nil
	}
}

// WithRetry replaces the retry policy (DefaultRetryPolicy otherwise).
// RetryPolicy{MaxAttempts: 1} turns retries off.
func WithRetry(p RetryPolicy) Option {
	return func(s *settings) error {
		if err := p.validate(); err != nil {
			return fmt.Errorf("WithRetry: %w", err)
		}
		s.retry = p
		return nil
	}
}

// WithReportTarget sends ReportService and WebhookService calls to target
// (the report service, e.g. "report.example.com:8082"); without it they go to
// New's target, which must then route every service (a gateway or load
// balancer).
func WithReportTarget(target string) Option {
	return func(s *settings) error {
		s.reportTarget = target
		return nil
	}
}

// WithUserAgent prefixes the gRPC user agent; the usage records
// (AccountService.ListUsage) show it.
func WithUserAgent(ua string) Option {
	return func(s *settings) error {
		s.userAgent = ua
		return nil
	}
}

// WithPollInterval sets how SendAndWait reads GetMessage while the report
// catches up with an event it saw on the watch, or polls a server without
// WatchEvents: first after min, then backing off to max (defaults 100 ms and
// 2 s).
func WithPollInterval(min, max time.Duration) Option {
	return func(s *settings) error {
		if min <= 0 || max < min {
			return fmt.Errorf("WithPollInterval: want 0 < min <= max, got %s, %s", min, max)
		}
		s.poll = pollSettings{min: min, max: max}
		return nil
	}
}

// WithDialOptions adds gRPC dial options (interceptors, stats handlers, …).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(s *settings) error {
		s.dialOptions = append(s.dialOptions, opts...)
		return nil
	}
}

// New makes a client of the Email Sender at target (the ingest service's gRPC
// address, "host:port" or any gRPC target such as "dns:///host:port"). It
// does not connect yet: connections are made on the first call and remade
// after failures, so New succeeds while the servers are down.
func New(ctx context.Context, target string, opts ...Option) (*Client, error) {
	_ = ctx // reserved: New dials lazily and needs no context today
	if target == "" {
		return nil, errors.New("client: empty target")
	}
	s := settings{timeout: DefaultTimeout, retry: DefaultRetryPolicy(), poll: defaultPoll}
	for _, o := range opts {
		if err := o(&s); err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
	}
	if s.creds == nil {
		return nil, errors.New("client: no credentials: use WithAPIKey or WithTokenSource")
	}
	var transport credentials.TransportCredentials
	if s.insecure {
		transport = insecure.NewCredentials()
	} else {
		cfg := s.tls
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		transport = credentials.NewTLS(cfg)
		s.creds.requireTLS = true
	}
	dial := []grpc.DialOption{grpc.WithTransportCredentials(transport), grpc.WithPerRPCCredentials(s.creds)}
	if s.keepalive != nil {
		dial = append(dial, grpc.WithKeepaliveParams(*s.keepalive))
	}
	if s.userAgent != "" {
		dial = append(dial, grpc.WithUserAgent(s.userAgent))
	}
	dial = append(dial, s.dialOptions...)

	c := &Client{retry: s.retry, timeout: s.timeout, newKey: newIdempotencyKey}
	ingest, err := grpc.NewClient(target, dial...)
	if err != nil {
		return nil, fmt.Errorf("client: %s: %w", target, err)
	}
	c.conns = append(c.conns, ingest)
	report := ingest
	if s.reportTarget != "" && s.reportTarget != target {
		if report, err = grpc.NewClient(s.reportTarget, dial...); err != nil {
			_ = ingest.Close()
			return nil, fmt.Errorf("client: %s: %w", s.reportTarget, err)
		}
		c.conns = append(c.conns, report)
	}
	c.send = v1.NewSendServiceClient(ingest)
	c.account = v1.NewAccountServiceClient(ingest)
	c.tmpl = v1.NewTemplateServiceClient(ingest)
	c.report = v1.NewReportServiceClient(report)
	c.webhook = v1.NewWebhookServiceClient(report)
	c.waiter = &watchWaiter{c: c, poll: &pollWaiter{get: c.GetMessage, poll: s.poll}}
	return c, nil
}

// Close closes the client's connections.
func (c *Client) Close() error {
	var errs []error
	for _, cc := range c.conns {
		errs = append(errs, cc.Close())
	}
	return errors.Join(errs...)
}
