package delivery

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/namirasoft/email-sender/pkg/accountstate"
	"github.com/namirasoft/email-sender/pkg/telemetry"
	"github.com/namirasoft/email-sender/services/worker/attempt"
	"github.com/namirasoft/email-sender/services/worker/store"
)

// What a delivery needs, declared here where it is used; the worker's
// JetStream and PostgreSQL implementations are attempt.Store,
// timeline.Publisher, store.Configs, store.Messages, ratelimit.Limits and its
// JetStream, and the state machine's tests (deliver_test.go) use fakes.
type (
	// AttemptStore keeps each message's attempt record (EMAIL_ATTEMPTS).
	AttemptStore interface {
		Begin(ctx context.Context, messageID, providerID string, n int, now, until time.Time) (*attempt.Record, uint64, error)
		Renew(ctx context.Context, messageID, providerID string, n int, until time.Time, rev uint64) (uint64, error)
		Finish(ctx context.Context, messageID string, rec attempt.Record) error
		Get(ctx context.Context, messageID string) (*attempt.Record, error)
	}
	// EventSink publishes delivery events (EMAIL_EVENTS).
	EventSink interface {
		Publish(ctx context.Context, accountID, messageID string, events [][]byte, ids []string) error
		PublishAsync(ctx context.Context, accountID, messageID string, events [][]byte, ids []string) ([]jetstream.PubAckFuture, error)
		Wait(ctx context.Context, futures []jetstream.PubAckFuture) error
	}
	// ConfigSource reads provider configurations (PostgreSQL).
	ConfigSource interface {
		Load(ctx context.Context, accountID, id string) (store.ProviderConfig, error)
		MarkUnhealthy(ctx context.Context, accountID, id, note string) error
	}
	// RateLimits paces sends per account and per provider configuration.
	RateLimits interface {
		Wait(ctx context.Context, accountID, configID, kind string) error
	}
	// Cancellations says whether a scheduled message was canceled, and
	// whether a job agrees with its stored message and which of its
	// recipients the account suppresses (PostgreSQL).
	Cancellations interface {
		Canceled(ctx context.Context, accountID, messageID string) (bool, error)
		Check(ctx context.Context, accountID, messageID, providerID string, recipients []string) (store.Stored, []string, error)
	}
	// AccountStates says whether an account is active, suspended (its mail
	// is held) or tombstoned (nothing more is sent for it): an
	// *accountstate.View.
	AccountStates interface {
		State(ctx context.Context, accountID string) (accountstate.Entry, error)
		// Paused says whether the reputation guard paused a provider
		// configuration of the account (its mail is parked).
		Paused(ctx context.Context, accountID, providerID string) (accountstate.Pause, error)
	}
	// ConfigChanges tells ingest's send caches that an account's provider
	// configuration changed (queue.AccountConfigFeed: a *invalidate.Feed).
	ConfigChanges interface {
		Post(ctx context.Context, accountIDs ...string) error
	}
	// JobPublisher publishes a job moved to a fallback (EMAIL_SEND).
	JobPublisher interface {
		PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
	}
)

// Settings bound and pace deliveries; the worker fills them from its Config.
type Settings struct {
	// MaxAttempts bounds the attempts on one provider configuration.
	MaxAttempts int
	// MaxAge bounds how long a message is retried after it was accepted.
	MaxAge time.Duration
	// BackoffBase and BackoffMax shape the retry delay (backoff).
	BackoffBase, BackoffMax time.Duration
	// AckWait is the send consumers' ack wait: in-progress acks come every
	// AckWait/3, and an attempt's lease leaves two of them after SendTimeout.
	AckWait time.Duration
	// SendTimeout bounds one provider call.
	SendTimeout time.Duration
	// RetryAmbiguous retries an ambiguous outcome like a transient one
	// (WORKER_AMBIGUOUS_POLICY=retry) instead of failing the message.
	RetryAmbiguous bool
	// FailoverAfter is the number of transient failures on a configuration
	// after which a message moves to the configuration's fallback, if any.
	FailoverAfter int
}

// Deps are a Service's collaborators.
type Deps struct {
	Attempts AttemptStore
	Events   EventSink
	Configs  ConfigSource
	// Changes, when set, is told of the configurations marked unhealthy.
	Changes   ConfigChanges
	Messages  Cancellations
	Limits    RateLimits
	Jobs      JobPublisher
	States    AccountStates
	Telemetry *telemetry.Telemetry
	Logger    *slog.Logger
	// BeforeSend, when set, runs after the attempt is recorded as started,
	// before the provider call (for tests that must wait for that step).
	BeforeSend func(messageID string, attempt int)
	// Parked, when set, runs after a job of a paused provider configuration
	// was parked (the worker releases it at once if the pause was lifted
	// meanwhile).
	Parked func(accountID, providerID string)
}

// Service runs deliveries: one attempt of one job each, from its claim to the
// job's settlement.
type Service struct {
	cfg        Settings
	attempts   AttemptStore
	events     EventSink
	configs    ConfigSource
	changes    ConfigChanges
	messages   Cancellations
	limits     RateLimits
	jobs       JobPublisher
	states     AccountStates
	tel        *telemetry.Telemetry
	log        *slog.Logger
	beforeSend func(messageID string, attempt int)
	parked     func(accountID, providerID string)
	metrics    *metrics
	now        func() time.Time
	// running are the deliveries in flight by account, to cancel when the
	// account gets a tombstone (Abort).
	runMu   sync.Mutex
	running map[string]map[*delivery]context.CancelCauseFunc
}

// New returns a Service with cfg and deps; Telemetry and Logger may be nil.
func New(cfg Settings, deps Deps) *Service {
	if deps.Telemetry == nil {
		deps.Telemetry = telemetry.Nop()
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{
		cfg: cfg, attempts: deps.Attempts, events: deps.Events, configs: deps.Configs, changes: deps.Changes,
		messages: deps.Messages, limits: deps.Limits, jobs: deps.Jobs, states: deps.States,
		running: map[string]map[*delivery]context.CancelCauseFunc{},
		tel:     deps.Telemetry, log: deps.Logger, beforeSend: deps.BeforeSend, parked: deps.Parked,
		metrics: newMetrics(deps.Telemetry), now: time.Now,
	}
}

// leaseFrom is the end of an attempt's claim on its message when it starts
// now: the provider call (SendTimeout), an ack wait to record the outcome,
// and another as grace for a worker that was cut off from NATS and records
// the moment NATS is back. Until then no other delivery sends the message.
func (s Settings) leaseFrom(now time.Time) time.Time {
	return now.Add(s.SendTimeout + 2*s.AckWait)
}

// retryAfterTrouble is the delay before a job comes back when the worker itself
// could not work on it (NATS or PostgreSQL unreachable); it is not an attempt
// outcome and publishes no retry event.
const retryAfterTrouble = 2 * time.Second
