package telemetry_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/metric"

	"github.com/namirasoft/email-sender/pkg/telemetry"
	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
)

// serve serves tel's HTTP handler on a loopback port until the test ends.
func serve(t *testing.T, tel *telemetry.Telemetry, pprof bool) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- telemetry.ServeHTTP(ctx, lis, tel.HTTPHandler(pprof), slog.New(slog.DiscardHandler)) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return "http://" + lis.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestMetricsEndpoint(t *testing.T) {
	t.Parallel()
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "svc"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })

	m := tel.Meter("test")
	c, err := m.Int64Counter("emailsender_things", metric.WithUnit("{thing}"), metric.WithDescription("things"))
	require.NoError(t, err)
	h, err := m.Float64Histogram("emailsender_wait", metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(telemetry.LatencyBuckets...))
	require.NoError(t, err)
	kind := telemetry.NewLabel("provider_kind")
	require.Same(t, kind.Option("smtp"), kind.Option("smtp"), "options are cached")
	c.Add(context.Background(), 2, kind.Option("smtp"))
	c.Add(context.Background(), 1, kind.Option("sandbox"))
	h.Record(context.Background(), 0.2)

	url := serve(t, tel, false)
	code, body := get(t, url+"/metrics")
	require.Equal(t, http.StatusOK, code)
	for _, want := range []string{
		"# TYPE emailsender_things_total counter",
		`emailsender_things_total{provider_kind="smtp"} 2`,
		`emailsender_things_total{provider_kind="sandbox"} 1`,
		"# TYPE emailsender_wait_seconds histogram",
		`emailsender_wait_seconds_bucket{le="0.25"} 1`,
		`target_info{`, `service_name="svc"`,
		"go_goroutines ",
	} {
		require.Contains(t, body, want)
	}
	code, _ = get(t, url+"/debug/pprof/")
	require.Equal(t, http.StatusNotFound, code, "pprof is off unless asked for")
	code, _ = get(t, serve(t, tel, true)+"/debug/pprof/")
	require.Equal(t, http.StatusOK, code)

	// Nop serves an empty page rather than failing.
	code, body = get(t, serve(t, telemetry.Nop(), false)+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Empty(t, strings.TrimSpace(body))
}

func TestConsumerStats(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := context.Background()
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}})
	require.NoError(t, err)
	cons, err := js.CreateOrUpdateConsumer(ctx, "S", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy})
	require.NoError(t, err)
	for range 3 {
		_, err := js.Publish(ctx, "s.x", []byte("x"))
		require.NoError(t, err)
	}
	// Nak the first message until it comes back, and leave what was fetched
	// unacknowledged: one redelivered, some ack pending, some pending.
	redelivered := false
	for !redelivered {
		b, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
		require.NoError(t, err)
		for m := range b.Messages() {
			md, err := m.Metadata()
			require.NoError(t, err)
			if md.NumDelivered > 1 {
				redelivered = true
				continue
			}
			if md.Sequence.Stream == 1 {
				require.NoError(t, m.Nak())
			}
		}
	}
	info, err := cons.Info(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, info.NumRedelivered)

	tel, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "svc"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	stats := telemetry.NewConsumerStats(tel, js, 50*time.Millisecond, slog.New(slog.DiscardHandler),
		telemetry.ConsumerRef{Stream: "S", Consumer: "c"}, telemetry.ConsumerRef{Stream: "S", Consumer: "missing"})
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- stats.Run(sctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })

	url := serve(t, tel, false) + "/metrics"
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, body := get(t, url)
		for _, want := range []string{
			fmt.Sprintf(`emailsender_consumer_pending{consumer="c",stream="S"} %d`, info.NumPending),
			fmt.Sprintf(`emailsender_consumer_ack_pending{consumer="c",stream="S"} %d`, info.NumAckPending),
			`emailsender_consumer_redelivered{consumer="c",stream="S"} 1`,
		} {
			assert.True(c, strings.Contains(body, want), "no %s", want)
		}
		assert.False(c, strings.Contains(body, `consumer="missing"`), "a consumer that does not exist has series")
	}, 5*time.Second, 50*time.Millisecond)
}
