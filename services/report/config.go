package report

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"time"

	"github.com/namirasoft/email-sender/pkg/apigate"
	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/reputation"
	"github.com/namirasoft/email-sender/pkg/suppression"
	"github.com/namirasoft/email-sender/services/report/console"
	"github.com/namirasoft/email-sender/services/report/webhook"
)

// Config configures the report service. Load it with envconfig.Load; the zero
// value plus WithDefaults works too.
type Config struct {
	// GRPCAddr is where Run serves the ReportService when no listener is given.
	GRPCAddr string `env:"REPORT_GRPC_ADDR" default:":8082" help:"gRPC listen address"`
	// ShutdownGrace bounds the gRPC graceful stop.
	ShutdownGrace time.Duration `env:"REPORT_SHUTDOWN_GRACE" default:"10s" help:"how long gRPC graceful stop may take"`
	// HTTPAddr is where Run serves the HTTP/JSON API (ReportService,
	// pkg/httpgateway); "off" disables it. WithDefaults leaves it empty: a
	// Config built in Go serves no HTTP unless Deps.HTTPListener is set.
	HTTPAddr string `env:"REPORT_HTTP_ADDR" default:":8092" help:"HTTP/JSON listen address (grpc-gateway; off disables)"`
	// TLSCertFile and TLSKeyFile, when set, make gRPC and the HTTP server
	// serve TLS (the SES feedback endpoint must be reachable over HTTPS, here
	// or on a proxy in front).
	TLSCertFile string `env:"REPORT_TLS_CERT_FILE" help:"PEM certificate chain; with REPORT_TLS_KEY_FILE gRPC and HTTP serve TLS"`
	TLSKeyFile  string `env:"REPORT_TLS_KEY_FILE" help:"PEM private key of REPORT_TLS_CERT_FILE"`
	// TLSClientCAFile, when set, makes every client present a certificate it
	// issued. SNS presents none: the feedback endpoint then needs a proxy in
	// front that does.
	TLSClientCAFile string `env:"REPORT_TLS_CLIENT_CA_FILE" help:"PEM CA certificates; when set, gRPC and HTTP clients must present a certificate they issued (mutual TLS; SNS cannot, see README)"`
	// GRPCMaxConcurrentStreams bounds the calls in flight on one connection.
	GRPCMaxConcurrentStreams uint32 `env:"REPORT_GRPC_MAX_CONCURRENT_STREAMS" default:"100" help:"gRPC calls in flight per connection"`
	// SNSCertHostPattern is what the host of an SNS message's SigningCertURL
	// and SubscribeURL must match (https only).
	SNSCertHostPattern string `env:"REPORT_SNS_CERT_HOST_PATTERN" default:"^sns[.][a-z0-9-]+[.]amazonaws[.]com([.]cn)?$" help:"regexp the host of SNS signing certificate and subscribe URLs must match"`
	// SNSTopicARNs, when set, is an operator's extra filter: the feedback
	// endpoint accepts only these topics, on top of each SES provider
	// configuration's own feedback_topic_arns (which are always required).
	SNSTopicARNs []string `env:"REPORT_SNS_TOPIC_ARNS" help:"SNS topic ARNs (or patterns with *) the feedback endpoint accepts at all, comma separated; empty: no extra filter (each SES provider configuration still accepts only its own feedback_topic_arns)"`
	// SNSMaxAge is how old an SNS message (its Timestamp, the time SNS
	// published it; retries keep it) may be. SNS retries an HTTPS delivery for
	// at most an hour.
	SNSMaxAge time.Duration `env:"REPORT_SNS_MAX_AGE" default:"2h" help:"oldest SNS message (Timestamp) the feedback endpoint accepts"`
	// FeedbackMaxMailAge is how old the mail an SES event is about (its
	// mail.timestamp) may be: bounces come within days, complaints within weeks.
	FeedbackMaxMailAge time.Duration `env:"REPORT_FEEDBACK_MAX_MAIL_AGE" default:"336h" help:"oldest mail (SES mail.timestamp) whose feedback the endpoint accepts"`
	// MetricsAddr is where the report command serves /metrics (Prometheus).
	MetricsAddr string `env:"REPORT_METRICS_ADDR" default:":9082" help:"HTTP listen address of /metrics (Prometheus; off disables)"`

	// Consumer is the durable consumer name on the events stream; every replica
	// of the service shares it.
	Consumer string `env:"REPORT_CONSUMER" default:"report" help:"durable JetStream consumer name"`
	// BatchSize is the most events applied in one transaction.
	BatchSize int `env:"REPORT_BATCH_SIZE" default:"256" help:"events applied per transaction, at most"`
	// BatchWait is how long a batch waits for more events once it has one.
	BatchWait time.Duration `env:"REPORT_BATCH_WAIT" default:"10ms" help:"how long a started batch waits to fill up"`
	// AckWait is how long JetStream waits for an ack before redelivering; it must
	// exceed the time a batch takes to apply.
	AckWait time.Duration `env:"REPORT_ACK_WAIT" default:"30s" help:"JetStream ack wait"`
	// MaxAckPending bounds the events delivered but not yet acknowledged, across replicas.
	MaxAckPending int `env:"REPORT_MAX_ACK_PENDING" default:"4096" help:"JetStream max ack pending"`
	// RetryDelay is how long a failed event waits before JetStream redelivers it.
	RetryDelay time.Duration `env:"REPORT_RETRY_DELAY" default:"2s" help:"redelivery delay after the database failed"`
	// ApplyTimeout bounds one batch transaction.
	ApplyTimeout time.Duration `env:"REPORT_APPLY_TIMEOUT" default:"20s" help:"timeout of one batch transaction"`

	// StatsFoldInterval is how often the changes the triggers on messages
	// appended to message_stats_pending are folded into message_stats
	// (GetStats reads both, so it only bounds how many are pending).
	StatsFoldInterval time.Duration `env:"REPORT_STATS_FOLD_INTERVAL" default:"1s" help:"how often pending message count changes are folded into GetStats' hourly rollup"`

	// ReputationAssessInterval is the longest a provider configuration's
	// deliveries wait for the reputation guard to assess them; a hard bounce
	// or complaint is assessed with its batch.
	ReputationAssessInterval time.Duration `env:"REPORT_REPUTATION_ASSESS_INTERVAL" default:"1s" help:"how often a provider configuration with new deliveries (and no new bounce or complaint) is assessed by the reputation guard, at most"`

	// AnalyzeInterval is how often the report looks for tables it reads by
	// key whose planner statistics count less than half their rows, and
	// analyzes them when autovacuum does not (pkg/pgstats).
	AnalyzeInterval time.Duration `env:"REPORT_ANALYZE_INTERVAL" default:"2s" help:"how often tables whose planner statistics undercount their rows are analyzed, where autovacuum does not"`

	// LatencyRetention is how long the delivery latency histograms are kept
	// (latency.go).
	LatencyRetention time.Duration `env:"REPORT_LATENCY_RETENTION" default:"720h" help:"how long the delivery latency histograms (message_latency, the dashboard's percentiles) are kept, by hour of acceptance"`

	// KeyCacheTTL is how long main's API key store caches a key lookup.
	KeyCacheTTL time.Duration `env:"REPORT_KEY_CACHE_TTL" default:"30s" help:"API key cache TTL (0 disables)"`

	// MasterKeys seal and open webhook signing secrets (pkg/secretbox; the
	// same keys as ingest and worker). Without them webhook endpoints cannot be
	// created.
	MasterKeys  string `env:"MASTER_KEYS" help:"secretbox master keys, kid:base64 comma separated (webhook signing secrets)"`
	MasterKeyID string `env:"MASTER_KEY_ID" help:"master key that seals new secrets (default: first)"`
	// Webhooks configures the webhook fan-out and dispatcher.
	Webhooks webhook.Config
	// Console configures the web console (CONSOLE_*; package console).
	Console console.Config
	// Watch tunes WatchEvents.
	WatchHeartbeat time.Duration `env:"REPORT_WATCH_HEARTBEAT" default:"15s" help:"how often an idle WatchEvents stream gets a heartbeat"`
	WatchBuffer    int           `env:"REPORT_WATCH_BUFFER" default:"256" help:"events a WatchEvents stream pulls ahead of what the client took"`
	// Suppression is the rule of which feedback suppresses an address
	// (SUPPRESS_*; shared with the inbound service).
	Suppression suppression.Config
	// Reputation is the reputation guard's window and thresholds
	// (REPUTATION_*; pkg/reputation).
	Reputation reputation.Config

	Postgres envconfig.Postgres
	NATS     envconfig.NATS
	Log      envconfig.Log
	Metrics  envconfig.Metrics
	// API is what every call passes: API keys and Namirasoft Account tokens,
	// per-account limits, usage records (shared with ingest).
	API apigate.Config
}

// WithDefaults fills unset fields with the same defaults the env tags name
// (the one source of defaults).
func (c Config) WithDefaults() (Config, error) {
	err := errors.Join(
		envconfig.FillDefaults(&c, "GRPCAddr", "ShutdownGrace", "GRPCMaxConcurrentStreams", "Consumer", "BatchSize", "BatchWait", "AckWait", "MaxAckPending", "RetryDelay", "ApplyTimeout", "SNSCertHostPattern", "StatsFoldInterval", "AnalyzeInterval", "ReputationAssessInterval", "LatencyRetention",
			"SNSMaxAge", "FeedbackMaxMailAge", "WatchHeartbeat", "WatchBuffer"),
		envconfig.FillDefaults(&c.NATS, "StreamReplicas"),
		envconfig.FillDefaults(&c.Suppression, "SoftBounces", "SoftBounceWindow"),
	)
	if err == nil {
		c.Reputation, err = c.Reputation.WithDefaults()
	}
	if err != nil {
		return c, err
	}
	if c.Console, err = c.Console.WithDefaults(); err != nil {
		return c, err
	}
	if c.Webhooks, err = c.Webhooks.WithDefaults(); err != nil {
		return c, err
	}
	c.API, err = c.API.WithDefaults()
	return c, err
}

func (c Config) validate() error {
	var errs []error
	if c.BatchSize < 1 || c.BatchSize > 10_000 {
		errs = append(errs, fmt.Errorf("batch size %d: want 1..10000", c.BatchSize))
	}
	if c.MaxAckPending < 2*c.BatchSize {
		errs = append(errs, fmt.Errorf("max ack pending %d: want at least twice the batch size (%d)", c.MaxAckPending, 2*c.BatchSize))
	}
	if c.ApplyTimeout >= c.AckWait {
		errs = append(errs, fmt.Errorf("apply timeout %s: want less than ack wait %s", c.ApplyTimeout, c.AckWait))
	}
	if c.StatsFoldInterval <= 0 {
		errs = append(errs, fmt.Errorf("stats fold interval %s: want more than 0", c.StatsFoldInterval))
	}
	if c.ReputationAssessInterval <= 0 {
		errs = append(errs, fmt.Errorf("reputation assess interval %s: want more than 0", c.ReputationAssessInterval))
	}
	if c.LatencyRetention < time.Hour {
		errs = append(errs, fmt.Errorf("REPORT_LATENCY_RETENTION %s: want at least 1h", c.LatencyRetention))
	}
	if c.AnalyzeInterval <= 0 {
		errs = append(errs, fmt.Errorf("analyze interval %s: want more than 0", c.AnalyzeInterval))
	}
	if c.BatchWait < 0 || c.RetryDelay < 0 {
		errs = append(errs, errors.New("batch wait and retry delay must not be negative"))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("tls: set both REPORT_TLS_CERT_FILE and REPORT_TLS_KEY_FILE, or neither"))
	}
	if c.TLSClientCAFile != "" && c.TLSCertFile == "" {
		errs = append(errs, errors.New("tls: REPORT_TLS_CLIENT_CA_FILE needs REPORT_TLS_CERT_FILE and REPORT_TLS_KEY_FILE"))
	}
	if _, err := regexp.Compile(c.SNSCertHostPattern); err != nil {
		errs = append(errs, fmt.Errorf("sns cert host pattern: %w", err))
	}
	if c.SNSMaxAge <= 0 || c.FeedbackMaxMailAge <= 0 {
		errs = append(errs, errors.New("sns max age and feedback max mail age must be positive"))
	}
	for _, t := range c.SNSTopicARNs {
		if _, err := path.Match(t, ""); err != nil {
			errs = append(errs, fmt.Errorf("sns topic arn %q: %w", t, err))
		}
	}
	if err := c.Reputation.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Console.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Webhooks.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.API.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("report config: %w", err)
	}
	return nil
}
