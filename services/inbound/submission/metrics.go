package submission

import (
	"context"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/namirasoft/email-sender/pkg/telemetry"
)

// metrics are the submission listener's instruments.
type metrics struct {
	messages metric.Int64Counter
	auths    metric.Int64Counter
}

func newMetrics(tel *telemetry.Telemetry) *metrics {
	m := tel.Meter("github.com/namirasoft/email-sender/services/inbound/submission")
	// Creating an instrument fails only for an invalid name; these are constant.
	messages, _ := m.Int64Counter("emailsender_submission_messages",
		metric.WithDescription("Messages submitted over SMTP, by the reply code (250 accepted; 4xx told to retry; 5xx refused)."),
		metric.WithUnit("{message}"))
	auths, _ := m.Int64Counter("emailsender_submission_auths",
		metric.WithDescription("SMTP AUTH attempts by outcome (ok, invalid, throttled, error)."),
		metric.WithUnit("{attempt}"))
	return &metrics{messages: messages, auths: auths}
}

func (m *metrics) message(ctx context.Context, code int) {
	m.messages.Add(ctx, 1, metric.WithAttributes(attribute.String("code", strconv.Itoa(code))))
}

func (m *metrics) auth(ctx context.Context, outcome string) {
	m.auths.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
}
