// Package telemetry sets up tracing, metrics and structured logging the same
// way in every service: OpenTelemetry traces (exported over OTLP when
// OTEL_EXPORTER_OTLP_ENDPOINT is set), W3C trace context propagation over gRPC
// metadata and NATS headers, OpenTelemetry metrics served in the Prometheus
// text format (each Telemetry has its own registry; nothing is global), and
// slog JSON logs that carry the trace id.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// Telemetry is what a service needs to trace and count: a tracer provider, the
// propagator that carries trace context between processes, and a meter
// provider whose instruments MetricsHandler serves. All are passed to
// components explicitly; nothing is registered globally.
type Telemetry struct {
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	MeterProvider  metric.MeterProvider
	// PersonalData allows spans to carry recipient addresses and provider
	// replies (which quote them): off unless the operator opts in with
	// OTEL_RECORD_PERSONAL_DATA=true, since traces usually leave the trust
	// boundary of the message store.
	PersonalData bool
	registry     *prometheus.Registry
	shutdown     func(context.Context) error
}

// Options configures Setup.
type Options struct {
	ServiceName string
	// OTLPEndpoint enables the OTLP/gRPC exporter. The exporter itself reads the
	// standard OTEL_EXPORTER_OTLP_* variables (endpoint URL, headers, insecure);
	// empty: spans are created (so logs carry trace ids) but not exported.
	OTLPEndpoint string
	// SpanProcessor, when set, is added as well (tests use an in-memory exporter).
	SpanProcessor sdktrace.SpanProcessor
	// PersonalData: see Telemetry.PersonalData.
	PersonalData bool
}

// OptionsFromEnv reads the standard OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_SERVICE_NAME.
func OptionsFromEnv(serviceName string) Options {
	if n := os.Getenv("OTEL_SERVICE_NAME"); n != "" {
		serviceName = n
	}
	return Options{ServiceName: serviceName, OTLPEndpoint: os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"),
		PersonalData: os.Getenv("OTEL_RECORD_PERSONAL_DATA") == "true"}
}

// Setup builds the tracer provider.
func Setup(ctx context.Context, opts Options) (*Telemetry, error) {
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(opts.ServiceName)))
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if opts.OTLPEndpoint != "" {
		exp, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("otlp exporter: %w", err)
		}
		tpOpts = append(tpOpts, sdktrace.WithBatcher(exp))
	}
	if opts.SpanProcessor != nil {
		tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(opts.SpanProcessor))
	}
	tp := sdktrace.NewTracerProvider(tpOpts...)

	// Metrics: the Prometheus exporter is a reader of the meter provider that
	// collects at scrape time into this Telemetry's own registry.
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("register go collector: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("register process collector: %w", err)
	}
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(exp))
	return &Telemetry{
		TracerProvider: tp,
		Propagator:     propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		MeterProvider:  mp,
		PersonalData:   opts.PersonalData,
		registry:       reg,
		shutdown: func(ctx context.Context) error {
			return errors.Join(tp.Shutdown(ctx), mp.Shutdown(ctx))
		},
	}, nil
}

// Shutdown flushes pending spans.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil || t.shutdown == nil {
		return nil
	}
	if err := t.shutdown(ctx); err != nil {
		return fmt.Errorf("telemetry shutdown: %w", err)
	}
	return nil
}

// Tracer returns a named tracer.
func (t *Telemetry) Tracer(name string) trace.Tracer { return t.TracerProvider.Tracer(name) }

// Meter returns a named meter; one that records nothing when the Telemetry
// was built without a MeterProvider.
func (t *Telemetry) Meter(name string) metric.Meter {
	if t.MeterProvider == nil {
		return metricnoop.NewMeterProvider().Meter(name)
	}
	return t.MeterProvider.Meter(name)
}

// InjectNATS writes ctx's trace context into NATS message headers.
func (t *Telemetry) InjectNATS(ctx context.Context, h nats.Header) {
	t.Propagator.Inject(ctx, propagation.HeaderCarrier(http.Header(h)))
}

// ExtractNATS returns ctx carrying the trace context found in NATS headers.
func (t *Telemetry) ExtractNATS(ctx context.Context, h nats.Header) context.Context {
	return t.Propagator.Extract(ctx, propagation.HeaderCarrier(http.Header(h)))
}

// Nop is a Telemetry that records nothing, for tests and tools.
func Nop() *Telemetry {
	return &Telemetry{
		TracerProvider: trace.NewNoopTracerProvider(),
		Propagator:     propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		MeterProvider:  metricnoop.NewMeterProvider(),
	}
}

// NewLogger returns a JSON slog logger that adds trace_id and span_id from the
// context of every record, and service to every record.
func NewLogger(w io.Writer, level slog.Level, service string) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(traceHandler{h}).With("service", service)
}

type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(as)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}
