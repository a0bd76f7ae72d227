package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"

	"github.com/namirasoft/email-sender/pkg/accountstate"
	"github.com/namirasoft/email-sender/pkg/apigate"
	"github.com/namirasoft/email-sender/pkg/apiserver"
	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/httpgateway"
	"github.com/namirasoft/email-sender/pkg/partition"
	"github.com/namirasoft/email-sender/pkg/provider/kinds"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/telemetry"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest/account"
	"github.com/namirasoft/email-sender/services/ingest/outbox"
	"github.com/namirasoft/email-sender/services/ingest/send"
	"github.com/namirasoft/email-sender/services/ingest/store"
	"github.com/namirasoft/email-sender/services/ingest/templates"
)

// Config is the ingest service's configuration, loaded with envconfig.Load.
// Zero values (when built in Go) take the same defaults as the environment
// (WithDefaults); the sub-packages' configs it holds (Send, Relay, Deleter,
// Account) carry their variables' tags themselves, so each default is
// written once.
type Config struct {
	GRPCAddr string `env:"INGEST_GRPC_ADDR" default:":8081" help:"gRPC listen address"`
	// GRPCMaxRecvBytes bounds one request (a SendBatch carries many
	// messages); 0 derives it from MAX_MESSAGE_BYTES and MAX_BATCH
	// (DefaultMaxRecvBytes).
	GRPCMaxRecvBytes int           `env:"INGEST_GRPC_MAX_RECV_BYTES" help:"largest gRPC request, bytes (0 or unset: MAX_MESSAGE_BYTES + 64 KiB + 1 KiB per MAX_BATCH message)"`
	ShutdownGrace    time.Duration `env:"INGEST_SHUTDOWN_GRACE" default:"15s" help:"time in-flight calls get to finish on shutdown"`
	// GRPCMaxConcurrentStreams bounds the calls in flight on one connection.
	GRPCMaxConcurrentStreams uint32 `env:"INGEST_GRPC_MAX_CONCURRENT_STREAMS" default:"100" help:"gRPC calls in flight per connection"`
	// GRPCStreamWorkers are the goroutines kept to serve gRPC calls: a call
	// on one of them does not grow a new goroutine's stack on its way to the
	// handler (4% of ingest's CPU at 64-256 clients).
	GRPCStreamWorkers uint32 `env:"INGEST_GRPC_STREAM_WORKERS" default:"256" help:"goroutines kept to serve gRPC calls (calls beyond them get one of their own)"`
	// UnverifiedInflightBytes, when set, bounds the request bytes being read
	// of calls whose credentials are not verified yet (an API key the cache
	// does not know, a token), each counted at the largest request: what
	// made-up but well-formed keys can make ingest hold. Calls over it are
	// refused (RESOURCE_EXHAUSTED), so it is off by default: with the key
	// cache off or many token callers it limits legitimate concurrency too.
	UnverifiedInflightBytes int64 `env:"INGEST_UNVERIFIED_INFLIGHT_BYTES" help:"when set, request bytes of gRPC calls with not yet verified credentials read at once (each counted at INGEST_GRPC_MAX_RECV_BYTES); more are refused"`
	// TLS: gRPC and HTTP serve TLS with a certificate; with a client CA every
	// client must present a certificate it issued (internal callers).
	TLSCertFile     string `env:"INGEST_TLS_CERT_FILE" help:"PEM certificate chain; with INGEST_TLS_KEY_FILE gRPC and HTTP serve TLS"`
	TLSKeyFile      string `env:"INGEST_TLS_KEY_FILE" help:"PEM private key of INGEST_TLS_CERT_FILE"`
	TLSClientCAFile string `env:"INGEST_TLS_CLIENT_CA_FILE" help:"PEM CA certificates; when set, gRPC and HTTP clients must present a certificate they issued (mutual TLS)"`
	// HTTPAddr is where Run serves the HTTP/JSON API (SendService and
	// AccountService, pkg/httpgateway); "off" disables it. A Config built in
	// Go leaves it empty: no HTTP unless Deps.HTTPListener is set.
	HTTPAddr string `env:"INGEST_HTTP_ADDR" default:":8091" help:"HTTP/JSON listen address (grpc-gateway; off disables)"`
	// MetricsAddr is where the ingest command serves /metrics (Prometheus).
	MetricsAddr string `env:"INGEST_METRICS_ADDR" default:":9081" help:"HTTP listen address of /metrics (Prometheus; off disables)"`

	// Send is the SendService's: the validation limits (MAX_MESSAGE_BYTES…
	// MAX_TAGS), MAX_BATCH, the publish timeout, the lookup cache (a
	// negative INGEST_LOOKUP_CACHE_TTL disables it) and group commit.
	Send send.Config

	AuthCacheTTL time.Duration `env:"INGEST_AUTH_CACHE_TTL" default:"10s" help:"API key lookup cache (revocations still apply at once on every replica)"`

	// Relay publishes the outbox rows calls left behind (OUTBOX_*); Deleter
	// removes the rows calls published themselves (OUTBOX_DELETE_*). A
	// negative Relay.Grace means none (tests).
	Relay   outbox.RelayConfig
	Deleter outbox.DeleterConfig

	// MasterKeys seal provider secrets ("kid:base64,kid2:base64"); needed by
	// `admin bootstrap` for smtp.
	MasterKeys  string `env:"MASTER_KEYS" help:"secretbox master keys, kid:base64 comma separated"`
	MasterKeyID string `env:"MASTER_KEY_ID" help:"master key that seals new secrets (default: first)"`

	// RequireVerifiedSenders refuses a from address that is not a verified
	// sender of the account; nil (a Config built in Go) means true.
	RequireVerifiedSenders *bool `env:"REQUIRE_VERIFIED_SENDERS" default:"true" help:"refuse sending from unverified sender addresses"`
	// Account is the AccountService's: the From of sender verification mails
	// (VERIFICATION_FROM), the codes' lifetime and the VerifyProvider timeout.
	Account account.Config

	// RetentionPeriod is how long message content (bodies, attachments) is
	// kept; MetadataRetention how long the rest of a message (status,
	// recipients, events) is. Both are kept until their partition expires
	// (Partitions), at most one PARTITION_PERIOD longer.
	RetentionPeriod   time.Duration `env:"RETENTION_PERIOD" default:"720h" help:"message bodies and attachments are dropped after this"`
	MetadataRetention time.Duration `env:"METADATA_RETENTION" default:"2160h" help:"messages' status, recipients and events are dropped after this (at least RETENTION_PERIOD)"`
	RetentionInterval time.Duration `env:"RETENTION_INTERVAL" default:"10m" help:"how often partitions are made ahead and expired ones dropped"`
	// Partitions sizes the time partitions of the tables that grow
	// (PARTITION_*).
	Partitions partition.Config

	// FinalSweepAfter is when a deleted or terminated account's final sweep
	// runs: after the longest send (WORKER_SEND_TIMEOUT) and some.
	FinalSweepAfter time.Duration `env:"INGEST_FINAL_SWEEP_AFTER" default:"3m" help:"final sweep of a deleted account after this (longer than WORKER_SEND_TIMEOUT)"`
	// OperatorAddr serves the OperatorService (operator tokens only); it is
	// off while OperatorTokens is empty.
	OperatorAddr   string `env:"INGEST_OPERATOR_ADDR" default:"127.0.0.1:8093" help:"OperatorService listen address (off disables; needs OPERATOR_TOKEN_SHA256)"`
	OperatorTokens string `env:"OPERATOR_TOKEN_SHA256" help:"operator tokens: name:sha256hex, comma separated (the name is the audited actor)"`

	Postgres envconfig.Postgres
	NATS     envconfig.NATS
	Log      envconfig.Log
	Metrics  envconfig.Metrics
	// API is what every call passes: API keys and Namirasoft Account tokens,
	// per-account limits, usage records (shared with report).
	API apigate.Config
	// Outbound is where VerifyProvider and AddSender may connect on a
	// tenant's behalf (OUTBOUND_ALLOW_NETS; unset: the public internet only)
	// and the operator's SES and Gmail endpoints (shared with the worker).
	Outbound kinds.Config
}

// WithDefaults fills unset fields with the env tags' defaults (the one
// source of them).
func (c Config) WithDefaults() (Config, error) {
	if err := envconfig.FillDefaults(&c, "GRPCAddr", "ShutdownGrace", "GRPCMaxConcurrentStreams", "GRPCStreamWorkers", "AuthCacheTTL", "RequireVerifiedSenders", "RetentionPeriod", "MetadataRetention", "RetentionInterval", "FinalSweepAfter"); err != nil {
		return c, err
	}
	c.Send = c.Send.WithDefaults()
	c.Account = c.Account.WithDefaults()
	if c.GRPCMaxRecvBytes == 0 {
		c.GRPCMaxRecvBytes = c.DefaultMaxRecvBytes()
	}
	c.Relay = c.Relay.WithDefaults()
	c.Deleter = c.Deleter.WithDefaults()
	c.Partitions = c.Partitions.WithDefaults()
	if err := envconfig.FillDefaults(&c.NATS, "StreamReplicas"); err != nil {
		return c, err
	}
	var err error
	c.API, err = c.API.WithDefaults()
	return c, err
}

// batchEntryOverhead is the room DefaultMaxRecvBytes gives each message of a
// SendBatch besides its content (idempotency key, framing).
const batchEntryOverhead = 1 << 10

// DefaultMaxRecvBytes is the gRPC request limit when INGEST_GRPC_MAX_RECV_BYTES
// is unset: the largest message with its envelope, and room for the framing
// of a full batch. A SendBatch's messages share it: their total is bounded,
// not only each one's size.
func (c Config) DefaultMaxRecvBytes() int {
	return c.Send.Limits.MaxMessageBytes + envelopeHeadroom + c.Send.MaxBatch*batchEntryOverhead
}

// envelopeHeadroom is room for the job's envelope (ids, timestamps) and the
// NATS headers around the largest accepted message.
const envelopeHeadroom = 64 << 10

func (c Config) validate() error {
	if err := c.Send.Validate(); err != nil {
		return err
	}
	if c.GRPCMaxRecvBytes < c.Send.Limits.MaxMessageBytes+envelopeHeadroom {
		return fmt.Errorf("INGEST_GRPC_MAX_RECV_BYTES (%d) must exceed MAX_MESSAGE_BYTES (%d) by at least %d", c.GRPCMaxRecvBytes, c.Send.Limits.MaxMessageBytes, envelopeHeadroom)
	}
	if c.MetadataRetention < c.RetentionPeriod {
		return fmt.Errorf("METADATA_RETENTION=%s: want at least RETENTION_PERIOD (%s)", c.MetadataRetention, c.RetentionPeriod)
	}
	if c.RetentionInterval <= 0 {
		return fmt.Errorf("RETENTION_INTERVAL=%s: want a positive duration", c.RetentionInterval)
	}
	return errors.Join(c.Relay.Validate(), c.Deleter.Validate(), c.Account.Validate(), c.API.Validate(), c.Partitions.Validate())
}

// Deps are the clients the service uses; they are built once by the caller
// and not closed by the service.
type Deps struct {
	Pool      *pgxpool.Pool
	JetStream jetstream.JetStream
	Telemetry *telemetry.Telemetry
	Logger    *slog.Logger
	// Auth authenticates API keys (an *auth.KeyStore).
	Auth auth.Authenticator
	// Listener, when set, is served instead of listening on Config.GRPCAddr
	// (tests pass one on 127.0.0.1:0).
	Listener net.Listener
	// HTTPListener, when set, is where Run serves the HTTP/JSON API instead of
	// Config.HTTPAddr.
	HTTPListener net.Listener
	// OperatorListener, when set, is where Run serves the OperatorService
	// instead of Config.OperatorAddr.
	OperatorListener net.Listener
	// KeyStore, when Auth is not itself an *auth.KeyStore, is the API key
	// cache to keep in step with revocations (optional).
	KeyStore *auth.KeyStore
	// Now is the partition manager's and AccountService's clock (time.Now
	// when nil).
	Now func() time.Time
}

// Service is the ingest service.
type Service struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	api     *apiserver.Server
	relay   *outbox.Relay
	deleter *outbox.Deleter
	acc     *accounts
	send    *send.Server
	// partitions makes and drops the time partitions (retention).
	partitions *partition.Manager
}

// New builds the service. It fails when the configuration is inconsistent,
// e.g. when MAX_MESSAGE_BYTES does not fit the NATS server's max_payload.
func New(cfg Config, deps Deps) (*Service, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	if deps.Pool == nil || deps.JetStream == nil || deps.Auth == nil {
		return nil, errors.New("ingest: Pool, JetStream and Auth are required")
	}
	if deps.Telemetry == nil {
		deps.Telemetry = telemetry.Nop()
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("ingest config: %w", err)
	}
	if err := checkPayload(cfg, deps.JetStream); err != nil && !errors.Is(err, errPayloadUnknown) {
		return nil, err
	}
	log := deps.Logger
	deleter := outbox.NewDeleter(deps.Pool, cfg.Deleter, log)
	sendCfg := cfg.Send
	sendCfg.RequireVerifiedSenders = *cfg.RequireVerifiedSenders
	// The account states (and provider pauses) this replica follows: the
	// state gate and the send path's check of paused providers.
	states := accountstate.NewView(deps.Pool, deps.JetStream, cfg.NATS.StreamReplicas, log)
	// Sender and provider configuration changes, announced by the
	// AccountService (and the worker), keep the send path's cache current.
	configs := queue.AccountConfigFeed(deps.JetStream, cfg.NATS.StreamReplicas)
	tpls := templates.New(deps.Pool, log)
	svc := send.New(sendCfg, send.Deps{DB: deps.Pool, Publisher: deps.JetStream, Deleter: deleter, Pauses: states,
		AccountConfig: configs, Telemetry: deps.Telemetry, Logger: log, Templates: tpls})
	tpls.SetSender(svc)

	acc, err := newAccounts(cfg, deps, svc, states, configs)
	if err != nil {
		return nil, err
	}
	api, err := apiserver.New(apiserver.Config{
		GRPCAddr:                cfg.GRPCAddr,
		MaxRecvMsgSize:          cfg.GRPCMaxRecvBytes,
		MaxConcurrentStreams:    cfg.GRPCMaxConcurrentStreams,
		StreamWorkers:           cfg.GRPCStreamWorkers,
		UnverifiedInflightBytes: cfg.UnverifiedInflightBytes,
		ShutdownGrace:           cfg.ShutdownGrace,
		HTTPAddr:                cfg.HTTPAddr,
		MaxHTTPBodyBytes:        cfg.HTTPMaxBodyBytes(),
		MaxHTTPResponseBytes:    cfg.GRPCMaxRecvBytes,
		TLS:                     apiserver.TLSFiles{CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile, ClientCAFile: cfg.TLSClientCAFile},
		API:                     cfg.API,
	}, apiserver.Deps{
		Pool: deps.Pool, Keys: deps.Auth, KeyStore: acc.keyStore, Revocations: acc.revs,
		Telemetry: deps.Telemetry, Logger: log, Listener: deps.Listener, HTTPListener: deps.HTTPListener,
	}, apiserver.API{
		Register: func(r grpc.ServiceRegistrar) {
			emailsenderv1.RegisterSendServiceServer(r, svc)
			emailsenderv1.RegisterAccountServiceServer(r, acc.server)
			emailsenderv1.RegisterTemplateServiceServer(r, tpls)
		},
		Gateway: []httpgateway.Register{emailsenderv1.RegisterSendServiceHandler, emailsenderv1.RegisterAccountServiceHandler,
			emailsenderv1.RegisterTemplateServiceHandler},
		Scopes: MethodScopes(),
		Sends:  quotaSends,
		// Suspended and terminated accounts (pkg/accountstate).
		Interceptors: []grpc.UnaryServerInterceptor{acc.stateGate()},
	})
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}

	parts, err := partition.New(cfg.Partitions, partition.Retention{
		Content: cfg.RetentionPeriod, Metadata: cfg.MetadataRetention,
		Usage: cfg.API.Usage.Retention, Idempotency: store.IdempotencyTTL,
	}, partition.Deps{Pool: deps.Pool, Logger: log, Now: deps.Now})
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	relay := outbox.NewRelay(deps.Pool, deps.JetStream, deps.Telemetry, log, cfg.Relay)
	s := &Service{cfg: cfg, deps: deps, log: log, api: api, relay: relay, deleter: deleter, acc: acc, send: svc, partitions: parts}
	relay.Prepare = s.prepareNATS
	return s, nil
}

var errPayloadUnknown = errors.New("nats max payload unknown: not connected")

// checkPayload fails when the largest accepted message cannot be published.
func checkPayload(cfg Config, js jetstream.JetStream) error {
	nc := js.Conn()
	if nc == nil || !nc.IsConnected() {
		return errPayloadUnknown
	}
	if max := nc.MaxPayload(); int64(cfg.Send.Limits.MaxMessageBytes)+envelopeHeadroom > max {
		return fmt.Errorf("ingest config: MAX_MESSAGE_BYTES=%d (+%d bytes of job envelope) does not fit the NATS server's max_payload of %d bytes: raise max_payload on the server or lower MAX_MESSAGE_BYTES",
			cfg.Send.Limits.MaxMessageBytes, envelopeHeadroom, max)
	}
	return nil
}

// prepareNATS runs (in the relay) until NATS has been reachable once: it checks
// the payload limit and creates the streams.
func (s *Service) prepareNATS(ctx context.Context) error {
	if err := checkPayload(s.cfg, s.deps.JetStream); err != nil {
		if errors.Is(err, errPayloadUnknown) {
			return queue.ErrDisconnected
		}
		return fmt.Errorf("%w: %w", outbox.ErrFatal, err)
	}
	err := queue.EnsureStreams(ctx, s.deps.JetStream, queue.StreamConfig{
		Replicas:   s.cfg.NATS.StreamReplicas,
		MaxMsgSize: int32(max(16<<20, s.cfg.Send.Limits.MaxMessageBytes+envelopeHeadroom)),
	})
	if err != nil {
		return err
	}
	s.log.InfoContext(ctx, "jetstream streams ready")
	return nil
}

// Run serves the API (pkg/apiserver) with the outbox relay and retention
// (the partition manager) beside it until ctx ends, then shuts
// down in apiserver's order; after in-flight calls have finished, the
// provider clients close, and the queued
// outbox deletions are flushed, before the usage records.
func (s *Service) Run(ctx context.Context) error {
	// The deleter outlives the gRPC server: calls finishing during the
	// graceful stop still hand it their published rows.
	delCtx, stopDeleter := context.WithCancel(context.WithoutCancel(ctx))
	delDone := make(chan error, 1)
	go func() { delDone <- s.deleter.Run(delCtx) }()

	err := s.api.Run(ctx, apiserver.Hooks{
		Background: []func(context.Context) error{
			s.relay.Run,
			func(ctx context.Context) error { s.retention(ctx); return nil },
			s.acc.states.Watch,
			s.send.Watch,
			s.acc.eraser.RunSweeps,
			s.serveOperator,
		},
		Drains: []func(context.Context) error{
			func(context.Context) error { return s.acc.closeVerifiers() },
			func(context.Context) error { stopDeleter(); return <-delDone },
		},
	})
	s.log.Info("ingest stopped")
	return err
}
