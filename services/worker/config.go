package worker

import (
	"fmt"
	"time"

	"github.com/namirasoft/email-sender/pkg/envconfig"
)

// Ambiguous outcome policies.
const (
	AmbiguousFail  = "fail"
	AmbiguousRetry = "retry"
)

// Config configures a worker process.
type Config struct {
	// Providers lists the provider kinds this process delivers for; each gets its
	// own durable consumer, so kinds scale and fail independently.
	Providers []string `env:"WORKER_PROVIDERS" default:"sandbox,smtp,ses,gmail" help:"provider kinds to deliver: sandbox, smtp, ses, gmail"`
	// Concurrency is the number of deliveries in flight per provider kind; the
	// per-kind fields below override it for one kind.
	Concurrency        int `env:"WORKER_CONCURRENCY" default:"64" help:"deliveries in flight per provider kind"`
	SMTPConcurrency    int `env:"WORKER_SMTP_CONCURRENCY" help:"deliveries in flight for smtp (0: WORKER_CONCURRENCY)"`
	SESConcurrency     int `env:"WORKER_SES_CONCURRENCY" help:"deliveries in flight for ses (0: WORKER_CONCURRENCY)"`
	GmailConcurrency   int `env:"WORKER_GMAIL_CONCURRENCY" help:"deliveries in flight for gmail (0: WORKER_CONCURRENCY)"`
	SandboxConcurrency int `env:"WORKER_SANDBOX_CONCURRENCY" help:"deliveries in flight for sandbox (0: WORKER_CONCURRENCY)"`
	// MaxAttempts bounds delivery attempts per message.
	MaxAttempts int `env:"WORKER_MAX_ATTEMPTS" default:"8" help:"delivery attempts before a message fails"`
	// MaxAge bounds how long a message keeps being retried after it was accepted.
	MaxAge time.Duration `env:"WORKER_MAX_AGE" default:"24h" help:"retry window from acceptance"`
	// BackoffBase and BackoffMax shape the retry delay: base*2^(attempt-1), capped,
	// with jitter in [50%, 100%].
	BackoffBase time.Duration `env:"WORKER_BACKOFF_BASE" default:"30s" help:"first retry delay"`
	BackoffMax  time.Duration `env:"WORKER_BACKOFF_MAX" default:"1h" help:"longest retry delay"`
	// AckWait is how long JetStream waits before redelivering an unacknowledged
	// job; in-progress acks every AckWait/3 keep slow sends alive.
	AckWait time.Duration `env:"WORKER_ACK_WAIT" default:"30s" help:"JetStream ack wait; in-progress acks keep long sends alive"`
	// SendTimeout bounds one provider call.
	SendTimeout time.Duration `env:"WORKER_SEND_TIMEOUT" default:"2m" help:"timeout of one provider call"`
	// AmbiguousPolicy: "fail" or "retry" (see package doc).
	AmbiguousPolicy string `env:"WORKER_AMBIGUOUS_POLICY" default:"fail" help:"fail or retry when a provider's answer to sent data is lost"`
	// AccountRate and ProviderRate limit sends per second per account and per
	// provider configuration (0: unlimited).
	AccountRate  float64 `env:"WORKER_ACCOUNT_RATE" default:"0" help:"max sends/s per account (0 = unlimited)"`
	ProviderRate float64 `env:"WORKER_PROVIDER_RATE" default:"0" help:"max sends/s per provider configuration (0 = unlimited)"`
	// Per-kind overrides of ProviderRate (0: ProviderRate).
	SMTPProviderRate    float64 `env:"WORKER_SMTP_PROVIDER_RATE" help:"max sends/s per smtp configuration (0: WORKER_PROVIDER_RATE)"`
	SESProviderRate     float64 `env:"WORKER_SES_PROVIDER_RATE" help:"max sends/s per ses configuration (0: WORKER_PROVIDER_RATE)"`
	GmailProviderRate   float64 `env:"WORKER_GMAIL_PROVIDER_RATE" help:"max sends/s per gmail configuration (0: WORKER_PROVIDER_RATE)"`
	SandboxProviderRate float64 `env:"WORKER_SANDBOX_PROVIDER_RATE" help:"max sends/s per sandbox configuration (0: WORKER_PROVIDER_RATE)"`
	// DiscoveryInterval is how often a kind's scheduler reads the per-account
	// job counts of the stream (besides the notices of new jobs).
	DiscoveryInterval time.Duration `env:"WORKER_DISCOVERY_INTERVAL" default:"1s" help:"how often the per-account job counts are read (new jobs also wake the worker at once)"`
	// AccountIdle is the InactiveThreshold of the per-account consumers: the
	// server deletes one that nobody pulled from for that long.
	AccountIdle time.Duration `env:"WORKER_ACCOUNT_IDLE" default:"15m" help:"idle time after which an account's consumer is removed"`
	// AccountMaxAckPending bounds one account's jobs handed out and not yet
	// acknowledged (in flight, or waiting for a retry), across all replicas.
	AccountMaxAckPending int `env:"WORKER_ACCOUNT_MAX_ACK_PENDING" default:"1000" help:"jobs of one account in flight or awaiting a retry, across replicas"`
	// FailoverAfter is the number of transient failures on a configuration
	// after which a message moves to the configuration's fallback, if any.
	FailoverAfter int `env:"WORKER_FAILOVER_AFTER" default:"3" help:"transient failures before a message moves to the fallback provider"`
	// ConfigCacheTTL is how long provider configurations are cached.
	ConfigCacheTTL time.Duration `env:"WORKER_CONFIG_CACHE_TTL" default:"10s" help:"provider configuration cache"`
	// AttemptsTTL is how long attempt records are kept.
	AttemptsTTL time.Duration `env:"WORKER_ATTEMPTS_TTL" default:"72h" help:"how long attempt records are kept"`
	// MasterKeys opens provider secrets (see pkg/secretbox).
	MasterKeys  string `env:"MASTER_KEYS" help:"master keys: id:base64,id:base64"`
	MasterKeyID string `env:"MASTER_KEY_ID" help:"master key that seals new secrets (default: first)"`

	// GRPCAddr serves the standard gRPC health service and reflection.
	GRPCAddr string `env:"WORKER_GRPC_ADDR" default:":8083" help:"gRPC health/reflection listen address"`
	// MetricsAddr is where the worker command serves /metrics (Prometheus).
	MetricsAddr string `env:"WORKER_METRICS_ADDR" default:":9083" help:"HTTP listen address of /metrics (Prometheus; off disables)"`

	Postgres envconfig.Postgres
	NATS     envconfig.NATS
	Log      envconfig.Log
	Metrics  envconfig.Metrics
}

// WithDefaults fills unset fields (for configs built in code) with the env
// tags' defaults, the one source of them. Providers is not among them: built
// in code, a worker delivers the kinds it is given senders for (New).
func (c Config) WithDefaults() (Config, error) {
	err := envconfig.FillDefaults(&c, "Concurrency", "MaxAttempts", "MaxAge", "BackoffBase", "BackoffMax", "AckWait", "SendTimeout", "AmbiguousPolicy", "ConfigCacheTTL", "AttemptsTTL", "DiscoveryInterval", "AccountIdle", "AccountMaxAckPending", "FailoverAfter")
	return c, err
}

// kindConcurrency is the number of deliveries in flight for kind.
func (c Config) kindConcurrency(kind string) int {
	n := map[string]int{"smtp": c.SMTPConcurrency, "ses": c.SESConcurrency, "gmail": c.GmailConcurrency, "sandbox": c.SandboxConcurrency}[kind]
	if n > 0 {
		return n
	}
	return c.Concurrency
}

// kindProviderRate is the send rate limit per provider configuration of kind.
func (c Config) kindProviderRate(kind string) float64 {
	r := map[string]float64{"smtp": c.SMTPProviderRate, "ses": c.SESProviderRate, "gmail": c.GmailProviderRate, "sandbox": c.SandboxProviderRate}[kind]
	if r > 0 {
		return r
	}
	return c.ProviderRate
}

func (c Config) validate() error {
	if c.AmbiguousPolicy != AmbiguousFail && c.AmbiguousPolicy != AmbiguousRetry {
		return fmt.Errorf("WORKER_AMBIGUOUS_POLICY must be %q or %q, got %q", AmbiguousFail, AmbiguousRetry, c.AmbiguousPolicy)
	}
	for _, p := range c.Providers {
		switch p {
		case "sandbox", "smtp", "gmail", "ses":
		default:
			return fmt.Errorf("WORKER_PROVIDERS: unknown provider kind %q", p)
		}
	}
	return nil
}
