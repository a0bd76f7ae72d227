package worker

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/secretbox"
	"github.com/namirasoft/email-sender/pkg/telemetry"
	"github.com/namirasoft/email-sender/services/worker/attempt"
	"github.com/namirasoft/email-sender/services/worker/delivery"
	"github.com/namirasoft/email-sender/services/worker/ratelimit"
	"github.com/namirasoft/email-sender/services/worker/store"
	"github.com/namirasoft/email-sender/services/worker/timeline"
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
	cfg        Config
	deps       Deps
	log        *slog.Logger
	deliveries *delivery.Service
}

// New validates cfg and prepares the worker; Run starts it.
func New(ctx context.Context, cfg Config, deps Deps) (*Worker, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	if len(cfg.Providers) == 0 {
		// Built in code: the kinds it has senders for.
		for kind := range deps.Senders {
			cfg.Providers = append(cfg.Providers, kind)
		}
		slices.Sort(cfg.Providers)
	}
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
	att, err := attempt.Ensure(ctx, deps.JetStream, cfg.AttemptsTTL, cfg.NATS.StreamReplicas, deps.Logger)
	if err != nil {
		return nil, err
	}
	var beforeSend func(string, int)
	if deps.Hooks != nil {
		beforeSend = deps.Hooks.BeforeSend
	}
	deliveries := delivery.New(cfg.deliverySettings(), delivery.Deps{
		Attempts:   att,
		Events:     timeline.NewPublisher(deps.JetStream, deps.Telemetry),
		Configs:    store.NewConfigs(deps.Pool, deps.Keyring, cfg.ConfigCacheTTL),
		Messages:   store.NewMessages(deps.Pool),
		Limits:     ratelimit.New(cfg.AccountRate, cfg.kindProviderRate),
		Jobs:       deps.JetStream,
		Telemetry:  deps.Telemetry,
		Logger:     deps.Logger,
		BeforeSend: beforeSend,
	})
	return &Worker{cfg: cfg, deps: deps, log: deps.Logger, deliveries: deliveries}, nil
}

// deliverySettings are what of c bounds and paces deliveries.
func (c Config) deliverySettings() delivery.Settings {
	return delivery.Settings{
		MaxAttempts: c.MaxAttempts, MaxAge: c.MaxAge,
		BackoffBase: c.BackoffBase, BackoffMax: c.BackoffMax,
		AckWait: c.AckWait, SendTimeout: c.SendTimeout,
		RetryAmbiguous: c.AmbiguousPolicy == AmbiguousRetry,
		FailoverAfter:  c.FailoverAfter,
	}
}

// Run consumes until ctx ends, then stops fetching, lets in-flight deliveries
// finish (bounded by SendTimeout) and returns.
func (w *Worker) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	src := statsSource{}
	refs := make([]telemetry.ConsumerRef, 0, len(w.cfg.Providers))
	for _, kind := range w.cfg.Providers {
		s := newScheduler(w, kind)
		src[legacyConsumerName(kind)] = s
		g.Go(func() error { return s.run(ctx) })
		refs = append(refs, telemetry.ConsumerRef{Stream: queue.SendStream, Consumer: legacyConsumerName(kind)})
	}
	stats := telemetry.NewConsumerStats(w.deps.Telemetry, src, 0, w.log, refs...)
	g.Go(func() error { return stats.Run(ctx) })
	return g.Wait()
}

// statsSource answers the consumer gauges' lookups of "worker-<kind>" with
// the sums over the kind's per-account consumers.
type statsSource map[string]*scheduler

func (src statsSource) Consumer(ctx context.Context, stream, name string) (jetstream.Consumer, error) {
	s := src[name]
	if s == nil || stream != queue.SendStream {
		return nil, jetstream.ErrConsumerNotFound
	}
	info, err := s.pending(ctx)
	if err != nil {
		return nil, err
	}
	return summedConsumer{info: info}, nil
}

// summedConsumer carries summed consumer info; only CachedInfo is used.
type summedConsumer struct {
	jetstream.Consumer
	info *jetstream.ConsumerInfo
}

func (c summedConsumer) CachedInfo() *jetstream.ConsumerInfo { return c.info }
