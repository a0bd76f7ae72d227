package webhook

import (
	"errors"
	"fmt"
	"time"

	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/netguard"
)

// Schedule is the retry schedule: the wait before each attempt after the
// first (which is immediate), as in Standard Webhooks: 5s, 5m, 30m, 2h, 5h,
// 10h, 10h. Eight attempts over about 27.6 hours; each wait is jittered by
// ±Config.Jitter. A delivery whose eighth attempt fails is failed.
var Schedule = []time.Duration{
	5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour,
}

// Config configures webhooks (part of the report's configuration).
type Config struct {
	// Consumer is the durable JetStream consumer turning events into deliveries.
	Consumer string `env:"REPORT_WEBHOOK_CONSUMER" default:"report-webhooks" help:"durable JetStream consumer of the webhook fan-out"`
	// Timeout bounds one POST.
	Timeout time.Duration `env:"REPORT_WEBHOOK_TIMEOUT" default:"10s" help:"timeout of one webhook POST"`
	// Concurrency is how many POSTs one replica makes at once.
	Concurrency int `env:"REPORT_WEBHOOK_CONCURRENCY" default:"64" help:"webhook POSTs in flight per replica"`
	// Batch is how many due deliveries one dispatcher pass claims.
	Batch int `env:"REPORT_WEBHOOK_BATCH" default:"512" help:"due deliveries claimed per dispatcher pass"`
	// Poll is how often the dispatcher looks for due deliveries when not woken.
	Poll time.Duration `env:"REPORT_WEBHOOK_POLL" default:"1s" help:"dispatcher poll interval"`
	// Lease is how long a claimed delivery is left to its dispatcher before
	// another replica may take it (a crash mid-attempt).
	Lease time.Duration `env:"REPORT_WEBHOOK_LEASE" default:"2m" help:"how long a claimed delivery belongs to its dispatcher"`
	// Jitter is the fraction by which each retry wait varies.
	Jitter float64 `env:"REPORT_WEBHOOK_JITTER" default:"0.1" help:"retry waits vary by ± this fraction"`
	// DisableAfter: an endpoint whose deliveries fail continuously for this
	// long is disabled (WEBHOOK_DISABLED event).
	DisableAfter time.Duration `env:"REPORT_WEBHOOK_DISABLE_AFTER" default:"120h" help:"an endpoint failing continuously this long is disabled"`
	// Retention is how long deliveries and their attempts are kept.
	Retention time.Duration `env:"REPORT_WEBHOOK_RETENTION" default:"720h" help:"how long the delivery log is kept"`
	// MaxEndpoints bounds an account's endpoints.
	MaxEndpoints int `env:"REPORT_WEBHOOK_MAX_ENDPOINTS" default:"20" help:"endpoints per account, at most"`

	// Outbound is which non-public networks endpoints may be on.
	Outbound netguard.Config
}

// WithDefaults fills unset fields from the default tags.
func (c Config) WithDefaults() (Config, error) {
	err := envconfig.FillDefaults(&c, "Consumer", "Timeout", "Concurrency", "Batch", "Poll", "Lease", "Jitter", "DisableAfter", "Retention", "MaxEndpoints")
	return c, err
}

// Validate checks c.
func (c Config) Validate() error {
	var errs []error
	if c.Timeout <= 0 || c.Lease <= c.Timeout {
		errs = append(errs, fmt.Errorf("webhook timeout %s and lease %s: want 0 < timeout < lease", c.Timeout, c.Lease))
	}
	if c.Concurrency < 1 || c.Batch < 1 || c.MaxEndpoints < 1 {
		errs = append(errs, errors.New("webhook concurrency, batch and max endpoints must be positive"))
	}
	if c.Jitter < 0 || c.Jitter >= 1 {
		errs = append(errs, fmt.Errorf("webhook jitter %v: want 0 <= jitter < 1", c.Jitter))
	}
	if c.DisableAfter <= 0 || c.Retention <= 0 || c.Poll <= 0 {
		errs = append(errs, errors.New("webhook disable-after, retention and poll must be positive"))
	}
	if _, err := netguard.New(c.Outbound); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
