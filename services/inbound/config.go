package inbound

import (
	"errors"
	"fmt"
	"time"

	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/suppression"
	"github.com/namirasoft/email-sender/pkg/verp"
	"github.com/namirasoft/email-sender/services/inbound/imappoll"
	"github.com/namirasoft/email-sender/services/inbound/submission"
)

// Config configures the inbound service. Load it with envconfig.Load; the
// zero value plus WithDefaults works too (Bounce must be set either way).
type Config struct {
	// SMTPAddr is where Run accepts mail when no listener is given: the
	// bounce domain's MX points here (port 25 in front of it).
	SMTPAddr string `env:"INBOUND_SMTP_ADDR" default:":2525" help:"SMTP listen address for bounces and reports to the bounce domain (its MX; port 25 in front)"`
	// Hostname is the name the service greets with.
	Hostname string `env:"INBOUND_HOSTNAME" default:"localhost" help:"host name in the SMTP greeting and EHLO answer"`
	// MaxMessageBytes is the largest mail accepted (SIZE); a bounce that
	// returns a large original in full is read up to ParseBytes and the rest
	// discarded.
	MaxMessageBytes int64 `env:"INBOUND_MAX_MESSAGE_BYTES" default:"33554432" help:"largest mail accepted (bytes, advertised as SIZE)"`
	// ParseBytes is how much of a mail is kept and parsed: the report parts
	// come before the returned original.
	ParseBytes int64 `env:"INBOUND_PARSE_BYTES" default:"262144" help:"bytes of each mail kept and parsed (the report parts come first; the rest of a returned original is discarded)"`
	// MaxRecipients bounds RCPT TO per transaction.
	MaxRecipients int `env:"INBOUND_MAX_RECIPIENTS" default:"10" help:"RCPT TO per transaction"`
	// MaxConnections bounds concurrent SMTP connections.
	MaxConnections int `env:"INBOUND_MAX_CONNECTIONS" default:"512" help:"concurrent SMTP connections"`
	// Timeout bounds each SMTP read and write.
	Timeout time.Duration `env:"INBOUND_TIMEOUT" default:"60s" help:"SMTP read and write timeout"`
	// ProcessTimeout bounds storing an accepted mail on EMAIL_INBOUND
	// (the SMTP reply waits for it) and recording one batch.
	ProcessTimeout time.Duration `env:"INBOUND_PROCESS_TIMEOUT" default:"20s" help:"time to store an accepted mail on EMAIL_INBOUND before the sender is told to retry (451), and to record one batch"`
	// BatchSize and BatchWindow shape the batches the mail accepted on
	// EMAIL_INBOUND is recorded in: a batch is what is waiting, or arrives
	// within the window of its first, up to the size.
	BatchSize   int           `env:"INBOUND_BATCH_SIZE" default:"256" help:"accepted mails recorded together at most (one message lookup, one suppression transaction, publishes awaited together)"`
	BatchWindow time.Duration `env:"INBOUND_BATCH_WINDOW" default:"10ms" help:"how long a batch waits for more accepted mail after its first"`
	// AckWait is how long JetStream waits for a batch's acks before it
	// delivers its mail again (the process died while recording it).
	AckWait time.Duration `env:"INBOUND_ACK_WAIT" default:"30s" help:"JetStream ack wait of the inbound consumer: accepted mail not acknowledged within it (the process died) is recorded again"`
	// RetryDelay is how long mail whose recording failed (database or
	// stream trouble) waits before it is tried again.
	RetryDelay time.Duration `env:"INBOUND_RETRY_DELAY" default:"2s" help:"delay before accepted mail whose recording failed (database or stream trouble) is tried again"`
	// ShutdownGrace bounds, at shutdown, the drain of open SMTP sessions,
	// and then how long the consumer goes on recording accepted mail.
	ShutdownGrace time.Duration `env:"INBOUND_SHUTDOWN_GRACE" default:"10s" help:"at shutdown, how long open SMTP sessions may finish, and then how long accepted mail is still recorded (the rest is recorded after INBOUND_ACK_WAIT by a replica)"`
	// DomainsRefresh is how often the accounts' verified bounce domains are
	// reloaded (besides at once on ingest's announcement of a change).
	DomainsRefresh time.Duration `env:"INBOUND_BOUNCE_DOMAINS_REFRESH" default:"1m" help:"how often the accounts' verified bounce domains are reloaded from PostgreSQL (ingest also announces each change over NATS, which reloads them at once)"`
	// TLSCertFile and TLSKeyFile, when set, offer STARTTLS.
	TLSCertFile string `env:"INBOUND_TLS_CERT_FILE" help:"PEM certificate chain; with INBOUND_TLS_KEY_FILE the SMTP server offers STARTTLS"`
	TLSKeyFile  string `env:"INBOUND_TLS_KEY_FILE" help:"PEM private key of INBOUND_TLS_CERT_FILE"`
	// GRPCAddr serves the standard gRPC health service.
	GRPCAddr string `env:"INBOUND_GRPC_ADDR" default:":8084" help:"gRPC health/reflection listen address"`
	// MetricsAddr is where the command serves /metrics.
	MetricsAddr string `env:"INBOUND_METRICS_ADDR" default:":9084" help:"HTTP listen address of /metrics (Prometheus; off disables)"`

	// Submission is the SMTP submission listener the command runs alongside
	// (package submission); off unless SUBMISSION_ADDR or SUBMISSION_TLS_ADDR.
	// New does not read it.
	Submission submission.Config
	// IMAP is the poller of the SMTP provider configurations' bounce
	// mailboxes (package imappoll) the command runs alongside; on with
	// MASTER_KEYS. New does not read it.
	IMAP imappoll.Config

	// Bounce is BOUNCE_DOMAIN and BOUNCE_KEY, the worker's.
	Bounce verp.Config
	// Suppression is the rule the report's SES feedback applies too.
	Suppression suppression.Config

	Postgres envconfig.Postgres
	NATS     envconfig.NATS
	Log      envconfig.Log
	Metrics  envconfig.Metrics
}

// WithDefaults fills unset fields with the defaults the env tags name.
func (c Config) WithDefaults() (Config, error) {
	err := errors.Join(
		envconfig.FillDefaults(&c, "SMTPAddr", "Hostname", "MaxMessageBytes", "ParseBytes", "MaxRecipients", "MaxConnections",
			"Timeout", "ProcessTimeout", "ShutdownGrace", "BatchSize", "BatchWindow", "AckWait", "RetryDelay", "DomainsRefresh"),
		envconfig.FillDefaults(&c.Suppression, "SoftBounces", "SoftBounceWindow"),
	)
	return c, err
}

func (c Config) validate() error {
	var errs []error
	if c.Bounce.Domain == "" {
		errs = append(errs, errors.New("BOUNCE_DOMAIN is required: the service accepts mail for its addresses only"))
	}
	if c.ParseBytes < 4096 || c.ParseBytes > c.MaxMessageBytes {
		errs = append(errs, fmt.Errorf("parse bytes %d: want 4096..max message bytes (%d)", c.ParseBytes, c.MaxMessageBytes))
	}
	if c.MaxRecipients < 1 || c.MaxConnections < 1 {
		errs = append(errs, errors.New("max recipients and max connections must be positive"))
	}
	if c.BatchSize < 1 || c.BatchSize > 10_000 || c.BatchWindow < 0 || c.RetryDelay < 0 {
		errs = append(errs, errors.New("batch size must be 1..10000, the batch window and retry delay not negative"))
	}
	if c.Timeout <= 0 || c.ProcessTimeout <= 0 || c.DomainsRefresh <= 0 {
		errs = append(errs, errors.New("timeouts must be positive"))
	}
	if c.ProcessTimeout >= c.AckWait {
		errs = append(errs, fmt.Errorf("process timeout %s: want less than the ack wait %s (a batch still being recorded would be delivered again)", c.ProcessTimeout, c.AckWait))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("tls: set both INBOUND_TLS_CERT_FILE and INBOUND_TLS_KEY_FILE, or neither"))
	}
	if c.Suppression.SoftBounces < 0 {
		errs = append(errs, errors.New("SUPPRESS_SOFT_BOUNCES must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("inbound config: %w", err)
	}
	return nil
}
