package worker

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/provider/kinds"
	"github.com/namirasoft/email-sender/pkg/suppression"
	"github.com/namirasoft/email-sender/services/worker/gmailpoll"
)

// Ambiguous outcome policies.
const (
	AmbiguousFail  = "fail"
	AmbiguousRetry = "retry"
)

// Config configures a worker process.
type Config struct {
	// Providers lists the provider kinds this process delivers for; each gets its
	// own durable consumer, so kinds scale and fail independently. Unset: every
	// kind of the registry (pkg/provider/kinds) the worker has a sender for.
	Providers []string `env:"WORKER_PROVIDERS" help:"provider kinds to deliver, comma separated (unset: every kind of pkg/provider/kinds)"`
	// Concurrency is the number of deliveries in flight per provider kind;
	// KindConcurrency overrides it for one kind.
	Concurrency int `env:"WORKER_CONCURRENCY" default:"64" help:"deliveries in flight per provider kind"`
	// KindConcurrency is WORKER_<KIND>_CONCURRENCY of every registered kind
	// (0: the kind's registry default, else Concurrency).
	KindConcurrency KindConcurrency
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
	AccountRate  float64 `env:"WORKER_ACCOUNT_RATE" default:"100" help:"max sends/s per account per worker process (0 = unlimited)"`
	ProviderRate float64 `env:"WORKER_PROVIDER_RATE" default:"0" help:"max sends/s per provider configuration (0 = unlimited)"`
	// KindProviderRate is WORKER_<KIND>_PROVIDER_RATE of every registered kind
	// (0: the kind's registry default, else ProviderRate).
	KindProviderRate KindProviderRate
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

	// GmailPoll paces the bounce pollers of the gmail configurations, which
	// run in the workers that deliver the gmail kind (services/worker/gmailpoll).
	GmailPoll gmailpoll.Config
	// Suppression is the rule the Gmail bounces apply (SUPPRESS_*; shared
	// with the report and the inbound service).
	Suppression suppression.Config

	// Outbound is where the senders may connect on a tenant's behalf
	// (OUTBOUND_ALLOW_NETS; unset: the public internet only) and the
	// operator's SES and Gmail endpoints (shared with ingest).
	Outbound kinds.Config

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
	if err != nil {
		return c, err
	}
	if c.GmailPoll, err = c.GmailPoll.WithDefaults(); err != nil {
		return c, err
	}
	err = envconfig.FillDefaults(&c.Suppression, "SoftBounces", "SoftBounceWindow")
	return c, err
}

// KindConcurrency is the deliveries in flight per provider kind, read from
// WORKER_<KIND>_CONCURRENCY for every kind of the registry (pkg/provider/kinds).
type KindConcurrency map[string]int

// KindProviderRate is the sends per second per configuration of a provider
// kind, read from WORKER_<KIND>_PROVIDER_RATE for every kind of the registry.
type KindProviderRate map[string]float64

// kindVar is the variable of kind named WORKER_<KIND>_<suffix>.
func kindVar(kind, suffix string) string {
	return "WORKER_" + strings.ToUpper(kind) + "_" + suffix
}

// LoadEnv reads WORKER_<KIND>_CONCURRENCY of every kind (envconfig.Loader).
func (m *KindConcurrency) LoadEnv(lookup envconfig.Lookup) error {
	*m = KindConcurrency{}
	for _, k := range kinds.All() {
		name := kindVar(k.Name, "CONCURRENCY")
		if raw, ok := lookup(name); ok && raw != "" {
			n, err := strconv.Atoi(raw)
			if err != nil {
				return fmt.Errorf("%s=%q: %w", name, raw, err)
			}
			(*m)[k.Name] = n
		}
	}
	return nil
}

// DescribeEnv lists WORKER_<KIND>_CONCURRENCY of every kind (envconfig.Describer).
func (KindConcurrency) DescribeEnv() []envconfig.Var {
	var out []envconfig.Var
	for _, k := range kinds.All() {
		out = append(out, envconfig.Var{Name: kindVar(k.Name, "CONCURRENCY"), Default: positive(float64(k.Worker.Concurrency)),
			Help: fmt.Sprintf("deliveries in flight for %s (0: WORKER_CONCURRENCY)", k.Name)})
	}
	return out
}

// LoadEnv reads WORKER_<KIND>_PROVIDER_RATE of every kind (envconfig.Loader).
func (m *KindProviderRate) LoadEnv(lookup envconfig.Lookup) error {
	*m = KindProviderRate{}
	for _, k := range kinds.All() {
		name := kindVar(k.Name, "PROVIDER_RATE")
		if raw, ok := lookup(name); ok && raw != "" {
			r, err := strconv.ParseFloat(raw, 64)
			if err != nil {
				return fmt.Errorf("%s=%q: %w", name, raw, err)
			}
			(*m)[k.Name] = r
		}
	}
	return nil
}

// DescribeEnv lists WORKER_<KIND>_PROVIDER_RATE of every kind (envconfig.Describer).
func (KindProviderRate) DescribeEnv() []envconfig.Var {
	var out []envconfig.Var
	for _, k := range kinds.All() {
		out = append(out, envconfig.Var{Name: kindVar(k.Name, "PROVIDER_RATE"), Default: positive(k.Worker.ProviderRate),
			Help: fmt.Sprintf("max sends/s per %s configuration (0: WORKER_PROVIDER_RATE)", k.Name)})
	}
	return out
}

// positive is v as a default, "" (unset) when it is 0.
func positive(v float64) string {
	if v <= 0 {
		return ""
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// kindConcurrency is the number of deliveries in flight for kind: its
// WORKER_<KIND>_CONCURRENCY, else the registry's default for the kind, else
// Concurrency.
func (c Config) kindConcurrency(kind string) int {
	if n := c.KindConcurrency[kind]; n > 0 {
		return n
	}
	if k, ok := kinds.Lookup(kind); ok && k.Worker.Concurrency > 0 {
		return k.Worker.Concurrency
	}
	return c.Concurrency
}

// kindProviderRate is the send rate limit per provider configuration of kind:
// its WORKER_<KIND>_PROVIDER_RATE, else the registry's default for the kind,
// else ProviderRate.
func (c Config) kindProviderRate(kind string) float64 {
	if r := c.KindProviderRate[kind]; r > 0 {
		return r
	}
	if k, ok := kinds.Lookup(kind); ok && k.Worker.ProviderRate > 0 {
		return k.Worker.ProviderRate
	}
	return c.ProviderRate
}

func (c Config) validate() error {
	if c.AmbiguousPolicy != AmbiguousFail && c.AmbiguousPolicy != AmbiguousRetry {
		return fmt.Errorf("WORKER_AMBIGUOUS_POLICY must be %q or %q, got %q", AmbiguousFail, AmbiguousRetry, c.AmbiguousPolicy)
	}
	for _, p := range c.Providers {
		if _, ok := kinds.Lookup(p); !ok {
			return fmt.Errorf("WORKER_PROVIDERS: unknown provider kind %q", p)
		}
	}
	return nil
}
