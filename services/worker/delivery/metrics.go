package delivery

import (
	"context"

	"go.opentelemetry.io/otel/metric"

	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/telemetry"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
)

// Retry reasons (the reason label of emailsender_delivery_retries_total).
const (
	retryTransient   = "transient"   // the provider failed transiently
	retryAmbiguous   = "ambiguous"   // the provider's answer was lost; retried by policy
	retryInterrupted = "interrupted" // a previous attempt never recorded its outcome
	retryWorker      = "worker"      // the worker's own NATS or PostgreSQL failed
	retryLeaseLost   = "lease_lost"  // an attempt stalled past its lease; another delivery took over
)

// metrics are the worker's instruments, created once; recording uses cached
// attribute sets, so a delivery allocates nothing for them.
type metrics struct {
	sent      metric.Int64Counter
	failed    metric.Int64Counter
	retries   metric.Int64Counter
	failovers metric.Int64Counter
	endToEnd  metric.Float64Histogram

	byKind, byClass, byReason *telemetry.Label
}

func newMetrics(tel *telemetry.Telemetry) *metrics {
	m := tel.Meter("github.com/namirasoft/email-sender/services/worker")
	// Creating an instrument fails only for an invalid name; these are constant.
	sent, _ := m.Int64Counter("emailsender_messages_sent",
		metric.WithDescription("Messages the provider accepted (SENT), by provider kind."),
		metric.WithUnit("{message}"))
	failed, _ := m.Int64Counter("emailsender_messages_failed",
		metric.WithDescription("Messages that ended FAILED, by error class (permanent, credentials, ambiguous, attempts_exhausted)."),
		metric.WithUnit("{message}"))
	retries, _ := m.Int64Counter("emailsender_delivery_retries",
		metric.WithDescription("Deliveries put back for another attempt, by reason (transient, ambiguous, interrupted, worker, lease_lost)."),
		metric.WithUnit("{retry}"))
	failovers, _ := m.Int64Counter("emailsender_failovers",
		metric.WithDescription("Messages moved to their provider configuration's fallback, by reason (unhealthy, transient)."),
		metric.WithUnit("{message}"))
	endToEnd, _ := m.Float64Histogram("emailsender_end_to_end",
		metric.WithDescription("Time from acceptance by ingest to the provider's acceptance (SENT), by provider kind."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(telemetry.LatencyBuckets...))
	return &metrics{
		sent: sent, failed: failed, retries: retries, failovers: failovers, endToEnd: endToEnd,
		byKind:   telemetry.NewLabel("provider_kind"),
		byClass:  telemetry.NewLabel("error_class"),
		byReason: telemetry.NewLabel("reason"),
	}
}

// final counts a job's final outcome once its events are published: a SENT
// message and its end-to-end latency, or a FAILED one by class.
func (m *metrics) final(ctx context.Context, job *queuev1.SendJob, events []*queuev1.DeliveryEvent, ok bool) {
	for _, ev := range events {
		switch {
		case ok && ev.GetType() == queue.EventSent:
			kind := m.byKind.Option(job.GetProviderKind())
			m.sent.Add(ctx, 1, kind)
			if acc := job.GetAcceptedAt(); acc != nil {
				m.endToEnd.Record(ctx, ev.GetOccurredAt().AsTime().Sub(acc.AsTime()).Seconds(), kind)
			}
			return
		case !ok && ev.GetType() == queue.EventFailed:
			class := ev.GetErrorClass()
			if class == "" {
				class = "unknown"
			}
			m.failed.Add(ctx, 1, m.byClass.Option(class))
			return
		}
	}
}

func (m *metrics) retry(ctx context.Context, reason string) {
	m.retries.Add(ctx, 1, m.byReason.Option(reason))
}

func (m *metrics) failover(ctx context.Context, reason string) {
	m.failovers.Add(ctx, 1, m.byReason.Option(reason))
}
