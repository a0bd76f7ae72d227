package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/secretbox"
	"github.com/namirasoft/email-sender/pkg/telemetry"
	"github.com/namirasoft/email-sender/services/worker/provider"
)

// Deps are the worker's collaborators, built once by main.
type Deps struct {
	Pool      *pgxpool.Pool
	JetStream jetstream.JetStream
	Telemetry *telemetry.Telemetry
	Logger    *slog.Logger
	// Keyring opens provider secrets; nil when no configuration has one.
	Keyring *secretbox.Keyring
	// Senders by provider kind. Kinds listed in Config.Providers must be present.
	Senders map[string]provider.Sender
	// Hooks let tests observe progress; nil in production.
	Hooks *Hooks
}

// Hooks are called at points of a delivery, for tests that must wait for a
// step rather than sleep. All are optional.
type Hooks struct {
	// BeforeSend runs after the attempt is recorded as started, before the provider call.
	BeforeSend func(messageID string, attempt int)
}

// Worker consumes send jobs and delivers them.
type Worker struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	configs  *configStore
	attempts *attempts
	events   *eventPublisher
	metrics  *metrics
	now      func() time.Time

	limMu     sync.Mutex
	accLimits map[string]*rate.Limiter
	prvLimits map[string]*rate.Limiter
}

// New validates cfg and prepares the worker; Run starts it.
func New(ctx context.Context, cfg Config, deps Deps) (*Worker, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	for _, kind := range cfg.Providers {
		if deps.Senders[kind] == nil {
			return nil, fmt.Errorf("no sender for provider kind %q", kind)
		}
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Telemetry == nil {
		deps.Telemetry = telemetry.Nop()
	}
	att, err := ensureAttempts(ctx, deps.JetStream, cfg.AttemptsTTL, cfg.NATS.StreamReplicas, deps.Logger)
	if err != nil {
		return nil, err
	}
	return &Worker{
		cfg:       cfg,
		deps:      deps,
		log:       deps.Logger,
		configs:   &configStore{pool: deps.Pool, keyring: deps.Keyring, ttl: cfg.ConfigCacheTTL, now: time.Now, cache: map[string]cachedConfig{}},
		attempts:  att,
		events:    &eventPublisher{js: deps.JetStream, tel: deps.Telemetry},
		metrics:   newMetrics(deps.Telemetry),
		now:       time.Now,
		accLimits: map[string]*rate.Limiter{},
		prvLimits: map[string]*rate.Limiter{},
	}, nil
}

// Run consumes until ctx ends, then stops fetching, lets in-flight deliveries
// finish (bounded by SendTimeout) and returns.
func (w *Worker) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	refs := make([]telemetry.ConsumerRef, 0, len(w.cfg.Providers))
	for _, kind := range w.cfg.Providers {
		g.Go(func() error { return w.consume(ctx, kind) })
		refs = append(refs, telemetry.ConsumerRef{Stream: queue.SendStream, Consumer: consumerName(kind)})
	}
	stats := telemetry.NewConsumerStats(w.deps.Telemetry, w.deps.JetStream, 0, w.log, refs...)
	g.Go(func() error { return stats.Run(ctx) })
	return g.Wait()
}

func consumerName(kind string) string { return "worker-" + kind }

func (w *Worker) consume(ctx context.Context, kind string) error {
	cons, err := w.consumer(ctx, kind)
	if err != nil || cons == nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(w.cfg.Concurrency))
	if err != nil {
		return fmt.Errorf("consume %s: %w", kind, err)
	}
	sender := w.deps.Senders[kind]
	sem := make(chan struct{}, w.cfg.Concurrency)
	var inflight sync.WaitGroup
	stop := context.AfterFunc(ctx, it.Drain)
	defer stop()
	w.log.InfoContext(ctx, "worker consuming", "provider", kind, "concurrency", w.cfg.Concurrency)
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				break
			}
			w.log.WarnContext(ctx, "fetch send job", "provider", kind, "error", err)
			continue
		}
		sem <- struct{}{}
		inflight.Add(1)
		go func() {
			defer func() { <-sem; inflight.Done() }()
			// Deliveries in flight at shutdown run to completion on their own
			// context: a send interrupted half way is the one thing we avoid.
			w.deliver(context.WithoutCancel(ctx), ctx.Done(), kind, sender, msg)
		}()
	}
	inflight.Wait()
	w.log.Info("worker stopped", "provider", kind)
	return nil
}

// consumer creates (or updates) the durable consumer of kind, retrying while
// JetStream is unreachable: a worker that starts before NATS waits for it.
func (w *Worker) consumer(ctx context.Context, kind string) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		Durable:       consumerName(kind),
		Description:   "delivers " + kind + " send jobs",
		FilterSubject: queue.SendFilter(kind),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       w.cfg.AckWait,
		// Attempts are bounded by the worker itself (MaxAttempts, MaxAge), which
		// publishes the final FAILED event; JetStream never drops a job silently.
		MaxDeliver:    -1,
		MaxAckPending: w.cfg.Concurrency * 2,
	}
	delay := 100 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		cons, err := w.deps.JetStream.CreateOrUpdateConsumer(cctx, queue.SendStream, cfg)
		cancel()
		if err == nil {
			return cons, nil
		}
		w.log.WarnContext(ctx, "create consumer; retrying", "provider", kind, "error", err, "retry_in", delay.String())
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

func (w *Worker) limiter(m map[string]*rate.Limiter, key string, r float64) *rate.Limiter {
	if r <= 0 {
		return nil
	}
	w.limMu.Lock()
	defer w.limMu.Unlock()
	l := m[key]
	if l == nil {
		burst := int(r)
		if burst < 1 {
			burst = 1
		}
		l = rate.NewLimiter(rate.Limit(r), burst)
		m[key] = l
	}
	return l
}
