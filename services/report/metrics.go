package report

import (
	"context"

	"go.opentelemetry.io/otel/metric"

	"github.com/namirasoft/email-sender/pkg/telemetry"
)

// metrics are the report service's instruments, created once.
type metrics struct {
	events    metric.Int64Counter
	feedback  metric.Int64Counter
	byOutcome *telemetry.Label
	crossings metric.Int64Counter
	byEvent   *telemetry.Label
}

func newMetrics(tel *telemetry.Telemetry) *metrics {
	// Creating an instrument fails only for an invalid name; this one is constant.
	events, _ := tel.Meter("github.com/namirasoft/email-sender/services/report").Int64Counter("emailsender_report_events",
		metric.WithDescription("Delivery events the report consumer handled, by outcome (applied, duplicate, unknown, malformed, retried)."),
		metric.WithUnit("{event}"))
	feedback, _ := tel.Meter("github.com/namirasoft/email-sender/services/report").Int64Counter("emailsender_feedback_notifications",
		metric.WithDescription("SNS messages the SES feedback endpoint handled, by outcome (applied, ignored, unknown_message, confirmed, unsubscribed, rejected, stale, unbound, unknown_provider, error)."),
		metric.WithUnit("{message}"))
	crossings, _ := tel.Meter("github.com/namirasoft/email-sender/services/report").Int64Counter("emailsender_reputation_crossings",
		metric.WithDescription("Reputation guard crossings, by event (REPUTATION_WARNING, REPUTATION_PAUSED, REPUTATION_RECOVERED)."),
		metric.WithUnit("{crossing}"))
	return &metrics{events: events, feedback: feedback, byOutcome: telemetry.NewLabel("outcome"),
		crossings: crossings, byEvent: telemetry.NewLabel("event")}
}

// reputationCrossing counts one crossing of the reputation guard.
func (m *metrics) reputationCrossing(ctx context.Context, event string) {
	m.crossings.Add(ctx, 1, m.byEvent.Option(event))
}

// feedbackHandled counts one SNS message of the feedback endpoint.
func (m *metrics) feedbackHandled(ctx context.Context, outcome string) {
	m.feedback.Add(ctx, 1, m.byOutcome.Option(outcome))
}

// batch counts what became of a batch's events.
func (m *metrics) batch(ctx context.Context, rep *BatchReport) {
	for _, c := range []struct {
		outcome string
		ids     []string
	}{
		{"applied", rep.Applied}, {"duplicate", rep.Duplicates}, {"unknown", rep.Unknown},
		{"malformed", rep.Malformed}, {"retried", rep.Retried},
	} {
		if len(c.ids) > 0 {
			m.events.Add(ctx, int64(len(c.ids)), m.byOutcome.Option(c.outcome))
		}
	}
}
