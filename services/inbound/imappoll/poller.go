// Package imappoll polls the bounce mailboxes of SMTP provider
// configurations over IMAP (github.com/emersion/go-imap/v2): for a tenant
// whose SMTP server drops bounces and complaint reports into a mailbox
// instead of returning them to the signed envelope sender. Each mail is
// matched to a message of the configuration's account, by the signed
// bounce address it names in Delivered-To, X-Original-To, To... when there
// is one, else by the Message-ID of the original it returns, and recorded
// by the inbound service's one path (Recorder: the same code as reports
// received over SMTP).
//
// Handled mail gets the keyword $NamirasoftHandled (and \Seen when it was
// recorded), and the highest UID handled is stored in PostgreSQL
// (imap_poll_state) with the mailbox's UIDVALIDITY: a restart neither
// misses nor counts a report twice (events are idempotent too). One replica
// polls a mailbox at a time (a JetStream KV lease per configuration); a
// failing mailbox is polled again after a doubling backoff. Connections go
// through pkg/netguard: the tenant chooses the host.
package imappoll

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/namirasoft/email-sender/pkg/netguard"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/smtp"
	"github.com/namirasoft/email-sender/pkg/secretbox"
	"github.com/namirasoft/email-sender/pkg/verp"
)

// Found is a mail of a bounce mailbox and the message it is about.
type Found struct {
	// Token is the verified bounce address the mail names, nil when the
	// message was found by the returned original's Message-ID (MessageID).
	Token     *verp.Token
	MessageID string
	// AccountID is the configuration's: the message must be of it.
	AccountID string
	Raw       []byte
}

// Recorder records a mail as one received over SMTP (the inbound
// service's Record): recorded is true when events were published; an
// error means nothing may have been recorded.
type Recorder interface {
	Record(ctx context.Context, f Found) (recorded bool, err error)
}

// RecorderFunc is a Recorder.
type RecorderFunc func(ctx context.Context, f Found) (bool, error)

// Record calls f.
func (f RecorderFunc) Record(ctx context.Context, m Found) (bool, error) { return f(ctx, m) }

// Deps are what the poller uses.
type Deps struct {
	Pool      *pgxpool.Pool
	JetStream jetstream.JetStream
	// Signer verifies the bounce addresses (BOUNCE_DOMAIN, BOUNCE_KEY).
	Signer   *verp.Signer
	Recorder Recorder
	// Keyring opens the mailboxes' passwords; nil: parsed from
	// Config.MasterKeys.
	Keyring *secretbox.Keyring
	// RootCAs verify the IMAP servers' certificates; nil: the system's.
	RootCAs *x509.CertPool
	// ParseBytes is how much of each mail is fetched (INBOUND_PARSE_BYTES).
	ParseBytes int64
	Logger     *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time
}

// Poller polls the bounce mailboxes.
type Poller struct {
	cfg    Config
	deps   Deps
	log    *slog.Logger
	guard  *netguard.Guard
	leases *leases
	state  *stateStore
	holder string

	mu      sync.Mutex
	backoff map[string]failure
}

// failure is a mailbox's run of failed polls.
type failure struct {
	count int
	next  time.Time
}

// New returns a poller; it starts nothing but makes the lease bucket.
func New(ctx context.Context, cfg Config, deps Deps) (*Poller, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if deps.Pool == nil || deps.JetStream == nil || deps.Signer == nil || deps.Recorder == nil {
		return nil, errors.New("imap poller: missing dependencies: pool, jetstream, signer and recorder")
	}
	if deps.Keyring == nil {
		if deps.Keyring, err = secretbox.ParseKeyring(cfg.MasterKeys, ""); err != nil {
			return nil, fmt.Errorf("imap poller: %w", err)
		}
	}
	if deps.ParseBytes <= 0 {
		deps.ParseBytes = 256 << 10
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	guard, err := netguard.New(cfg.Outbound)
	if err != nil {
		return nil, fmt.Errorf("imap poller: %w", err)
	}
	lz, err := ensureLeases(ctx, deps.JetStream, cfg.Lease)
	if err != nil {
		return nil, fmt.Errorf("imap poller: %w", err)
	}
	host, _ := os.Hostname()
	return &Poller{
		cfg: cfg, deps: deps, log: deps.Logger, guard: guard, leases: lz,
		state:   &stateStore{pool: deps.Pool},
		holder:  fmt.Sprintf("%s/%d/%d", host, os.Getpid(), deps.Now().UnixNano()),
		backoff: map[string]failure{},
	}, nil
}

// Run polls every Interval until ctx ends; a poll under way finishes its
// current mail.
func (p *Poller) Run(ctx context.Context) error {
	p.log.InfoContext(ctx, "imap poller on", "interval", p.cfg.Interval.String())
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		if err := p.PollAll(ctx); err != nil && ctx.Err() == nil {
			p.log.WarnContext(ctx, "imap poll: list mailboxes", "error", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// mailbox is one configuration's bounce mailbox.
type mailbox struct {
	providerID, accountID string
	settings              smtp.Settings
	password              string
}

// PollAll polls every bounce mailbox not backing off and not leased by
// another replica; an error is about listing them (each mailbox's own are
// logged and stored).
func (p *Poller) PollAll(ctx context.Context) error {
	boxes, err := p.mailboxes(ctx)
	if err != nil {
		return err
	}
	g := errgroup.Group{}
	g.SetLimit(p.cfg.Concurrency)
	for _, b := range boxes {
		if !p.due(b.providerID) {
			continue
		}
		g.Go(func() error {
			p.pollLeased(ctx, b)
			return nil
		})
	}
	return g.Wait()
}

// mailboxes are the configurations with a bounce mailbox, their passwords
// opened; one that cannot be read is logged and skipped.
func (p *Poller) mailboxes(ctx context.Context) ([]mailbox, error) {
	rows, err := p.deps.Pool.Query(ctx, `
		SELECT id::text, account_id::text, settings, secret FROM provider_configs
		WHERE kind = $1 AND COALESCE(settings->>'bounce_imap_host', '') <> ''`, smtp.Kind)
	if err != nil {
		return nil, fmt.Errorf("list bounce mailboxes: %w", err)
	}
	defer rows.Close()
	var out []mailbox
	for rows.Next() {
		var (
			cfg    provider.Config
			secret []byte
		)
		if err := rows.Scan(&cfg.ID, &cfg.AccountID, &cfg.Settings, &secret); err != nil {
			return nil, fmt.Errorf("list bounce mailboxes: %w", err)
		}
		b, err := p.open(cfg, secret)
		if err != nil {
			p.log.WarnContext(ctx, "imap poll: skip configuration", "provider_id", cfg.ID, "account_id", cfg.AccountID, "error", err)
			continue
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list bounce mailboxes: %w", err)
	}
	return out, nil
}

// open parses a configuration and opens its secret (sealed for its id).
func (p *Poller) open(cfg provider.Config, secret []byte) (mailbox, error) {
	if len(secret) == 0 {
		return mailbox{}, errors.New("no secret: the bounce mailbox has no password")
	}
	pt, err := p.deps.Keyring.Open(secret, []byte(cfg.ID))
	if err != nil {
		return mailbox{}, fmt.Errorf("open secret: %w", err)
	}
	cfg.Secret = pt
	s, err := smtp.ParseSettings(cfg)
	if err != nil {
		return mailbox{}, err
	}
	var sec smtp.Secret
	if err := json.Unmarshal(pt, &sec); err != nil {
		return mailbox{}, errors.New("secret is not a JSON object of passwords")
	}
	return mailbox{providerID: cfg.ID, accountID: cfg.AccountID, settings: s, password: sec.BounceIMAPPassword}, nil
}

// due reports whether a mailbox is not backing off.
func (p *Poller) due(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	f, ok := p.backoff[id]
	return !ok || !p.deps.Now().Before(f.next)
}

// failed doubles a mailbox's backoff (from Interval up to MaxBackoff);
// err nil ends it.
func (p *Poller) failed(id string, err error) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		delete(p.backoff, id)
		return 0
	}
	f := p.backoff[id]
	f.count++
	wait := p.cfg.Interval
	for i := 1; i < f.count && wait < p.cfg.MaxBackoff; i++ {
		wait *= 2
	}
	wait = min(max(wait, time.Second), p.cfg.MaxBackoff)
	f.next = p.deps.Now().Add(wait)
	p.backoff[id] = f
	return wait
}

// pollLeased polls b under its lease, and records how it went.
func (p *Poller) pollLeased(ctx context.Context, b mailbox) {
	log := p.log.With("provider_id", b.providerID, "account_id", b.accountID, "imap_host", b.settings.BounceIMAPHost)
	release, ok, err := p.leases.acquire(ctx, b.providerID, p.holder)
	if err != nil {
		log.WarnContext(ctx, "imap poll: lease", "error", err)
		return
	}
	if !ok {
		log.DebugContext(ctx, "imap poll: mailbox leased by another replica")
		return
	}
	defer release()
	// The poll ends within the lease: another replica may take over then.
	pctx, cancel := context.WithTimeout(ctx, p.cfg.Lease-p.cfg.Timeout)
	defer cancel()
	n, err := p.poll(pctx, b)
	wait := p.failed(b.providerID, err)
	if err != nil {
		log.WarnContext(ctx, "imap poll failed; backing off", "error", err, "retry_in", wait.String(), "handled", n)
		if serr := p.state.failed(context.WithoutCancel(ctx), b, err); serr != nil {
			log.WarnContext(ctx, "imap poll: record error", "error", serr)
		}
		return
	}
	if n > 0 {
		log.InfoContext(ctx, "imap poll", "handled", n)
	}
}
