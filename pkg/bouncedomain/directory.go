package bouncedomain

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// ChangedSubject is the core NATS subject ingest announces a change of the
// verified bounce domains on (no payload): Directories reload at once.
const ChangedSubject = "emailsender.bounce_domains.changed"

// Announce tells every Directory that the verified domains changed. A lost
// announcement costs at most a Directory's refresh interval.
func Announce(nc *nats.Conn) error {
	if nc == nil {
		return nil
	}
	if err := nc.Publish(ChangedSubject, nil); err != nil {
		return fmt.Errorf("announce bounce domain change: %w", err)
	}
	return nil
}

// Directory is every verified bounce domain and its account, in memory, for
// the inbound service's RCPT checks (no database query per recipient):
// loaded by Refresh, kept fresh by Run.
type Directory struct {
	db  DB
	log *slog.Logger
	// owners is the map of the last load (never written after it is stored).
	owners atomic.Pointer[map[string]string]
}

// NewDirectory returns an empty directory reading db.
func NewDirectory(db DB, log *slog.Logger) *Directory {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Directory{db: db, log: log}
	d.owners.Store(&map[string]string{})
	return d
}

// Owner is the account domain (lower case, no trailing dot) is verified for.
func (d *Directory) Owner(domain string) (string, bool) {
	a, ok := (*d.owners.Load())[domain]
	return a, ok
}

// Len is the number of verified domains loaded.
func (d *Directory) Len() int { return len(*d.owners.Load()) }

// Refresh loads the verified domains from the database.
func (d *Directory) Refresh(ctx context.Context) error {
	m, err := Owners(ctx, d.db)
	if err != nil {
		return err
	}
	d.owners.Store(&m)
	return nil
}

// Run keeps the directory fresh until ctx ends: it reloads every interval
// and whenever ingest announces a change on nc (nil: the interval only). A
// failed reload keeps the last good map and is tried again at the next
// tick.
func (d *Directory) Run(ctx context.Context, nc *nats.Conn, interval time.Duration) error {
	kick := make(chan struct{}, 1)
	if nc != nil {
		sub, err := nc.Subscribe(ChangedSubject, func(*nats.Msg) {
			select {
			case kick <- struct{}{}:
			default:
			}
		})
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", ChangedSubject, err)
		}
		defer func() { _ = sub.Unsubscribe() }()
		// The subscription is in place before the load below: a change
		// announced meanwhile is loaded again, not lost.
		if err := nc.Flush(); err != nil {
			d.log.WarnContext(ctx, "flush bounce domain subscription", "error", err)
		}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := d.Refresh(rctx); err != nil && ctx.Err() == nil {
			d.log.WarnContext(ctx, "reload bounce domains; keeping the last ones", "error", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-kick:
		}
	}
}
