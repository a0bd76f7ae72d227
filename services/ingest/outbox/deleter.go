package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/services/ingest/store"
)

// DeleterConfig tunes the Deleter. Its tags are the environment variables
// (part of the ingest service's Config) and the one source of the defaults.
type DeleterConfig struct {
	// Interval is the longest a published row waits for its deletion.
	Interval time.Duration `env:"OUTBOX_DELETE_INTERVAL" default:"50ms" help:"batching of outbox deletes after publish"`
	// Batch is the most rows one DELETE removes.
	Batch int `env:"OUTBOX_DELETE_BATCH" default:"500" help:"most outbox rows one delete after publish removes"`
	// Queue is how many rows may wait; beyond it rows are left to the relay
	// (whose publish JetStream then drops as a duplicate).
	Queue int `env:"OUTBOX_DELETE_QUEUE" default:"10000" help:"published outbox rows waiting for their delete; beyond it the relay republishes them (as duplicates) and deletes them"`
	// FlushTimeout bounds the final flush on shutdown.
	FlushTimeout time.Duration `env:"OUTBOX_DELETE_FLUSH_TIMEOUT" default:"5s" help:"final flush of queued outbox deletes on shutdown"`
}

// WithDefaults fills unset fields from the default tags.
func (c DeleterConfig) WithDefaults() DeleterConfig {
	// The names are this type's own fields: an error here is a typo in this
	// list, caught by TestConfigDefaultsAreTheTags.
	_ = envconfig.FillDefaults(&c, "Interval", "Batch", "Queue", "FlushTimeout")
	return c
}

// Validate checks a configuration after WithDefaults; each error names its
// variable.
func (c DeleterConfig) Validate() error {
	switch {
	case c.Interval <= 0:
		return fmt.Errorf("OUTBOX_DELETE_INTERVAL=%s: want a positive duration", c.Interval)
	case c.Batch <= 0:
		return fmt.Errorf("OUTBOX_DELETE_BATCH=%d: want 1 or more", c.Batch)
	case c.Queue <= 0:
		return fmt.Errorf("OUTBOX_DELETE_QUEUE=%d: want 1 or more", c.Queue)
	case c.FlushTimeout <= 0:
		return fmt.Errorf("OUTBOX_DELETE_FLUSH_TIMEOUT=%s: want a positive duration", c.FlushTimeout)
	}
	return nil
}

// Deleter removes the outbox rows of jobs the accepting call published, in
// batches, off the request path.
type Deleter struct {
	db  store.DBTX
	cfg DeleterConfig
	log *slog.Logger
	ch  chan store.MessageKey
}

// NewDeleter returns a deleter; Run must be running for rows to be deleted.
func NewDeleter(db store.DBTX, cfg DeleterConfig, log *slog.Logger) *Deleter {
	cfg = cfg.WithDefaults()
	return &Deleter{db: db, cfg: cfg, log: log, ch: make(chan store.MessageKey, cfg.Queue)}
}

// Add schedules the deletion of a published job's outbox row. It never blocks:
// when the queue is full the row stays, and the relay's later publish of it is
// a JetStream duplicate.
func (d *Deleter) Add(k store.MessageKey) {
	select {
	case d.ch <- k:
	default:
		d.log.Debug("outbox delete queue full; leaving row to the relay", "account_id", k.AccountID, "message_id", k.MessageID)
	}
}

// Run deletes rows until ctx ends, then flushes what is queued.
func (d *Deleter) Run(ctx context.Context) error {
	t := time.NewTicker(d.cfg.Interval)
	defer t.Stop()
	pending := make([]store.MessageKey, 0, d.cfg.Batch)
	flush := func(ctx context.Context) {
		if len(pending) == 0 {
			return
		}
		if err := store.DeletePublished(ctx, d.db, pending); err != nil {
			// The rows stay; the relay publishes them again as duplicates and
			// deletes them.
			d.log.WarnContext(ctx, "delete published outbox rows", "rows", len(pending), "error", err)
		}
		pending = pending[:0]
	}
	for {
		select {
		case k := <-d.ch:
			pending = append(pending, k)
			if len(pending) >= d.cfg.Batch {
				flush(ctx)
			}
		case <-t.C:
			flush(ctx)
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.FlushTimeout)
			defer cancel()
			for {
				select {
				case k := <-d.ch:
					pending = append(pending, k)
					if len(pending) >= d.cfg.Batch {
						flush(fctx)
					}
				default:
					flush(fctx)
					return nil
				}
			}
		}
	}
}
