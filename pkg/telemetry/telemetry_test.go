package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"testing"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestSetupPropagatesAndLogsTraceIDs(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tel, err := Setup(context.Background(), Options{ServiceName: "test", SpanProcessor: sdktrace.NewSimpleSpanProcessor(exp)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()

	ctx, span := tel.Tracer("t").Start(context.Background(), "parent")
	h := nats.Header{}
	tel.InjectNATS(ctx, h)
	if http.Header(h).Get("traceparent") == "" {
		t.Fatal("no traceparent header injected")
	}
	var buf bytes.Buffer
	NewLogger(&buf, slog.LevelInfo, "svc").InfoContext(ctx, "hello")
	span.End()

	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["trace_id"] != span.SpanContext().TraceID().String() || rec["service"] != "svc" {
		t.Fatalf("log record lacks trace id or service: %v", rec)
	}
	child, cspan := tel.Tracer("t").Start(tel.ExtractNATS(context.Background(), h), "child")
	_ = child
	cspan.End()
	if cspan.SpanContext().TraceID() != span.SpanContext().TraceID() {
		t.Fatal("extracted context does not continue the trace")
	}
	if n := len(exp.GetSpans()); n != 2 {
		t.Fatalf("exported %d spans, want 2", n)
	}
}
