package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/telemetry"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// services are the stack's services, each with its own Telemetry as if it
// ran in its own process.
var services = []string{"ingest", "worker", "report"}

// telemetries returns a Telemetry per service (and one for the test's client),
// all exporting to exp.
func telemetries(t *testing.T, exp sdktrace.SpanExporter) map[string]*telemetry.Telemetry {
	t.Helper()
	tels := map[string]*telemetry.Telemetry{}
	for _, name := range append([]string{"client"}, services...) {
		opts := telemetry.Options{ServiceName: name}
		if exp != nil {
			opts.SpanProcessor = sdktrace.NewSimpleSpanProcessor(exp)
		}
		tel, err := telemetry.Setup(context.Background(), opts)
		require.NoError(t, err)
		// Registered before the stack: runs after the services stopped.
		t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
		tels[name] = tel
	}
	return tels
}

// TestOneTracePerMessage follows messages through ingest, worker and report,
// each with its own tracer provider, and checks that every message is one
// trace: the caller's span → the ingest gRPC server span → ingest.publish (or
// the outbox relay's publish for a scheduled message) → worker.deliver per
// attempt → provider.send, and report.apply_event for each event the worker
// published, children of the attempt that published them and linked to their
// batch's report.apply_batch span.
func TestOneTracePerMessage(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tels := telemetries(t, exp)
	s := newStack(t, stackOptions{telemetry: tels})
	client := tels["client"]

	type sent struct {
		id, account, to string
		want            v1.MessageStatus_Value
		caller          trace.SpanContext // invalid: the call carried no trace context
		scheduled       bool
		attempts        int
	}
	send := func(account, to string, propagate bool, sendAt time.Time) sent {
		ctx := s.ctx(account)
		var span trace.Span
		if propagate {
			ctx, span = client.Tracer("e2e").Start(ctx, "client.send", trace.WithSpanKind(trace.SpanKindClient))
			c := propagation.MapCarrier{}
			client.Propagator.Inject(ctx, c)
			ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", c.Get("traceparent"))
		}
		req := simple(to)
		if !sendAt.IsZero() {
			req.SendAt = timestamppb.New(sendAt)
		}
		resp, err := s.send.SendEmail(ctx, req)
		require.NoError(t, err)
		m := sent{id: resp.GetMessageId(), account: account, to: to, want: msgstatus.Delivered, scheduled: !sendAt.IsZero(), attempts: 1}
		if span != nil {
			span.End()
			m.caller = span.SpanContext()
		}
		return m
	}
	msgs := []sent{
		send("sandbox", "one@example.com", true, time.Time{}),
		send("sandbox", "two@example.com", false, time.Time{}),
		send("sandbox", "transient@example.com", true, time.Time{}),
		send("sandbox", "later@example.com", true, time.Now().Add(1500*time.Millisecond)),
		send("a", "smtp@example.com", true, time.Time{}),
	}
	msgs[2].attempts = 3 // two simulated transient failures, then sent
	msgs[4].want = msgstatus.Sent
	for _, m := range msgs {
		s.waitStatus(m.account, m.id, m.want)
	}

	for _, m := range msgs {
		t.Run(m.to, func(t *testing.T) {
			// The report's spans end just after its commit: wait for them.
			var tr traceOf
			require.EventuallyWithT(t, func(c *assert.CollectT) {
				tr = collect(exp.GetSpans(), m.id)
				assert.Len(c, tr.named("worker.deliver"), m.attempts)
				assert.Len(c, tr.named("provider.send"), m.attempts)
				// ACCEPTED (SCHEDULED), ATTEMPT_STARTED per attempt, RETRYING per
				// failed one, SENT, DELIVERED.
				want := 1 + 2*m.attempts - 1 + 1
				if m.want == msgstatus.Delivered {
					want++
				}
				assert.Len(c, tr.named("report.apply_event"), want)
			}, 10*time.Second, 50*time.Millisecond)

			require.NotEmpty(t, tr.spans, "no span names message %s", m.id)
			id := tr.spans[0].SpanContext.TraceID()
			for _, sp := range tr.spans {
				require.Equal(t, id, sp.SpanContext.TraceID(), "span %s of message %s is in another trace", sp.Name, m.id)
			}
			all := tr.trace(exp.GetSpans(), id)

			// The root: the caller's span when it sent trace context, else the
			// ingest server span.
			server := one(t, all, "emailsender.v1.SendService/SendEmail")
			require.Equal(t, "ingest", service(server))
			require.Equal(t, trace.SpanKindServer, server.SpanKind)
			if m.caller.IsValid() {
				require.Equal(t, m.caller.TraceID(), id, "ingest did not continue the caller's trace")
				require.Equal(t, m.caller.SpanID(), server.Parent.SpanID())
			} else {
				require.False(t, server.Parent.IsValid(), "server span of an untraced call has a parent")
			}

			// The job's publish: by the call, or by the outbox relay when due.
			var publish tracetest.SpanStub
			if m.scheduled {
				publish = one(t, all, "outbox relay publish")
			} else {
				publish = one(t, all, "ingest.publish")
				require.Equal(t, m.id, attr(publish, "message.id"))
			}
			require.Equal(t, "ingest", service(publish))
			require.Equal(t, trace.SpanKindProducer, publish.SpanKind)
			requireChild(t, server, publish)

			delivers := tr.named("worker.deliver")
			for _, d := range delivers {
				require.Equal(t, "worker", service(d))
				require.Equal(t, trace.SpanKindConsumer, d.SpanKind)
				requireChild(t, publish, d)
			}
			for _, p := range tr.named("provider.send") {
				require.Equal(t, "worker", service(p))
				require.Equal(t, trace.SpanKindClient, p.SpanKind)
				requireChild(t, parentIn(t, delivers, p), p)
			}
			byID := index(exp.GetSpans())
			for _, a := range tr.named("report.apply_event") {
				require.Equal(t, "report", service(a))
				switch attr(a, "event_type") {
				case "ACCEPTED":
					requireChild(t, publish, a) // published with the job
				case "SCHEDULED":
					requireChild(t, server, a) // published by the call; the job waits
				default:
					requireChild(t, parentIn(t, delivers, a), a)
				}
				require.Len(t, a.Links, 1, "apply_event links to its batch")
				batch, ok := byID[a.Links[0].SpanContext.SpanID()]
				require.True(t, ok, "linked batch span not exported")
				require.Equal(t, "report.apply_batch", batch.Name)
				require.True(t, hasLink(batch, a.SpanContext), "the batch span links back to its events")
			}

			// Nothing else hangs in the trace: every span's parent is in it.
			spanIDs := map[trace.SpanID]bool{}
			for _, sp := range all {
				spanIDs[sp.SpanContext.SpanID()] = true
			}
			seen := map[string]bool{}
			for _, sp := range all {
				seen[service(sp)] = true
				if sp.Parent.IsValid() {
					require.True(t, spanIDs[sp.Parent.SpanID()], "span %s has a parent outside the trace", sp.Name)
				}
			}
			for _, svc := range services {
				require.True(t, seen[svc], "no %s span in the trace", svc)
			}
		})
	}
}

// TestMetricsEndpoints scrapes each service's /metrics over HTTP after sends
// that are sent, retried and failed.
func TestMetricsEndpoints(t *testing.T) {
	t.Parallel()
	tels := telemetries(t, nil)
	s := newStack(t, stackOptions{telemetry: tels})
	urls := map[string]string{}
	for _, svc := range services {
		srv := httptest.NewServer(tels[svc].HTTPHandler(false))
		t.Cleanup(srv.Close)
		urls[svc] = srv.URL + "/metrics"
	}

	ok := s.sendOK("sandbox", simple("ok@example.com"))
	transient := s.sendOK("sandbox", simple("transient@example.com"))
	reject := s.sendOK("sandbox", simple("reject@example.com"))
	smtp := s.sendOK("a", simple("someone@example.com"))
	s.waitStatus("sandbox", ok, msgstatus.Delivered)
	s.waitStatus("sandbox", transient, msgstatus.Delivered)
	s.waitStatus("sandbox", reject, msgstatus.Failed)
	s.waitStatus("a", smtp, msgstatus.Sent)

	want := map[string][]string{
		"ingest": {
			`emailsender_messages_accepted_total{provider_kind="sandbox"} 3`,
			`emailsender_messages_accepted_total{provider_kind="smtp"} 1`,
			// Four calls one after the other: four groups of one.
			`emailsender_ingest_commit_group_messages_count 4`,
			`emailsender_ingest_commit_group_messages_bucket{le="1"} 4`,
			`rpc_server_call_duration_seconds_count{rpc_method="emailsender.v1.SendService/SendEmail",rpc_response_status_code="OK"`,
		},
		"worker": {
			`emailsender_messages_sent_total{provider_kind="sandbox"} 2`,
			`emailsender_messages_sent_total{provider_kind="smtp"} 1`,
			`emailsender_messages_failed_total{error_class="permanent"} 1`,
			`emailsender_delivery_retries_total{reason="transient"} 2`,
			`emailsender_end_to_end_seconds_count{provider_kind="sandbox"} 2`,
			`emailsender_end_to_end_seconds_bucket{provider_kind="smtp",le="+Inf"} 1`,
			`emailsender_consumer_pending{consumer="worker-sandbox",stream="EMAIL_SEND"} `,
			`emailsender_consumer_ack_pending{consumer="worker-smtp",stream="EMAIL_SEND"} `,
			`emailsender_consumer_redelivered{consumer="worker-sandbox",stream="EMAIL_SEND"} `,
		},
		"report": {
			`emailsender_report_events_total{outcome="applied"} `,
			`emailsender_consumer_pending{consumer="report",stream="EMAIL_EVENTS"} `,
			`emailsender_consumer_redelivered{consumer="report",stream="EMAIL_EVENTS"} `,
		},
	}
	for _, svc := range services {
		// The consumer gauges appear at the first poll after the consumers exist.
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			body := scrape(c, urls[svc])
			for _, w := range want[svc] {
				assert.Contains(c, body, w, "%s /metrics", svc)
			}
			assert.Contains(c, body, `service_name="`+svc+`"`)
		}, 15*time.Second, 100*time.Millisecond, "%s /metrics", svc)
	}

	// Events applied: ACCEPTED of each of the four messages (ingest publishes
	// it with the job, the report stores it); the worker published STARTED,
	// SENT and DELIVERED for ok; three STARTED, two RETRYING, SENT and
	// DELIVERED for transient; STARTED and FAILED for reject; STARTED and SENT
	// for smtp.
	body := scrape(t, urls["report"])
	require.Equal(t, 4+3+7+2+2, metricValue(t, body, `emailsender_report_events_total{outcome="applied"}`))
	// Every message sent has a latency under the test's own duration.
	body = scrape(t, urls["worker"])
	require.Equal(t, 2, metricValue(t, body, `emailsender_end_to_end_seconds_bucket{provider_kind="sandbox",le="60"}`))
}

func scrape(t require.TestingT, url string) string {
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Type"), "text/plain")
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// metricValue is the value of the series that starts with series.
func metricValue(t *testing.T, body, series string) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	require.NotNil(t, m, "no series %s in\n%s", series, body)
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return int(v)
}

// traceOf is the spans that name one message.
type traceOf struct{ spans tracetest.SpanStubs }

// collect returns the spans naming message id (ingest.publish and
// worker.deliver as message.id, report.apply_event as message_id), and the
// provider.send spans under those worker.deliver spans.
func collect(spans tracetest.SpanStubs, id string) traceOf {
	var tr traceOf
	delivers := map[trace.SpanID]bool{}
	for _, sp := range spans {
		if attr(sp, "message.id") == id {
			tr.spans = append(tr.spans, sp)
			if sp.Name == "worker.deliver" {
				delivers[sp.SpanContext.SpanID()] = true
			}
		}
	}
	for _, sp := range spans {
		if sp.Name == "provider.send" && delivers[sp.Parent.SpanID()] {
			tr.spans = append(tr.spans, sp)
		}
	}
	return tr
}

func (tr traceOf) named(name string) tracetest.SpanStubs {
	var out tracetest.SpanStubs
	for _, sp := range tr.spans {
		if sp.Name == name {
			out = append(out, sp)
		}
	}
	return out
}

// trace returns every span of trace id.
func (traceOf) trace(spans tracetest.SpanStubs, id trace.TraceID) tracetest.SpanStubs {
	var out tracetest.SpanStubs
	for _, sp := range spans {
		if sp.SpanContext.TraceID() == id {
			out = append(out, sp)
		}
	}
	return out
}

func one(t *testing.T, spans tracetest.SpanStubs, name string) tracetest.SpanStub {
	t.Helper()
	var out tracetest.SpanStubs
	for _, sp := range spans {
		if sp.Name == name {
			out = append(out, sp)
		}
	}
	require.Len(t, out, 1, "spans named %q: %s", name, names(spans))
	return out[0]
}

func names(spans tracetest.SpanStubs) string {
	var out []string
	for _, sp := range spans {
		out = append(out, fmt.Sprintf("%s(%s)", sp.Name, service(sp)))
	}
	return strings.Join(out, ", ")
}

func index(spans tracetest.SpanStubs) map[trace.SpanID]tracetest.SpanStub {
	m := map[trace.SpanID]tracetest.SpanStub{}
	for _, sp := range spans {
		m[sp.SpanContext.SpanID()] = sp
	}
	return m
}

func parentIn(t *testing.T, parents tracetest.SpanStubs, child tracetest.SpanStub) tracetest.SpanStub {
	t.Helper()
	for _, p := range parents {
		if p.SpanContext.SpanID() == child.Parent.SpanID() {
			return p
		}
	}
	t.Fatalf("span %s: parent %s is none of %s", child.Name, child.Parent.SpanID(), names(parents))
	return tracetest.SpanStub{}
}

func requireChild(t *testing.T, parent, child tracetest.SpanStub) {
	t.Helper()
	require.Equal(t, parent.SpanContext.TraceID(), child.SpanContext.TraceID(), "%s and %s", parent.Name, child.Name)
	require.Equal(t, parent.SpanContext.SpanID(), child.Parent.SpanID(), "%s is not the parent of %s", parent.Name, child.Name)
}

func hasLink(sp tracetest.SpanStub, sc trace.SpanContext) bool {
	for _, l := range sp.Links {
		if l.SpanContext.SpanID() == sc.SpanID() && l.SpanContext.TraceID() == sc.TraceID() {
			return true
		}
	}
	return false
}

func attr(sp tracetest.SpanStub, key string) string {
	for _, kv := range sp.Attributes {
		if kv.Key == attribute.Key(key) {
			return kv.Value.Emit()
		}
	}
	return ""
}

func service(sp tracetest.SpanStub) string {
	if sp.Resource == nil {
		return ""
	}
	v, _ := sp.Resource.Set().Value("service.name")
	return v.AsString()
}
