package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/telemetry"
	"github.com/namirasoft/email-sender/services/ingest/store"
	"github.com/namirasoft/email-sender/services/ingest/templates"
)

// RelayConfig tunes the Relay. Its tags are the environment variables (part
// of the ingest service's Config) and the one source of the defaults.
type RelayConfig struct {
	// Interval is how often the outbox is polled when it has nothing due.
	Interval time.Duration `env:"OUTBOX_INTERVAL" default:"1s" help:"outbox relay poll interval"`
	// Batch is the most rows one pass claims.
	Batch int `env:"OUTBOX_BATCH" default:"200" help:"outbox rows per relay pass"`
	// Grace is how old an immediate row must be before the relay takes it, so
	// it does not race the accepting call's own publish. Zero takes the
	// default; a negative value means none (tests).
	Grace time.Duration `env:"OUTBOX_GRACE" default:"5s" help:"age before the relay takes an immediate row"`
	// PublishTimeout bounds the wait for one pass's acknowledgements.
	PublishTimeout time.Duration `env:"OUTBOX_PUBLISH_TIMEOUT" default:"5s" help:"relay wait for JetStream acks"`
	// MaxBackoff bounds the wait between passes while publishing fails.
	MaxBackoff time.Duration `env:"OUTBOX_MAX_BACKOFF" default:"30s" help:"relay backoff cap while NATS is down"`
}

// WithDefaults fills unset fields from the default tags. Grace is filled only
// when zero: a negative grace means none.
func (c RelayConfig) WithDefaults() RelayConfig {
	// The names are this type's own fields: an error here is a typo in this
	// list, caught by TestConfigDefaultsAreTheTags.
	_ = envconfig.FillDefaults(&c, "Interval", "Batch", "PublishTimeout", "MaxBackoff")
	if c.Grace == 0 {
		_ = envconfig.FillDefaults(&c, "Grace")
	}
	return c
}

// Validate checks a configuration after WithDefaults; each error names its
// variable.
func (c RelayConfig) Validate() error {
	switch {
	case c.Interval <= 0:
		return fmt.Errorf("OUTBOX_INTERVAL=%s: want a positive duration", c.Interval)
	case c.Batch <= 0:
		return fmt.Errorf("OUTBOX_BATCH=%d: want 1 or more", c.Batch)
	case c.PublishTimeout <= 0:
		return fmt.Errorf("OUTBOX_PUBLISH_TIMEOUT=%s: want a positive duration", c.PublishTimeout)
	case c.MaxBackoff <= 0:
		return fmt.Errorf("OUTBOX_MAX_BACKOFF=%s: want a positive duration", c.MaxBackoff)
	}
	return nil
}

// Relay publishes due outbox rows. Any number of relays (one per ingest
// replica) may run: each pass locks its rows with SKIP LOCKED, publishes them,
// and in the same transaction deletes them and moves SCHEDULED messages to
// QUEUED.
type Relay struct {
	db  store.Beginner
	pub queue.Publisher
	tel *telemetry.Telemetry
	log *slog.Logger
	cfg RelayConfig
	// Prepare, when set, runs before the first pass until it succeeds (e.g. to
	// create the streams once NATS is reachable). An error wrapping ErrFatal
	// stops the relay.
	Prepare func(ctx context.Context) error
}

// ErrFatal, wrapped by Prepare, stops Run.
var ErrFatal = errors.New("fatal")

// NewRelay returns a relay.
func NewRelay(db store.Beginner, pub queue.Publisher, tel *telemetry.Telemetry, log *slog.Logger, cfg RelayConfig) *Relay {
	return &Relay{db: db, pub: pub, tel: tel, log: log, cfg: cfg.WithDefaults()}
}

// Run relays until ctx ends. A pass that fails (NATS or PostgreSQL down) is
// retried after an exponential backoff with jitter.
func (r *Relay) Run(ctx context.Context) error {
	prepared := r.Prepare == nil
	failures := 0
	for {
		var (
			n   int
			err error
		)
		if !prepared {
			err = r.Prepare(ctx)
			if errors.Is(err, ErrFatal) {
				return err
			}
			prepared = err == nil
		}
		if prepared {
			n, err = r.RunOnce(ctx)
		}
		wait := r.cfg.Interval
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			failures++
			wait = backoff(r.cfg.Interval, r.cfg.MaxBackoff, failures)
			level := slog.LevelWarn
			if errors.Is(err, queue.ErrDisconnected) {
				level = slog.LevelDebug
			}
			r.log.Log(ctx, level, "outbox relay pass failed", "error", err, "retry_in", wait)
		case n >= r.cfg.Batch:
			failures = 0
			continue // more may be due
		default:
			failures = 0
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func backoff(base, max time.Duration, failures int) time.Duration {
	d := base
	for i := 1; i < failures && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	// Full jitter over the upper half keeps replicas from retrying in step.
	return d/2 + rand.N(d/2+1)
}

// RunOnce relays one batch of due rows and returns how many it claimed. It
// fails when no row could be published.
func (r *Relay) RunOnce(ctx context.Context) (int, error) {
	if !queue.Connected(r.pub) {
		return 0, queue.ErrDisconnected
	}
	tx, err := r.db.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	rows, err := store.ClaimDue(ctx, tx, max(r.cfg.Grace, 0), r.cfg.Batch)
	if err != nil {
		return 0, err
	}
	if len(rows) == 0 {
		return 0, nil
	}
	var (
		msgs      []*nats.Msg
		events    []*nats.Msg
		sent      []store.OutboxRow
		orphans   []store.MessageKey
		gone      []store.MessageKey
		goneMsgs  []*nats.Msg
		spans     []trace.Span
		published []store.MessageKey
		scheduled []store.MessageKey
		failed    []store.MessageKey
	)
	for _, row := range rows {
		if row.Content == nil && !row.Stored {
			orphans = append(orphans, row.MessageKey)
			continue
		}
		if row.Content == nil {
			ev, err := ContentGoneEvent(row.AccountID, row.MessageID, time.Now())
			if err != nil {
				return 0, err
			}
			gone, goneMsgs = append(gone, row.MessageKey), append(goneMsgs, ev)
			continue
		}
		m := queue.NewMsg(row.Subject, row.MessageID, row.Content)
		pctx := r.tel.Propagator.Extract(ctx, propagation.HeaderCarrier(http.Header{"Traceparent": {row.Traceparent}}))
		pctx, span := r.tel.Tracer("ingest/outbox").Start(pctx, "outbox relay publish", trace.WithSpanKind(trace.SpanKindProducer))
		r.tel.InjectNATS(pctx, m.Header)
		// The message's ACCEPTED (SCHEDULED) event goes with it: the row is
		// done only when both are on their streams (AcceptedEvent).
		ev, err := AcceptedEvent(row.AccountID, row.MessageID, row.Status, row.CreatedAt, templates.AcceptedDetail(row.Tags))
		if err != nil {
			span.End()
			return 0, err
		}
		r.tel.InjectNATS(pctx, ev.Header)
		msgs = append(msgs, m)
		events = append(events, ev)
		sent = append(sent, row)
		spans = append(spans, span)
	}
	evErrs := queue.PublishAll(ctx, r.pub, events, r.cfg.PublishTimeout, jetstream.WithExpectStream(queue.EventStream))
	errs := queue.PublishAll(ctx, r.pub, msgs, r.cfg.PublishTimeout, jetstream.WithExpectStream(queue.SendStream))
	for i := range errs {
		if errs[i] == nil && evErrs[i] != nil {
			errs[i] = fmt.Errorf("accepted event: %w", evErrs[i])
		}
	}
	var firstErr error
	for i, err := range queue.PublishAll(ctx, r.pub, goneMsgs, r.cfg.PublishTimeout, jetstream.WithExpectStream(queue.EventStream)) {
		k := gone[i]
		if err != nil {
			failed = append(failed, k)
			firstErr = cmp.Or(firstErr, err)
			continue
		}
		published = append(published, k)
		r.log.WarnContext(ctx, "failed a queued message whose content is gone", "account_id", k.AccountID, "message_id", k.MessageID)
	}
	for i, row := range sent {
		if errs[i] != nil {
			spans[i].RecordError(errs[i])
			failed = append(failed, row.MessageKey)
			if firstErr == nil {
				firstErr = errs[i]
			}
		} else {
			published = append(published, row.MessageKey)
			if row.Status == msgstatus.Scheduled {
				scheduled = append(scheduled, row.MessageKey)
			}
		}
		spans[i].End()
	}
	if err := r.finish(ctx, tx, append(published, orphans...), scheduled, failed, firstErr); err != nil {
		return 0, err
	}
	for _, k := range published {
		r.log.DebugContext(ctx, "outbox relayed job", "account_id", k.AccountID, "message_id", k.MessageID)
	}
	for _, k := range orphans {
		r.log.InfoContext(ctx, "dropped outbox row without message", "account_id", k.AccountID, "message_id", k.MessageID)
	}
	if len(published) == 0 && firstErr != nil {
		return len(rows), firstErr
	}
	return len(rows), nil
}

func (r *Relay) finish(ctx context.Context, tx pgx.Tx, done, scheduled, failed []store.MessageKey, pubErr error) error {
	if err := store.DeleteOutbox(ctx, tx, done); err != nil {
		return err
	}
	if err := store.MarkQueued(ctx, tx, scheduled); err != nil {
		return err
	}
	if len(failed) > 0 {
		if err := store.RecordOutboxFailure(ctx, tx, failed, pubErr.Error()); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit outbox pass: %w", err)
	}
	return nil
}
