package outbox

import (
	"context"
	"log/slog"
	"time"

	"github.com/namirasoft/email-sender/services/ingest/store"
)

// DeleterConfig tunes the Deleter.
type DeleterConfig struct {
	// Interval is the longest a published row waits for its deletion.
	Interval time.Duration
	// Batch is the most rows one DELETE removes.
	Batch int
	// Queue is how many rows may wait; beyond it rows are left to the relay
	// (whose publish JetStream then drops as a duplicate).
	Queue int
	// FlushTimeout bounds the final flush on shutdown.
	FlushTimeout time.Duration
}

func (c DeleterConfig) withDefaults() DeleterConfig {
	if c.Interval <= 0 {
		c.Interval = 50 * time.Millisecond
	}
	if c.Batch <= 0 {
		c.Batch = 500
	}
	if c.Queue <= 0 {
		c.Queue = 10_000
	}
	if c.FlushTimeout <= 0 {
		c.FlushTimeout = 5 * time.Second
	}
	return c
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
	cfg = cfg.withDefaults()
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
		if err := store.DeleteOutbox(ctx, d.db, pending); err != nil {
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
