package inbound

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/namirasoft/email-sender/pkg/telemetry"
)

// metrics are the inbound service's instruments.
type metrics struct {
	reports  metric.Int64Counter
	rcpts    metric.Int64Counter
	received metric.Int64Counter
}

func newMetrics(tel *telemetry.Telemetry) *metrics {
	m := tel.Meter("github.com/namirasoft/email-sender/services/inbound")
	// Creating an instrument fails only for an invalid name; these are constant.
	reports, _ := m.Int64Counter("emailsender_inbound_reports",
		metric.WithDescription("Mail to bounce addresses as it is recorded, per bounce address, by kind (dsn, arf, auto_reply, plain_bounce, other, malformed, unverified, undecodable) and outcome (applied, ignored, unknown_message, error: tried again, rejected: given up on)."),
		metric.WithUnit("{mail}"))
	rcpts, _ := m.Int64Counter("emailsender_inbound_refused_recipients",
		metric.WithDescription("RCPT TO refused because the address is not a valid bounce address (forged, mistyped, another domain)."),
		metric.WithUnit("{recipient}"))
	received, _ := m.Int64Counter("emailsender_inbound_accepted",
		metric.WithDescription("SMTP transactions to bounce addresses at end of DATA, by outcome: stored (on EMAIL_INBOUND, answered 250) or error (answered 451)."),
		metric.WithUnit("{mail}"))
	return &metrics{reports: reports, rcpts: rcpts, received: received}
}

func (m *metrics) report(ctx context.Context, kind, outcome string) {
	m.reports.Add(ctx, 1, metric.WithAttributes(attribute.String("kind", kind), attribute.String("outcome", outcome)))
}

func (m *metrics) refused(ctx context.Context) { m.rcpts.Add(ctx, 1) }

func (m *metrics) accepted(ctx context.Context, stored bool) {
	outcome := "stored"
	if !stored {
		outcome = "error"
	}
	m.received.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
}
