package delivery

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/accountstate"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/queue"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/worker/attempt"
	"github.com/namirasoft/email-sender/services/worker/store"
	"github.com/namirasoft/email-sender/services/worker/timeline"
)

// The delivery state machine without a NATS or PostgreSQL server: each
// outcome of a provider call becomes one settlement of the job, the events of
// the timeline, and the attempt record.
func TestOutcomeToSettlement(t *testing.T) {
	t.Parallel()
	permanent := errors.New("550 5.1.1 no such user")
	tests := []struct {
		name           string
		out            provider.Outcome
		tries          int
		retryAmbiguous bool // WORKER_AMBIGUOUS_POLICY=retry
		want           settlement
		events         []string
		record         string
		markedBy       string // a configuration marked unhealthy
		setup          func(b *deliveryBundle)
	}{
		{name: "sent", out: provider.Outcome{Class: provider.Sent, Response: "250 ok"},
			want: settlement{kind: ack}, events: []string{queue.EventSent}, record: attempt.Done},
		{name: "sent, one recipient refused", out: provider.Outcome{Class: provider.Sent, Rejected: map[string]string{"b@example.com": "550 no"}},
			want: settlement{kind: ack}, events: []string{queue.EventSent, queue.EventFailed}, record: attempt.Done},
		{name: "transient, attempts left", out: provider.Outcome{Class: provider.Transient, Err: errors.New("451 try later")}, tries: 1,
			want: settlement{kind: nakLater, delay: -1}, events: []string{queue.EventRetry}, record: attempt.Retry},
		{name: "transient, provider's retry-after", out: provider.Outcome{Class: provider.Transient, RetryAfter: 7 * time.Second}, tries: 1,
			want: settlement{kind: nakLater, delay: 7 * time.Second}, events: []string{queue.EventRetry}, record: attempt.Retry},
		{name: "transient, attempts exhausted", out: provider.Outcome{Class: provider.Transient, Err: errors.New("451")}, tries: 5,
			want: settlement{kind: term}, events: []string{queue.EventFailed}, record: attempt.Done},
		{name: "permanent", out: provider.Outcome{Class: provider.Permanent, Err: permanent},
			want: settlement{kind: term}, events: []string{queue.EventFailed}, record: attempt.Done},
		{name: "ambiguous, fail policy", out: provider.Outcome{Class: provider.Ambiguous, Err: errors.New("no reply")},
			want: settlement{kind: term}, events: []string{queue.EventFailed}, record: attempt.Done},
		{name: "ambiguous, retry policy", out: provider.Outcome{Class: provider.Ambiguous, Err: errors.New("no reply")}, retryAmbiguous: true, tries: 1,
			want: settlement{kind: nakLater, delay: -1}, events: []string{queue.EventRetry}, record: attempt.Retry},
		{name: "transient, failover to the fallback", out: provider.Outcome{Class: provider.Transient, Err: errors.New("451")}, tries: 3,
			setup: func(b *deliveryBundle) {
				b.d.config.FallbackID = "cfg-2"
				b.configs.byID = map[string]store.ProviderConfig{"cfg-2": {Config: provider.Config{ID: "cfg-2", AccountID: "acc-1", Kind: "sandbox"}, Healthy: true}}
			},
			want: settlement{kind: ack}, events: []string{queue.EventFailover}, record: attempt.Moved},
		{name: "transient, sender bound to this provider: no failover", out: provider.Outcome{Class: provider.Transient, Err: errors.New("451")}, tries: 3,
			setup: func(b *deliveryBundle) {
				b.d.job.ProviderBound = true
				b.d.config.FallbackID = "cfg-2"
				b.configs.byID = map[string]store.ProviderConfig{"cfg-2": {Config: provider.Config{ID: "cfg-2", AccountID: "acc-1", Kind: "sandbox"}, Healthy: true}}
			},
			want: settlement{kind: nakLater, delay: -1}, events: []string{queue.EventRetry}, record: attempt.Retry},
		{name: "transient, fallback unhealthy: retried", out: provider.Outcome{Class: provider.Transient, Err: errors.New("451")}, tries: 3,
			setup: func(b *deliveryBundle) {
				b.d.config.FallbackID = "cfg-2"
				b.configs.byID = map[string]store.ProviderConfig{"cfg-2": {Config: provider.Config{ID: "cfg-2", AccountID: "acc-1", Kind: "sandbox"}}}
			},
			want: settlement{kind: nakLater, delay: -1}, events: []string{queue.EventRetry}, record: attempt.Retry},
		{name: "credentials refused", out: provider.Outcome{Class: provider.Credentials, Err: errors.New("535 auth")},
			want: settlement{kind: term}, events: []string{queue.EventFailed}, record: attempt.Done, markedBy: "cfg-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newDeliveryBundle(t, tt.retryAmbiguous, tt.tries)
			if tt.setup != nil {
				tt.setup(b)
			}
			b.d.conclude(t.Context(), tt.out, nil, b.d.config.Config)

			got := b.msg.settled()
			require.Len(t, got, 1, "exactly one settlement")
			require.Equal(t, tt.want.kind, got[0].kind)
			if tt.want.delay > 0 {
				require.Equal(t, tt.want.delay, got[0].delay)
			} else if tt.want.kind == nakLater {
				require.Positive(t, got[0].delay)
			}
			require.Equal(t, tt.events, b.events.types(t))
			require.Equal(t, tt.record, b.attempts.last().State)
			require.Equal(t, tt.markedBy, b.configs.marked)
		})
	}
}

// A settlement that JetStream refuses is logged, not lost silently, and
// there is still only one.
func TestSettlementErrorIsHandled(t *testing.T) {
	t.Parallel()
	b := newDeliveryBundle(t, false, 1)
	b.msg.fail = errors.New("nats: connection closed")
	b.d.conclude(t.Context(), provider.Outcome{Class: provider.Sent}, nil, b.d.config.Config)
	require.Len(t, b.msg.settled(), 1)
	require.Contains(t, b.logs.String(), "settle send job; JetStream will redeliver it")
}

// The claim is renewed (a round trip) only when the call could outlive it.
func TestFenceRenewsOnlyWhenNeeded(t *testing.T) {
	t.Parallel()
	b := newDeliveryBundle(t, false, 1)
	w := b.d.svc
	b.d.lease = w.cfg.leaseFrom(time.Now()) // just claimed
	sendBy, ok := b.d.fence(t.Context())
	require.True(t, ok)
	require.Zero(t, b.attempts.renews, "a fresh claim covers the call")
	require.False(t, sendBy.After(b.d.lease.Add(-w.cfg.AckWait)))

	b.d.lease = time.Now().Add(w.cfg.SendTimeout) // claimed long ago (a stall)
	sendBy, ok = b.d.fence(t.Context())
	require.True(t, ok)
	require.Equal(t, 1, b.attempts.renews)
	require.False(t, sendBy.After(b.d.lease.Add(-w.cfg.AckWait)), "the call ends before the renewed claim")
}

// Before the provider call: each way a delivery can end without sending
// becomes one settlement (or none: the delivery goes on to send), the events
// of the timeline, and the attempt record, without a NATS or PostgreSQL
// server.
func TestPrepareEndsOrGoesOn(t *testing.T) {
	t.Parallel()
	primary := store.ProviderConfig{Config: provider.Config{ID: "cfg-1", AccountID: "acc-1", Kind: "smtp"}, Healthy: true}
	unhealthy := primary
	unhealthy.Healthy, unhealthy.HealthNote = false, "535 auth"
	withFallback := unhealthy
	withFallback.FallbackID = "cfg-2"
	fallback := store.ProviderConfig{Config: provider.Config{ID: "cfg-2", AccountID: "acc-1", Kind: "sandbox"}, Healthy: true}
	tests := []struct {
		name       string
		setup      func(b *deliveryBundle)
		prev       *attempt.Record
		tries      int
		goesOn     bool       // prepare returns a delivery to send
		want       settleKind // when it does not
		events     []string
		record     string
		fallbackTo []string // subjects of jobs moved to a fallback
	}{
		{name: "ready to send", goesOn: true, events: []string{queue.EventStarted}},
		{name: "scheduled, canceled", setup: func(b *deliveryBundle) { b.d.job.Scheduled, b.canceled.canceled = true, true },
			want: ack, record: attempt.Done},
		{name: "scheduled, cancellation unknown", setup: func(b *deliveryBundle) { b.d.job.Scheduled, b.canceled.err = true, errors.New("db down") },
			want: nakLater},
		{name: "scheduled, already attempted: not looked up", prev: &attempt.Record{State: attempt.Retry, Attempt: 1},
			setup:  func(b *deliveryBundle) { b.d.job.Scheduled, b.canceled.err = true, errors.New("db down") },
			goesOn: true, events: []string{queue.EventStarted}},
		{name: "attempts exhausted", tries: 6, want: term, events: []string{queue.EventFailed}, record: attempt.Done},
		{name: "every recipient suppressed", setup: func(b *deliveryBundle) { b.d.job.Suppressed = []string{"A2@example.com", "b@example.com"} },
			want: ack, events: []string{queue.EventSuppressed, queue.EventSuppressed}, record: attempt.Done},
		{name: "one recipient suppressed", setup: func(b *deliveryBundle) { b.d.job.Suppressed = []string{"b@example.com"} },
			goesOn: true, events: []string{queue.EventSuppressed, queue.EventStarted}},
		{name: "configuration gone", setup: func(b *deliveryBundle) { b.configs.byID = nil },
			want: term, events: []string{queue.EventFailed}, record: attempt.Done},
		{name: "configuration unreadable", setup: func(b *deliveryBundle) { b.configs.err = errors.New("db down") },
			want: nakLater, record: attempt.Retry},
		{name: "unhealthy, no fallback: stays", setup: func(b *deliveryBundle) { b.configs.byID["cfg-1"] = unhealthy },
			goesOn: true, events: []string{queue.EventStarted}},
		{name: "unhealthy, fallback: moved", setup: func(b *deliveryBundle) {
			b.configs.byID["cfg-1"], b.configs.byID["cfg-2"] = withFallback, fallback
		}, want: ack, events: []string{queue.EventFailover}, record: attempt.Moved, fallbackTo: []string{queue.SendSubject("sandbox", "acc-1")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newDeliveryBundle(t, false, tt.tries)
			b.configs.byID = map[string]store.ProviderConfig{"cfg-1": primary}
			if tt.setup != nil {
				tt.setup(b)
			}
			pd, _, ok := b.d.prepare(t.Context(), tt.prev)

			require.Equal(t, tt.goesOn, ok)
			if tt.goesOn {
				require.NotNil(t, pd)
				require.Empty(t, b.msg.settled(), "a delivery that goes on has not settled its job")
			} else {
				got := b.msg.settled()
				require.Len(t, got, 1, "exactly one settlement")
				require.Equal(t, tt.want, got[0].kind)
			}
			require.Equal(t, tt.events, b.events.types(t))
			require.Equal(t, tt.record, b.attempts.last().State)
			require.Equal(t, tt.fallbackTo, b.fallbacks.subjects)
		})
	}
}

// Before anything is recorded: a job is acted on only when its account is
// neither tombstoned nor suspended and it agrees with its stored message (the
// message exists under the job's account, and the job's provider
// configuration belongs to that account); otherwise it ends unsent, without
// events or an attempt record, or (suspended) is held on the stream without
// counting an attempt.
func TestJobAdmission(t *testing.T) {
	t.Parallel()
	primary := store.ProviderConfig{Config: provider.Config{ID: "cfg-1", AccountID: "acc-1", Kind: "smtp"}, Healthy: true}
	tests := []struct {
		name   string
		setup  func(b *deliveryBundle)
		sent   int
		to     []string // the recipients sent to, when checked
		want   settleKind
		events []string
		held   bool // put back on the stream, its attempt not counted
		parked bool // moved to its provider configuration's parked subject
	}{
		{name: "active account, job agrees with its message: sent", sent: 1, want: ack,
			events: []string{queue.EventStarted, queue.EventSent}},
		{name: "job's account_id disagrees with the stored message", setup: func(b *deliveryBundle) { b.canceled.stored = store.StoredOtherAccount },
			want: term},
		{name: "job's message is not stored", setup: func(b *deliveryBundle) { b.canceled.stored = store.StoredMissing },
			want: term},
		{name: "job's provider configuration belongs to another account", setup: func(b *deliveryBundle) { b.canceled.stored = store.StoredForeignConfig },
			want: term},
		{name: "message unreadable: given back", setup: func(b *deliveryBundle) { b.canceled.checkErr = errors.New("db down") },
			want: nakLater},
		{name: "account suspended: held", setup: func(b *deliveryBundle) { b.states.state = accountstate.Suspended },
			want: ack, held: true},
		{name: "account deleted: ended unsent", setup: func(b *deliveryBundle) { b.states.state = accountstate.Deleted },
			want: term},
		{name: "account terminated: ended unsent", setup: func(b *deliveryBundle) { b.states.state = accountstate.Terminated },
			want: term},
		{name: "account state unreadable: given back", setup: func(b *deliveryBundle) { b.states.err = errors.New("db down") },
			want: nakLater},
		{name: "provider configuration paused: parked", setup: func(b *deliveryBundle) { b.states.paused = true },
			want: ack, parked: true},
		// The suppression list is read at delivery, by the same query.
		{name: "a recipient suppressed: marked, not sent to", setup: func(b *deliveryBundle) { b.canceled.suppressed = []string{"b@example.com"} },
			sent: 1, to: []string{"a2@example.com"}, want: ack,
			events: []string{queue.EventSuppressed, queue.EventStarted, queue.EventSent}},
		{name: "every recipient suppressed: nothing sent", setup: func(b *deliveryBundle) {
			b.canceled.suppressed = []string{"a2@example.com", "b@example.com"}
		}, want: ack, events: []string{queue.EventSuppressed, queue.EventSuppressed}},
		{name: "suppressed at acceptance (older jobs) and at delivery", setup: func(b *deliveryBundle) {
			b.d.job.Suppressed = []string{"A2@example.com"}
			b.canceled.suppressed = []string{"b@example.com"}
		}, want: ack, events: []string{queue.EventSuppressed, queue.EventSuppressed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newDeliveryBundle(t, false, 3)
			b.configs.byID = map[string]store.ProviderConfig{"cfg-1": primary}
			if tt.setup != nil {
				tt.setup(b)
			}
			sender := &fakeSender{}
			b.d.run(t.Context(), sender)

			require.Equal(t, tt.sent, sender.sent)
			if tt.to != nil {
				require.Equal(t, tt.to, sender.to)
			}
			got := b.msg.settled()
			require.Len(t, got, 1, "exactly one settlement")
			require.Equal(t, tt.want, got[0].kind)
			require.Equal(t, tt.events, b.events.types(t))
			if tt.sent == 0 && tt.events == nil {
				require.Empty(t, b.attempts.recs, "no attempt record for a job not acted on")
			}
			switch {
			case tt.held:
				require.Equal(t, []string{queue.SendSubject("smtp", "acc-1")}, b.fallbacks.subjects)
				require.EqualValues(t, b.d.attempt-1, b.fallbacks.jobs[0].GetAttemptsBefore(), "the hold costs no attempt")
			case tt.parked:
				require.Equal(t, []string{queue.ParkedSubject("cfg-1", "acc-1")}, b.fallbacks.subjects)
				require.EqualValues(t, b.d.attempt-1, b.fallbacks.jobs[0].GetAttemptsBefore(), "parking costs no attempt")
			default:
				require.Empty(t, b.fallbacks.subjects)
			}
		})
	}
}

type deliveryBundle struct {
	d         *delivery
	msg       *fakeMsg
	events    *fakeEvents
	attempts  *fakeAttempts
	configs   *fakeConfigs
	canceled  *fakeCancellations
	states    *fakeStates
	fallbacks *fakeJobs
	logs      *syncBuffer
}

func newDeliveryBundle(t *testing.T, retryAmbiguous bool, tries int) *deliveryBundle {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	b := &deliveryBundle{msg: &fakeMsg{}, events: &fakeEvents{}, attempts: &fakeAttempts{}, configs: &fakeConfigs{},
		canceled: &fakeCancellations{}, states: &fakeStates{}, fallbacks: &fakeJobs{}, logs: logs}
	svc := New(testSettings(retryAmbiguous), Deps{Attempts: b.attempts, Events: b.events, Configs: b.configs,
		Messages: b.canceled, Limits: noLimits{}, Jobs: b.fallbacks, States: b.states, Logger: log})
	job := &queuev1.SendJob{MessageId: "01a00000-0000-7000-8000-000000000001", AccountId: "acc-1", ProviderId: "cfg-1", ProviderKind: "smtp",
		AcceptedAt: timestamppb.Now(),
		Message:    &v1.EmailMessage{From: &v1.Address{Address: "a@example.com"}, To: []*v1.Address{{Address: "a2@example.com"}, {Address: "b@example.com"}}}}
	b.d = &delivery{svc: svc, log: log, msg: b.msg, job: job, attempt: max(tries, 1), tries: max(tries, 1),
		events: timeline.NewSet(job, time.Now), lease: time.Now().Add(time.Minute),
		config: store.ProviderConfig{Config: provider.Config{ID: "cfg-1", AccountID: "acc-1", Kind: "smtp"}, Healthy: true}}
	return b
}

// testSettings are the worker's defaults (its Config's env tags), with 5
// attempts.
func testSettings(retryAmbiguous bool) Settings {
	return Settings{MaxAttempts: 5, MaxAge: 24 * time.Hour, BackoffBase: 30 * time.Second, BackoffMax: time.Hour,
		AckWait: 30 * time.Second, SendTimeout: 2 * time.Minute, RetryAmbiguous: retryAmbiguous, FailoverAfter: 3}
}

type settled struct {
	kind  settleKind
	delay time.Duration
}

// fakeMsg is a send job's JetStream message that records how it was settled.
type fakeMsg struct {
	jetstream.Msg
	mu   sync.Mutex
	got  []settled
	fail error
}

func (m *fakeMsg) record(s settled) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.got = append(m.got, s)
	return m.fail
}
func (m *fakeMsg) settled() []settled {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]settled(nil), m.got...)
}
func (m *fakeMsg) Ack() error { return m.record(settled{kind: ack}) }
func (m *fakeMsg) NakWithDelay(d time.Duration) error {
	return m.record(settled{kind: nakLater, delay: d})
}
func (m *fakeMsg) Term() error                 { return m.record(settled{kind: term}) }
func (m *fakeMsg) TermWithReason(string) error { return m.record(settled{kind: term}) }
func (m *fakeMsg) InProgress() error           { return nil }

type fakeEvents struct {
	mu   sync.Mutex
	data [][]byte
}

func (e *fakeEvents) Publish(_ context.Context, _, _ string, events [][]byte, _ []string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.data = append(e.data, events...)
	return nil
}
func (e *fakeEvents) PublishAsync(ctx context.Context, a, m string, events [][]byte, ids []string) ([]jetstream.PubAckFuture, error) {
	return nil, e.Publish(ctx, a, m, events, ids)
}
func (e *fakeEvents) Wait(context.Context, []jetstream.PubAckFuture) error { return nil }

func (e *fakeEvents) types(t *testing.T) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, b := range e.data {
		ev := &queuev1.DeliveryEvent{}
		require.NoError(t, proto.Unmarshal(b, ev))
		out = append(out, ev.GetType())
	}
	return out
}

type fakeAttempts struct {
	mu     sync.Mutex
	recs   []attempt.Record
	renews int
}

func (a *fakeAttempts) Begin(context.Context, string, string, int, time.Time, time.Time) (*attempt.Record, uint64, error) {
	return nil, 1, nil
}
func (a *fakeAttempts) Renew(context.Context, string, string, int, time.Time, uint64) (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.renews++
	return 2, nil
}
func (a *fakeAttempts) Finish(_ context.Context, _ string, rec attempt.Record) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recs = append(a.recs, rec)
	return nil
}
func (a *fakeAttempts) Get(context.Context, string) (*attempt.Record, error) {
	return nil, errors.New("not kept")
}
func (a *fakeAttempts) last() attempt.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.recs) == 0 {
		return attempt.Record{}
	}
	return a.recs[len(a.recs)-1]
}

// fakeConfigs holds configurations by id; any other is not found, or err.
type fakeConfigs struct {
	marked string
	byID   map[string]store.ProviderConfig
	err    error
}

func (c *fakeConfigs) Load(_ context.Context, _, id string) (store.ProviderConfig, error) {
	if c.err != nil {
		return store.ProviderConfig{}, c.err
	}
	if cfg, ok := c.byID[id]; ok {
		return cfg, nil
	}
	return store.ProviderConfig{}, store.ErrConfigNotFound
}
func (c *fakeConfigs) MarkUnhealthy(_ context.Context, _, id, _ string) error {
	c.marked = id
	return nil
}

type fakeCancellations struct {
	canceled bool
	err      error
	// stored and checkErr answer Check (StoredOK by default).
	stored   store.Stored
	checkErr error
	// suppressed is the account's suppression list.
	suppressed []string
}

func (c *fakeCancellations) Canceled(context.Context, string, string) (bool, error) {
	return c.canceled, c.err
}
func (c *fakeCancellations) Check(_ context.Context, _, _, _ string, recipients []string) (store.Stored, []string, error) {
	var sup []string
	for _, r := range recipients {
		if slices.Contains(c.suppressed, r) {
			sup = append(sup, r)
		}
	}
	return c.stored, sup, c.checkErr
}

// fakeStates answers every account's state with state, or err.
type fakeStates struct {
	state  accountstate.State
	err    error
	paused bool
}

func (s *fakeStates) Paused(_ context.Context, account, provider string) (accountstate.Pause, error) {
	return accountstate.Pause{Account: account, Provider: provider, Paused: s.paused}, nil
}

func (s *fakeStates) State(_ context.Context, account string) (accountstate.Entry, error) {
	if s.err != nil {
		return accountstate.Entry{}, s.err
	}
	st := s.state
	if st == "" {
		st = accountstate.Active
	}
	return accountstate.Entry{Account: account, State: st}, nil
}

// fakeSender records the deliveries it was given.
type fakeSender struct {
	mu   sync.Mutex
	sent int
	// to are the recipients of the last send.
	to []string
}

func (f *fakeSender) Send(_ context.Context, d *provider.Delivery) provider.Outcome {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent++
	f.to = d.Recipients
	return provider.Outcome{Class: provider.Sent, Response: "250 ok"}
}

type noLimits struct{}

func (noLimits) Wait(context.Context, string, string, string) error { return nil }

// fakeJobs records the jobs published to a fallback.
type fakeJobs struct {
	mu       sync.Mutex
	subjects []string
	jobs     []*queuev1.SendJob
}

func (j *fakeJobs) PublishMsg(_ context.Context, msg *nats.Msg, _ ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.subjects = append(j.subjects, msg.Subject)
	job := &queuev1.SendJob{}
	if err := proto.Unmarshal(msg.Data, job); err != nil {
		return nil, err
	}
	j.jobs = append(j.jobs, job)
	return &jetstream.PubAck{}, nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}
func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}
