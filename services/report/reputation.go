package report

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/metric"

	"github.com/namirasoft/email-sender/pkg/reputation"
	"github.com/namirasoft/email-sender/pkg/telemetry"
)

// assessReputation has the guard assess the provider configurations a
// committed batch counted events for. Its trouble is logged, never the
// batch's: the next batch of the pair assesses it again.
//
// A batch with an adverse event (a hard bounce, a complaint) has its pairs
// assessed at once. One of deliveries alone has each pair assessed at most
// once per ReputationAssessInterval: later ones wait for runReputationAssess.
// Sends only lower the rates, so assessing them late delays no pause but the
// one reached when the sends reach MinSends, by at most that interval; and a
// stream of small batches (the report keeping up with a trickle of events)
// does not pay a transaction of five statements for every one of them.
func (s *Service) assessReputation(ctx context.Context, keys []reputation.Key, adverse bool) {
	if s.guard == nil || len(keys) == 0 {
		return
	}
	if !adverse {
		if keys = s.assessing.due(keys, time.Now(), s.cfg.ReputationAssessInterval); len(keys) == 0 {
			return
		}
	} else {
		s.assessing.assessed(keys, time.Now())
	}
	s.assess(ctx, keys)
}

func (s *Service) assess(ctx context.Context, keys []reputation.Key) {
	crossings, err := s.guard.Assess(ctx, keys)
	if err != nil {
		s.log.ErrorContext(ctx, "assess reputation; assessed again with the next events", "error", err)
	}
	for _, c := range crossings {
		s.metrics.reputationCrossing(ctx, c.Event)
	}
}

// assessQueue is when each pair was last assessed and the pairs whose
// deliveries wait for their next assessment.
type assessQueue struct {
	mu      sync.Mutex
	last    map[reputation.Key]time.Time
	pending map[reputation.Key]bool
}

// due returns the keys not assessed within every of now, marking them
// assessed now, and keeps the others pending.
func (q *assessQueue) due(keys []reputation.Key, now time.Time, every time.Duration) []reputation.Key {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.last == nil {
		q.last, q.pending = map[reputation.Key]time.Time{}, map[reputation.Key]bool{}
	}
	var out []reputation.Key
	for _, k := range keys {
		if t, ok := q.last[k]; ok && now.Sub(t) < every {
			q.pending[k] = true
			continue
		}
		q.last[k] = now
		delete(q.pending, k)
		out = append(out, k)
	}
	return out
}

// assessed marks keys assessed now.
func (q *assessQueue) assessed(keys []reputation.Key, now time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.last == nil {
		q.last, q.pending = map[reputation.Key]time.Time{}, map[reputation.Key]bool{}
	}
	for _, k := range keys {
		q.last[k] = now
		delete(q.pending, k)
	}
}

// take returns the pending keys, marking them assessed now, and forgets the
// pairs not assessed within every (their next batch is assessed at once).
func (q *assessQueue) take(now time.Time, every time.Duration) []reputation.Key {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []reputation.Key
	for k := range q.pending {
		out = append(out, k)
		q.last[k] = now
	}
	clear(q.pending)
	for k, t := range q.last {
		if now.Sub(t) >= every {
			delete(q.last, k)
		}
	}
	return out
}

// runReputationAssess assesses the pairs whose deliveries wait (assessReputation)
// every ReputationAssessInterval until ctx ends.
func (s *Service) runReputationAssess(ctx context.Context) error {
	if s.guard == nil {
		return nil
	}
	return every(ctx, s.cfg.ReputationAssessInterval, false, func(ctx context.Context) {
		if keys := s.assessing.take(time.Now(), s.cfg.ReputationAssessInterval); len(keys) > 0 {
			s.assess(ctx, keys)
		}
	})
}

// reputationGauges keeps the emailsender_reputation_providers gauge: provider
// configurations by level (ok, warning, paused), read from PostgreSQL every
// interval until ctx ends.
type reputationGauges struct {
	mu     sync.Mutex
	levels map[string]int64
}

func (s *Service) runReputationGauges(ctx context.Context) error {
	g := &reputationGauges{levels: map[string]int64{}}
	level := telemetry.NewLabel("level")
	m := s.tel.Meter("github.com/namirasoft/email-sender/services/report")
	gauge, err := m.Int64ObservableGauge("emailsender_reputation_providers",
		metric.WithDescription("Provider configurations by reputation level (ok, warning, paused) as the reputation guard last assessed them."),
		metric.WithUnit("{provider}"))
	if err != nil {
		return fmt.Errorf("reputation gauge: %w", err)
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, l := range []reputation.Level{reputation.OK, reputation.Warning, reputation.Paused} {
			o.ObserveInt64(gauge, g.levels[string(l)], level.Option(string(l)))
		}
		return nil
	}, gauge)
	if err != nil {
		return fmt.Errorf("reputation gauge: %w", err)
	}
	defer func() { _ = reg.Unregister() }()
	return every(ctx, 15*time.Second, true, func(ctx context.Context) {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		rows, err := s.deps.Pool.Query(qctx, `SELECT level, count(*) FROM reputation GROUP BY level`)
		if err == nil {
			levels := map[string]int64{}
			var (
				l string
				n int64
			)
			if _, err = pgx.ForEachRow(rows, []any{&l, &n}, func() error { levels[l] = n; return nil }); err == nil {
				g.mu.Lock()
				g.levels = levels
				g.mu.Unlock()
			}
		}
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "read reputation levels", "error", err)
		}
	})
}
