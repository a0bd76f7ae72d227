package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/namirasoft/email-sender/pkg/queue"
)

// maxFetch bounds the jobs taken in one pull request.
const maxFetch = 64

// JetStream is what a scheduler uses of JetStream.
type JetStream interface {
	Stream(ctx context.Context, name string) (jetstream.Stream, error)
	CreateOrUpdateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error)
	Consumer(ctx context.Context, stream, name string) (jetstream.Consumer, error)
	Conn() *nats.Conn
}

// Deliverer runs the delivery of one job fetched, and settles it. ctx ends
// only with the delivery; stop is closed when the scheduler stops fetching.
type Deliverer interface {
	Deliver(ctx context.Context, stop <-chan struct{}, msg jetstream.Msg)
}

// DeliverFunc is a Deliverer.
type DeliverFunc func(ctx context.Context, stop <-chan struct{}, msg jetstream.Msg)

// Deliver calls f.
func (f DeliverFunc) Deliver(ctx context.Context, stop <-chan struct{}, msg jetstream.Msg) {
	f(ctx, stop, msg)
}

// Config configures the scheduler of one provider kind.
type Config struct {
	// Kind is the provider kind whose jobs (send.<kind>.<account>) it takes.
	Kind string
	// Concurrency is the number of deliveries in flight.
	Concurrency int
	// AckWait, AccountMaxAckPending and AccountIdle configure the
	// per-account consumers (AckWait, MaxAckPending, InactiveThreshold).
	AckWait              time.Duration
	AccountMaxAckPending int
	AccountIdle          time.Duration
	// DiscoveryInterval is how often the per-account job counts are read.
	DiscoveryInterval time.Duration
	// Held, when set, names the accounts whose jobs are not fetched (a
	// suspended account's mail stays on the stream: held, not lost). It must
	// not block; call Wake when its answer changes.
	Held func(accountID string) bool
}

// legacyConsumerName is the kind-wide consumer of workers before per-account
// scheduling; its filter (send.<kind>.>) overlaps every account's, which a
// work-queue stream forbids, so it is deleted.
func legacyConsumerName(kind string) string { return "worker-" + kind }

// accountConsumerName is the durable consumer of one account's jobs of kind
// (filter send.<kind>.<account>), shared by every worker replica.
func accountConsumerName(kind, accountID string) string {
	return "worker-" + kind + "-" + accountID
}

// Scheduler delivers the jobs of one provider kind: it pulls from the
// per-account consumers round-robin, at most concurrency deliveries in flight,
// and while several accounts have jobs waiting none takes more than its share
// of the slots (see the package documentation).
type Scheduler struct {
	cfg         Config
	js          JetStream
	deliverer   Deliverer
	kind        string
	concurrency int
	log         *slog.Logger
	stream      jetstream.Stream

	mu       sync.Mutex
	accounts map[string]*account
	ring     []*account // round-robin order
	next     int        // ring index to look at first
	busy     int        // slots taken: deliveries in flight plus fetches' reservations
	wake     chan struct{}

	// legacyGone is set once the kind-wide consumer is known to be deleted.
	legacyGone bool
}

// account is what a scheduler knows of one account's jobs.
type account struct {
	id   string
	cons jetstream.Consumer // nil until created (or after it vanished)
	// ready: the account may have jobs to fetch.
	ready bool
	// fetching: a pull request of it is under way (one at a time).
	fetching bool
	inflight int
	// stored is the number of its jobs on the stream at the last discovery
	// (waiting, in flight or waiting for a retry).
	stored uint64
	// emptyAt and emptyStored describe the last pull that found nothing:
	// discovery probes such an account again only once stored changes or a
	// while later (jobs naked with a delay are counted but not deliverable).
	emptyAt     time.Time
	emptyStored uint64
	// failures counts fetches in a row that failed.
	failures int
}

// New returns the scheduler of cfg.Kind, which hands the jobs it takes to d.
func New(cfg Config, js JetStream, d Deliverer, log *slog.Logger) *Scheduler {
	return &Scheduler{
		cfg: cfg, js: js, deliverer: d, kind: cfg.Kind, concurrency: cfg.Concurrency,
		log:      log.With("provider", cfg.Kind),
		accounts: map[string]*account{},
		wake:     make(chan struct{}, 1),
	}
}

func (s *Scheduler) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Wake makes the scheduler look at its accounts again (an account's hold
// ended).
func (s *Scheduler) Wake() { s.signal() }

// Run schedules until ctx ends, then stops fetching and waits for the
// deliveries in flight.
func (s *Scheduler) Run(ctx context.Context) error {
	if !s.open(ctx) {
		return nil
	}
	s.log.InfoContext(ctx, "worker consuming", "concurrency", s.concurrency)
	var bg sync.WaitGroup
	bg.Go(func() { s.discover(ctx) })
	bg.Go(func() { s.notices(ctx) })

	var inflight sync.WaitGroup
	for ctx.Err() == nil {
		a, n := s.pick()
		if a == nil {
			select {
			case <-ctx.Done():
			case <-s.wake:
			}
			continue
		}
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			s.fetch(ctx, a, n, &inflight)
		}()
	}
	inflight.Wait()
	bg.Wait()
	s.log.Info("worker stopped")
	return nil
}

// open looks up the stream and deletes the legacy consumer, retrying while
// JetStream is unreachable (a worker that starts before NATS waits for it);
// false when ctx ended first.
func (s *Scheduler) open(ctx context.Context) bool {
	delay := 100 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := s.js.Stream(cctx, queue.SendStream)
		if err == nil {
			s.stream = st
			err = s.deleteLegacy(cctx)
		}
		cancel()
		if err == nil {
			return true
		}
		s.log.WarnContext(ctx, "open send stream; retrying", "error", err, "retry_in", delay.String())
		select {
		case <-ctx.Done():
			return false
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// deleteLegacy deletes the kind-wide consumer of older workers, if any.
func (s *Scheduler) deleteLegacy(ctx context.Context) error {
	err := s.stream.DeleteConsumer(ctx, legacyConsumerName(s.kind))
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("delete legacy consumer %s: %w", legacyConsumerName(s.kind), err)
	}
	if err == nil {
		s.log.InfoContext(ctx, "deleted the kind-wide consumer of older workers", "consumer", legacyConsumerName(s.kind))
	}
	return nil
}

// pick chooses the account to fetch from next and how many jobs to take, and
// reserves that many slots; nil when nothing can be fetched now.
//
// Accounts are visited round-robin from where the last pick stopped. While w
// accounts have jobs waiting, each may hold ceil(concurrency/w) slots: an
// account alone gets the whole pool, and a newcomer gets the next free slot
// however many jobs the others have queued.
func (s *Scheduler) pick() (*account, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	free := s.concurrency - s.busy
	if free <= 0 || len(s.ring) == 0 {
		return nil, 0
	}
	held := func(a *account) bool { return s.cfg.Held != nil && s.cfg.Held(a.id) }
	waiting := 0
	for _, a := range s.ring {
		if a.ready && !held(a) {
			waiting++
		}
	}
	if waiting == 0 {
		return nil, 0
	}
	share := (s.concurrency + waiting - 1) / waiting
	for i := range s.ring {
		idx := (s.next + i) % len(s.ring)
		a := s.ring[idx]
		if !a.ready || a.fetching || a.inflight >= share || held(a) {
			continue
		}
		s.next = idx + 1
		n := min(free, share-a.inflight, maxFetch)
		a.fetching = true
		a.inflight += n
		s.busy += n
		return a, n
	}
	return nil, 0
}

// fetch pulls up to n jobs of a (n slots are reserved for it), starts their
// deliveries, and gives back the slots it did not use.
func (s *Scheduler) fetch(ctx context.Context, a *account, n int, inflight *sync.WaitGroup) {
	var msgs []jetstream.Msg
	cons, err := s.consumer(ctx, a)
	if err == nil {
		msgs, err = pull(cons, n)
	}
	// A pull request to a consumer that no longer exists finds nobody to
	// answer it and ends empty: tell that from an account without jobs.
	missing := false
	if err == nil && len(msgs) == 0 {
		_, ierr := cons.Info(ctx)
		missing = errors.Is(ierr, jetstream.ErrConsumerNotFound)
	}
	s.mu.Lock()
	a.fetching = false
	got := len(msgs)
	if got < n {
		s.release(a, n-got)
		a.ready = false
	}
	switch {
	case err != nil || missing:
		// The consumer may be gone (removed while idle by InactiveThreshold, or
		// lost with a NATS node): a pull request then finds no responder. It is
		// looked up or created again at once, once; after that discovery decides.
		a.cons = nil
		a.failures++
		a.ready = a.failures == 1
	case got == 0:
		a.failures = 0
		a.emptyAt, a.emptyStored = time.Now(), a.stored
	default:
		a.failures = 0
	}
	s.mu.Unlock()
	if err != nil && ctx.Err() == nil {
		s.log.WarnContext(ctx, "fetch send jobs", "account_id", a.id, "error", err)
	}
	s.signal()
	for _, msg := range msgs {
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			defer s.done(a)
			// Deliveries in flight at shutdown run to completion on their own
			// context: a send interrupted half way is the one thing we avoid.
			s.deliverer.Deliver(context.WithoutCancel(ctx), ctx.Done(), msg)
		}()
	}
}

// pull takes up to n jobs that are available now.
func pull(cons jetstream.Consumer, n int) ([]jetstream.Msg, error) {
	batch, err := cons.FetchNoWait(n)
	if err != nil {
		return nil, err
	}
	msgs := make([]jetstream.Msg, 0, n)
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	return msgs, batch.Error()
}

// done frees the slot of a finished delivery of a.
func (s *Scheduler) done(a *account) {
	s.mu.Lock()
	s.release(a, 1)
	s.mu.Unlock()
	s.signal()
}

// release gives back n slots of a; s.mu is held.
func (s *Scheduler) release(a *account, n int) {
	a.inflight -= n
	s.busy -= n
	s.forgetIfIdle(a)
}

// consumer returns a's durable consumer, creating it (or updating its config)
// the first time this process fetches from the account.
func (s *Scheduler) consumer(ctx context.Context, a *account) (jetstream.Consumer, error) {
	s.mu.Lock()
	cons := a.cons
	s.mu.Unlock()
	if cons != nil {
		return cons, nil
	}
	cfg := jetstream.ConsumerConfig{
		Durable:       accountConsumerName(s.kind, a.id),
		Description:   "delivers " + s.kind + " send jobs of one account",
		FilterSubject: queue.SendSubject(s.kind, a.id),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.AckWait,
		// Attempts are bounded by the worker itself (MaxAttempts, MaxAge), which
		// publishes the final FAILED event; JetStream never drops a job silently.
		MaxDeliver:        -1,
		MaxAckPending:     s.cfg.AccountMaxAckPending,
		InactiveThreshold: s.cfg.AccountIdle,
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cons, err := s.js.CreateOrUpdateConsumer(cctx, queue.SendStream, cfg)
	if err != nil && isNotUnique(err) {
		// A worker of the previous version created the kind-wide consumer again.
		if derr := s.deleteLegacy(cctx); derr != nil {
			return nil, derr
		}
		cons, err = s.js.CreateOrUpdateConsumer(cctx, queue.SendStream, cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", cfg.Durable, err)
	}
	s.mu.Lock()
	a.cons = cons
	s.mu.Unlock()
	return cons, nil
}

// isNotUnique reports JetStream's "filtered consumer not unique on workqueue
// stream" (an overlapping consumer exists).
func isNotUnique(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == 10100
}

// discover reads the number of jobs per account every DiscoveryInterval and
// marks accounts with jobs ready. It is what finds jobs whose notice was
// missed and jobs whose retry delay ended.
func (s *Scheduler) discover(ctx context.Context) {
	t := time.NewTicker(s.cfg.DiscoveryInterval)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		info, err := s.stream.Info(cctx, jetstream.WithSubjectFilter(queue.SendKindAccounts(s.kind)))
		cancel()
		if err == nil {
			s.update(info.State.Subjects)
		} else if ctx.Err() == nil {
			s.log.WarnContext(ctx, "read pending jobs per account", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// update applies a discovery: stored counts per subject send.<kind>.<account>.
func (s *Scheduler) update(subjects map[string]uint64) {
	now := time.Now()
	reprobe := 5 * s.cfg.DiscoveryInterval
	s.mu.Lock()
	for _, a := range s.accounts {
		a.stored = 0
	}
	woke := false
	for subj, n := range subjects {
		a := s.account(queue.SubjectAccount(subj))
		a.stored = n
		if n > 0 && !a.ready && (n != a.emptyStored || now.Sub(a.emptyAt) >= reprobe) {
			a.ready, woke = true, true
		}
	}
	for _, a := range append([]*account(nil), s.ring...) {
		s.forgetIfIdle(a)
	}
	s.mu.Unlock()
	if woke {
		s.signal()
	}
}

// notices wakes accounts up as their jobs are stored: the stream republishes
// every job's headers on notice.send.<kind>.<account>. Notices are a shortcut;
// discovery finds the same jobs a moment later when one is lost.
func (s *Scheduler) notices(ctx context.Context) {
	nc := s.js.Conn()
	sub, err := nc.Subscribe(queue.SendNoticeFilter(s.kind), func(m *nats.Msg) {
		s.mu.Lock()
		a := s.account(queue.SubjectAccount(m.Subject))
		woke := !a.ready
		a.ready = true
		s.mu.Unlock()
		if woke {
			s.signal()
		}
	})
	if err != nil {
		s.log.WarnContext(ctx, "subscribe to job notices; relying on discovery", "error", err)
		return
	}
	<-ctx.Done()
	if err := sub.Unsubscribe(); err != nil {
		s.log.DebugContext(ctx, "unsubscribe from job notices", "error", err)
	}
}

// account returns the account id, adding it; s.mu is held.
func (s *Scheduler) account(id string) *account {
	a := s.accounts[id]
	if a == nil {
		a = &account{id: id}
		s.accounts[id] = a
		s.ring = append(s.ring, a)
	}
	return a
}

// forgetIfIdle drops an account without jobs, deliveries or fetches (its
// consumer stays on the server until AccountIdle); s.mu is held.
func (s *Scheduler) forgetIfIdle(a *account) {
	if a.ready || a.fetching || a.inflight > 0 || a.stored > 0 || s.accounts[a.id] != a {
		return
	}
	delete(s.accounts, a.id)
	for i, r := range s.ring {
		if r == a {
			s.ring = append(s.ring[:i], s.ring[i+1:]...)
			if s.next > i {
				s.next--
			}
			break
		}
	}
}

// pending sums the kind's per-account consumers (for the consumer gauges under
// the name of the former kind-wide consumer, worker-<kind>): jobs not yet
// delivered, delivered and not acknowledged, and redelivered. Only accounts
// with jobs on the stream are asked.
func (s *Scheduler) pending(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	s.mu.Lock()
	type known struct {
		cons   jetstream.Consumer
		id     string
		stored uint64
	}
	var list []known
	for _, a := range s.ring {
		if a.stored > 0 {
			list = append(list, known{a.cons, a.id, a.stored})
		}
	}
	s.mu.Unlock()
	sum := &jetstream.ConsumerInfo{Stream: queue.SendStream, Name: legacyConsumerName(s.kind)}
	for _, k := range list {
		cons := k.cons
		if cons == nil {
			c, err := s.js.Consumer(ctx, queue.SendStream, accountConsumerName(s.kind, k.id))
			if err != nil {
				// No consumer yet: every stored job is still to be delivered.
				sum.NumPending += k.stored
				continue
			}
			cons = c
		}
		info, err := cons.Info(ctx)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			sum.NumPending += k.stored
			continue
		}
		if err != nil {
			return nil, err
		}
		sum.NumPending += info.NumPending
		sum.NumAckPending += info.NumAckPending
		sum.NumRedelivered += info.NumRedelivered
	}
	return sum, nil
}
