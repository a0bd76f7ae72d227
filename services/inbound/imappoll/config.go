package imappoll

import (
	"errors"
	"fmt"
	"time"

	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/netguard"
)

// Config is the operator's side of the poller.
type Config struct {
	// Interval is how often every bounce mailbox is polled; 0 turns the
	// poller off.
	Interval time.Duration `env:"IMAP_POLL_INTERVAL" default:"1m" help:"how often the bounce mailboxes of SMTP provider configurations (bounce_imap_host) are polled over IMAP; 0 turns the poller off"`
	// Timeout bounds dialling and each IMAP command.
	Timeout time.Duration `env:"IMAP_POLL_TIMEOUT" default:"30s" help:"bound of dialling and of each IMAP command"`
	// Lease is how long one replica holds a mailbox: one mailbox's poll
	// ends within it.
	Lease time.Duration `env:"IMAP_POLL_LEASE" default:"5m" help:"one replica polls a mailbox at a time, holding it at most this long (a mailbox's poll ends within it)"`
	// MaxMessages bounds the mail handled per mailbox and poll.
	MaxMessages int `env:"IMAP_POLL_MAX_MESSAGES" default:"200" help:"mail handled per mailbox and poll; the rest waits for the next poll"`
	// Concurrency is how many mailboxes are polled at once.
	Concurrency int `env:"IMAP_POLL_CONCURRENCY" default:"4" help:"mailboxes polled at the same time"`
	// MaxBackoff bounds the wait after a mailbox's failed polls (doubling
	// from Interval).
	MaxBackoff time.Duration `env:"IMAP_POLL_MAX_BACKOFF" default:"1h" help:"longest wait before polling a mailbox again after failed polls (doubling from IMAP_POLL_INTERVAL)"`
	// MasterKeys opens the mailboxes' passwords (pkg/secretbox), the
	// workers' MASTER_KEYS; without them the poller is off.
	MasterKeys string `env:"MASTER_KEYS" help:"master keys that open provider secrets (the bounce mailboxes' passwords), as the workers': id:base64,id:base64; unset turns the IMAP poller off"`
	// Outbound is where the poller may connect (OUTBOUND_ALLOW_NETS; unset:
	// the public internet only): the tenant chooses the IMAP host.
	Outbound netguard.Config
}

// Enabled reports whether the poller runs.
func (c Config) Enabled() bool { return c.Interval > 0 && c.MasterKeys != "" }

// WithDefaults fills unset fields with the defaults the env tags name.
func (c Config) WithDefaults() (Config, error) {
	err := envconfig.FillDefaults(&c, "Timeout", "Lease", "MaxMessages", "Concurrency", "MaxBackoff")
	return c, err
}

func (c Config) validate() error {
	var errs []error
	if c.Interval < 0 || c.Timeout <= 0 || c.Lease <= c.Timeout || c.MaxBackoff < c.Interval {
		errs = append(errs, errors.New("want interval >= 0, timeout > 0, lease > timeout, max backoff >= interval"))
	}
	if c.MaxMessages < 1 || c.Concurrency < 1 {
		errs = append(errs, errors.New("max messages and concurrency must be positive"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("imap poll config: %w", err)
	}
	return nil
}
