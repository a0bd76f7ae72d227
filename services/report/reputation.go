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
func (s *Service) assessReputation(ctx context.Context, keys []reputation.Key) {
	if s.guard == nil || len(keys) == 0 {
		return
	}
	crossings, err := s.guard.Assess(ctx, keys)
	if err != nil {
		s.log.ErrorContext(ctx, "assess reputation; assessed again with the next events", "error", err)
	}
	for _, c := range crossings {
		s.metrics.reputationCrossing(ctx, c.Event)
	}
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
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
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
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
