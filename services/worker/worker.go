package worker

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/namirasoft/email-sender/pkg/accountstate"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/gmail"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/secretbox"
	"github.com/namirasoft/email-sender/pkg/telemetry"
	"github.com/namirasoft/email-sender/services/worker/attempt"
	"github.com/namirasoft/email-sender/services/worker/delivery"
	"github.com/namirasoft/email-sender/services/worker/gmailpoll"
	"github.com/namirasoft/email-sender/services/worker/parked"
	"github.com/namirasoft/email-sender/services/worker/ratelimit"
	"github.com/namirasoft/email-sender/services/worker/schedule"
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
	// states follows the account states: suspended accounts are not
	// fetched, tombstoned ones have their deliveries aborted; and the
	// provider pauses: parked jobs are released when one is lifted.
	states *accountstate.View
	// bounces polls the gmail configurations' mailboxes (nil when this
	// worker does not deliver the gmail kind).
	bounces *gmailpoll.Poller
	parked  *parked.Mover
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
	states := accountstate.NewView(deps.Pool, deps.JetStream, cfg.NATS.StreamReplicas, deps.Logger)
	mover := parked.New(deps.JetStream, states, parkedSweep, deps.Logger)
	deliveries := delivery.New(cfg.deliverySettings(), delivery.Deps{
		Attempts:   att,
		Events:     timeline.NewPublisher(deps.JetStream, deps.Telemetry),
		Configs:    store.NewConfigs(deps.Pool, deps.Keyring, cfg.ConfigCacheTTL),
		Changes:    queue.AccountConfigFeed(deps.JetStream, cfg.NATS.StreamReplicas),
		Messages:   store.NewMessages(deps.Pool),
		Limits:     ratelimit.New(cfg.AccountRate, cfg.kindProviderRate),
		Jobs:       deps.JetStream,
		States:     states,
		Telemetry:  deps.Telemetry,
		Logger:     deps.Logger,
		BeforeSend: beforeSend,
		// A pause lifted while the job was being parked: released at once.
		Parked: func(accountID, providerID string) { mover.Notify(parked.Key{Account: accountID, Provider: providerID}) },
	})
	states.OnChange(deliveries.OnAccountState)
	states.OnPause(mover.OnPause)
	w := &Worker{cfg: cfg, deps: deps, log: deps.Logger, deliveries: deliveries, states: states, parked: mover}
	if mb, ok := deps.Senders[gmail.Kind].(gmailpoll.Mailbox); ok && slices.Contains(cfg.Providers, gmail.Kind) {
		w.bounces, err = gmailpoll.New(ctx, cfg.GmailPoll, gmailpoll.Deps{
			Pool: deps.Pool, JetStream: deps.JetStream, Mailbox: mb,
			Configs:     store.NewConfigs(deps.Pool, deps.Keyring, cfg.ConfigCacheTTL),
			Suppression: cfg.Suppression, Replicas: cfg.NATS.StreamReplicas,
			Telemetry: deps.Telemetry, Logger: deps.Logger,
		})
		if err != nil {
			return nil, err
		}
	}
	return w, nil
}

// parkedSweep is how often the worker looks for parked jobs of provider
// configurations no longer paused (a lift it missed).
const parkedSweep = 30 * time.Second

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
	gauges := schedule.Gauges{}
	var schedulers []*schedule.Scheduler
	for _, kind := range w.cfg.Providers {
		s := schedule.New(w.scheduleConfig(kind), w.deps.JetStream, w.kindDeliveries(kind), w.log)
		gauges.Add(s)
		schedulers = append(schedulers, s)
		g.Go(func() error { return s.Run(ctx) })
	}
	// A resumed account's held jobs are fetched at once.
	w.states.OnChange(func(accountstate.Entry) {
		for _, s := range schedulers {
			s.Wake()
		}
	})
	g.Go(func() error { return w.states.Watch(ctx) })
	if w.bounces != nil {
		g.Go(func() error { return w.bounces.Run(ctx) })
	}
	g.Go(func() error { return w.parked.Run(ctx) })
	stats := telemetry.NewConsumerStats(w.deps.Telemetry, gauges, 0, w.log, gauges.Refs()...)
	g.Go(func() error { return stats.Run(ctx) })
	return g.Wait()
}

// scheduleConfig is what of w's Config schedules the jobs of kind.
func (w *Worker) scheduleConfig(kind string) schedule.Config {
	return schedule.Config{
		Kind: kind, Concurrency: w.cfg.kindConcurrency(kind),
		AckWait: w.cfg.AckWait, AccountMaxAckPending: w.cfg.AccountMaxAckPending, AccountIdle: w.cfg.AccountIdle,
		DiscoveryInterval: w.cfg.DiscoveryInterval,
		Held: func(accountID string) bool {
			st, _ := w.states.Cached(accountID)
			return st.Held()
		},
	}
}

// kindDeliveries delivers the jobs of kind through its sender.
func (w *Worker) kindDeliveries(kind string) schedule.DeliverFunc {
	sender := w.deps.Senders[kind]
	return func(ctx context.Context, stop <-chan struct{}, msg jetstream.Msg) {
		w.deliveries.Deliver(ctx, stop, kind, sender, msg)
	}
}
