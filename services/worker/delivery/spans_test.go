package delivery

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/telemetry"
)

// quotingSender answers like a server that quotes the recipient.
type quotingSender struct{}

func (quotingSender) Send(context.Context, *provider.Delivery) provider.Outcome {
	return provider.Outcome{Class: provider.Permanent, Response: "550 5.1.1 <bob@example.com>: user unknown",
		Err: errors.New("550 5.1.1 <bob@example.com>: user unknown")}
}

// Provider replies quote recipient addresses: spans carry them only when the
// operator opted in (OTEL_RECORD_PERSONAL_DATA).
func TestSpansCarryNoPersonalDataByDefault(t *testing.T) {
	t.Parallel()
	for _, optIn := range []bool{false, true} {
		t.Run(fmt.Sprint("opt-in=", optIn), func(t *testing.T) {
			exp := tracetest.NewInMemoryExporter()
			tel, err := telemetry.Setup(t.Context(), telemetry.Options{ServiceName: "worker", SpanProcessor: sdktrace.NewSimpleSpanProcessor(exp), PersonalData: optIn})
			require.NoError(t, err)
			b := newDeliveryBundle(t, false, 1)
			b.d.svc.tel = tel
			pd := &provider.Delivery{Job: b.d.job, Attempt: 1, Recipients: []string{"bob@example.com"}, Config: b.d.config.Config}
			out := b.d.send(t.Context(), quotingSender{}, pd, time.Now().Add(time.Minute))
			require.Equal(t, provider.Permanent, out.Class)

			var text strings.Builder
			for _, sp := range exp.GetSpans() {
				for _, a := range sp.Attributes {
					text.WriteString(a.Value.Emit() + "\n")
				}
				for _, ev := range sp.Events {
					text.WriteString(ev.Name + "\n")
					for _, a := range ev.Attributes {
						text.WriteString(a.Value.Emit() + "\n")
					}
				}
				text.WriteString(sp.Status.Description + "\n")
			}
			require.NotEmpty(t, exp.GetSpans())
			if optIn {
				require.Contains(t, text.String(), "bob@example.com")
			} else {
				require.NotContains(t, text.String(), "bob@example.com")
			}
		})
	}
}
