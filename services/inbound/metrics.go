package inbound

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/namirasoft/email-sender/pkg/telemetry"
)

// metrics are the inbound service's instruments.
type metrics struct {
	reports metric.Int64Counter
	rcpts   metric.Int64Counter
}

func newMetrics(tel *telemetry.Telemetry) *metrics {
	m := tel.Meter("github.com/namirasoft/email-sender/services/inbound")
	// Creating an instrument fails only for an invalid name; these are constant.
	reports, _ := m.Int64Counter("emailsender_inbound_reports",
		metric.WithDescription("Mail to bounce addresses, by kind (dsn, arf, auto_reply, plain_bounce, other, malformed) and outcome (applied, ignored, unknown_message, error)."),
		metric.WithUnit("{mail}"))
	rcpts, _ := m.Int64Counter("emailsender_inbound_refused_recipients",
		metric.WithDescription("RCPT TO refused because the address is not a valid bounce address (forged, mistyped, another domain)."),
		metric.WithUnit("{recipient}"))
	return &metrics{reports: reports, rcpts: rcpts}
}

func (m *metrics) report(ctx context.Context, kind, outcome string) {
	m.reports.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", kind), attribute.String("outcome", outcome)))
}

func (m *metrics) refused(ctx context.Context) { m.rcpts.Add(ctx, 1) }
