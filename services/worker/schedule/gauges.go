package schedule

import (
	"context"
	"maps"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/telemetry"
)

// Gauges answers the consumer gauges' lookups of "worker-<kind>" (the name of
// the kind-wide consumer of older workers) with the sums over the kind's
// per-account consumers: a telemetry.ConsumerInfoSource.
type Gauges map[string]*Scheduler

// Add makes the gauges of s's kind answer with s's consumers.
func (g Gauges) Add(s *Scheduler) { g[legacyConsumerName(s.kind)] = s }

// Refs are the consumers the gauges are about, one per kind, by name.
func (g Gauges) Refs() []telemetry.ConsumerRef {
	refs := make([]telemetry.ConsumerRef, 0, len(g))
	for _, name := range slices.Sorted(maps.Keys(g)) {
		refs = append(refs, telemetry.ConsumerRef{Stream: queue.SendStream, Consumer: name})
	}
	return refs
}

// Consumer returns the summed consumer info of the kind named.
func (g Gauges) Consumer(ctx context.Context, stream, name string) (jetstream.Consumer, error) {
	s := g[name]
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
