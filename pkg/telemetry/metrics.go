package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// LatencyBuckets are the histogram bounds, in seconds, of the delivery
// latencies: from a sandbox send (milliseconds) to a message retried for hours.
var LatencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600}

// MetricsHandler serves the Telemetry's metrics in the Prometheus text format.
func (t *Telemetry) MetricsHandler() http.Handler {
	reg := t.registry
	if reg == nil {
		reg = prometheus.NewRegistry() // Nop: an empty page
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

// HTTPHandler serves /metrics and, when withPProf is set, the runtime profiles
// under /debug/pprof/ (never on a public address: they expose internals).
func (t *Telemetry) HTTPHandler(withPProf bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", t.MetricsHandler())
	if withPProf {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// ServeHTTP serves h on lis until ctx ends, then shuts the server down (scrapes
// in flight get a few seconds).
func ServeHTTP(ctx context.Context, lis net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	log.InfoContext(ctx, "metrics serving", "addr", lis.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("metrics serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("metrics shutdown: %w", err)
	}
	return nil
}

// Label caches the measurement option of each value of one attribute, so that
// a hot path records with a pre-built attribute set instead of building one
// per call. Values must come from a small, fixed set (provider kinds, error
// classes, retry reasons): every value is kept for the life of the process.
type Label struct {
	key string
	m   sync.Map // value → metric.MeasurementOption
}

// NewLabel returns the cache of attribute key.
func NewLabel(key string) *Label { return &Label{key: key} }

// Option is the measurement option carrying key=value.
func (l *Label) Option(value string) metric.MeasurementOption {
	if o, ok := l.m.Load(value); ok {
		return o.(metric.MeasurementOption)
	}
	o, _ := l.m.LoadOrStore(value, metric.WithAttributeSet(attribute.NewSet(attribute.String(l.key, value))))
	return o.(metric.MeasurementOption)
}

// ConsumerRef names a JetStream durable consumer.
type ConsumerRef struct{ Stream, Consumer string }

// ConsumerInfoSource is the part of JetStream ConsumerStats needs
// (jetstream.JetStream implements it).
type ConsumerInfoSource interface {
	Consumer(ctx context.Context, stream, consumer string) (jetstream.Consumer, error)
}

// ConsumerStats exports the backlog of JetStream consumers as gauges
// (emailsender_consumer_pending, _ack_pending, _redelivered, labelled by
// stream and consumer). Consumer info is polled every interval by Run, not at
// scrape time, so a scrape never waits for NATS; a consumer whose info cannot
// be read (it does not exist yet, NATS is down) has no series until it can.
type ConsumerStats struct {
	tel      *Telemetry
	js       ConsumerInfoSource
	refs     []ConsumerRef
	interval time.Duration
	log      *slog.Logger

	mu     sync.Mutex
	values map[ConsumerRef]consumerValues
}

type consumerValues struct {
	pending, ackPending, redelivered int64
}

// NewConsumerStats returns the stats of refs; interval defaults to 5s.
func NewConsumerStats(tel *Telemetry, js ConsumerInfoSource, interval time.Duration, log *slog.Logger, refs ...ConsumerRef) *ConsumerStats {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	return &ConsumerStats{tel: tel, js: js, refs: refs, interval: interval, log: log, values: map[ConsumerRef]consumerValues{}}
}

// Run registers the gauges and polls until ctx ends.
func (c *ConsumerStats) Run(ctx context.Context) error {
	m := c.tel.Meter("github.com/namirasoft/email-sender/pkg/telemetry")
	pending, err := m.Int64ObservableGauge("emailsender_consumer_pending",
		metric.WithDescription("Messages on the stream not yet delivered to the JetStream consumer."),
		metric.WithUnit("{message}"))
	if err != nil {
		return fmt.Errorf("consumer gauges: %w", err)
	}
	ackPending, err := m.Int64ObservableGauge("emailsender_consumer_ack_pending",
		metric.WithDescription("Messages delivered to the JetStream consumer and not yet acknowledged."),
		metric.WithUnit("{message}"))
	if err != nil {
		return fmt.Errorf("consumer gauges: %w", err)
	}
	redelivered, err := m.Int64ObservableGauge("emailsender_consumer_redelivered",
		metric.WithDescription("Messages delivered more than once to the JetStream consumer and not yet acknowledged."),
		metric.WithUnit("{message}"))
	if err != nil {
		return fmt.Errorf("consumer gauges: %w", err)
	}
	attrs := make(map[ConsumerRef]metric.MeasurementOption, len(c.refs))
	for _, r := range c.refs {
		attrs[r] = metric.WithAttributeSet(attribute.NewSet(attribute.String("stream", r.Stream), attribute.String("consumer", r.Consumer)))
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		for r, v := range c.values {
			o.ObserveInt64(pending, v.pending, attrs[r])
			o.ObserveInt64(ackPending, v.ackPending, attrs[r])
			o.ObserveInt64(redelivered, v.redelivered, attrs[r])
		}
		return nil
	}, pending, ackPending, redelivered)
	if err != nil {
		return fmt.Errorf("consumer gauges: %w", err)
	}
	defer func() { _ = reg.Unregister() }()

	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		c.poll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (c *ConsumerStats) poll(ctx context.Context) {
	for _, r := range c.refs {
		v, err := c.read(ctx, r)
		c.mu.Lock()
		if err != nil {
			delete(c.values, r)
		} else {
			c.values[r] = v
		}
		c.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			c.log.DebugContext(ctx, "consumer info", "stream", r.Stream, "consumer", r.Consumer, "error", err)
		}
	}
}

func (c *ConsumerStats) read(ctx context.Context, r ConsumerRef) (consumerValues, error) {
	ctx, cancel := context.WithTimeout(ctx, c.interval)
	defer cancel()
	// Looking the consumer up reads its info: CachedInfo is that answer.
	cons, err := c.js.Consumer(ctx, r.Stream, r.Consumer)
	if err != nil {
		return consumerValues{}, err
	}
	info := cons.CachedInfo()
	return consumerValues{
		pending:     int64(info.NumPending),
		ackPending:  int64(info.NumAckPending),
		redelivered: int64(info.NumRedelivered),
	}, nil
}
