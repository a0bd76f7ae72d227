// Package infra opens the shared infrastructure every service needs, the same
// way everywhere: a PostgreSQL pool (schema migrated by its owner, awaited by
// the others) and a JetStream connection (streams ensured), plus the service
// logger and telemetry. Both wait with backoff while their server is
// unreachable: services start in any order and survive restarts at start.
package infra

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/schema"
	"github.com/namirasoft/email-sender/pkg/telemetry"
)

// Logger returns the JSON logger of a service at the configured level.
func Logger(w io.Writer, cfg envconfig.Log, service string) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Level)); err != nil {
		return nil, fmt.Errorf("LOG_LEVEL: %w", err)
	}
	return telemetry.NewLogger(w, level, service), nil
}

// Schema says what a process does with the database schema.
type Schema int

const (
	// Migrate applies pending migrations: the schema's one owner (ingest, its
	// admin commands, the all-in-one dev process, the k8s migrate job).
	Migrate Schema = iota
	// AwaitSchema changes nothing and waits until the owner has applied every
	// migration this binary knows (worker, report).
	AwaitSchema
)

// Postgres opens a pool, waiting with backoff while PostgreSQL cannot be
// reached (so that services may start before it, or while it restarts), and
// then migrates or waits for the schema as mode says. It gives up only when
// ctx ends.
func Postgres(ctx context.Context, cfg envconfig.Postgres, mode Schema, log *slog.Logger) (*pgxpool.Pool, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("parse DATABASE_URL: %w", err)
	}
	if cfg.MaxConns > 0 {
		pcfg.MaxConns = cfg.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("connect postgres: %w", err)
	}
	step := func(ctx context.Context) (string, error) {
		if err := pool.Ping(ctx); err != nil {
			return "postgres not reachable", err
		}
		if mode == Migrate {
			if _, err := schema.Migrate(ctx, pool); err != nil {
				return "migrate", err
			}
			return "", nil
		}
		pending, err := schema.Pending(ctx, pool)
		if err != nil {
			return "read schema version", err
		}
		if len(pending) > 0 {
			return "schema not migrated yet (ingest migrates it)", fmt.Errorf("migrations %v pending", pending)
		}
		return "", nil
	}
	if err := retry(ctx, log, step); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// retry runs step until it succeeds, with exponential backoff (200 ms to 5 s)
// and a log line per failure; it fails only when ctx ends.
func retry(ctx context.Context, log *slog.Logger, step func(context.Context) (what string, err error)) error {
	delay := 200 * time.Millisecond
	for {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		what, err := step(sctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, errors.Join(err, ctx.Err()))
		}
		log.Warn(what+"; retrying", "error", err, "retry_in", delay.String())
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, errors.Join(err, ctx.Err()))
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// openJetStream connects to NATS and ensures the streams, waiting (with backoff)
// while NATS is unreachable, so services may start in any order. The
// connection reconnects forever; publishes fail at once while it is down rather
// than waiting in a buffer (the outbox and redelivery cover that time). Close
// it with Drain.
func openJetStream(ctx context.Context, cfg envconfig.NATS, name string, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	auth, err := NATSOptions(cfg)
	if err != nil {
		return nil, nil, err
	}
	opts := append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectBufSize(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { log.Warn("nats", "error", err) }),
	}, auth...)
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect nats %s: %w", redactURLs(cfg.URL), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	err = retry(ctx, log, func(ctx context.Context) (string, error) {
		return "jetstream not ready", queue.EnsureStreams(ctx, js, queue.StreamConfig{Replicas: cfg.StreamReplicas})
	})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// NATSOptions are the credential and TLS options cfg names. Every service
// connects with them (openJetStream); they are exported for the tools that
// connect as a service does.
func NATSOptions(cfg envconfig.NATS) ([]nats.Option, error) {
	var opts []nats.Option
	n := 0
	if cfg.User != "" || cfg.Password != "" {
		if cfg.User == "" || cfg.Password == "" {
			return nil, errors.New("NATS_USER and NATS_PASSWORD go together")
		}
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
		n++
	}
	if cfg.Token != "" {
		opts = append(opts, nats.Token(cfg.Token))
		n++
	}
	if cfg.NKeyFile != "" {
		o, err := nats.NkeyOptionFromSeed(cfg.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("NATS_NKEY_FILE: %w", err)
		}
		opts = append(opts, o)
		n++
	}
	if cfg.CredsFile != "" {
		if _, err := os.Stat(cfg.CredsFile); err != nil {
			return nil, fmt.Errorf("NATS_CREDS_FILE: %w", err)
		}
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
		n++
	}
	if n > 1 {
		return nil, errors.New("NATS credentials: set one of NATS_USER/NATS_PASSWORD, NATS_TOKEN, NATS_NKEY_FILE, NATS_CREDS_FILE")
	}
	if cfg.TLSCAFile != "" {
		if _, err := os.Stat(cfg.TLSCAFile); err != nil {
			return nil, fmt.Errorf("NATS_TLS_CA_FILE: %w", err)
		}
		opts = append(opts, nats.RootCAs(cfg.TLSCAFile))
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, errors.New("NATS_TLS_CERT_FILE and NATS_TLS_KEY_FILE go together")
	}
	if cfg.TLSCertFile != "" {
		if _, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
			return nil, fmt.Errorf("NATS_TLS_CERT_FILE/NATS_TLS_KEY_FILE: %w", err)
		}
		opts = append(opts, nats.ClientCert(cfg.TLSCertFile, cfg.TLSKeyFile))
	}
	return opts, nil
}

// redactURLs hides the passwords of comma-separated URLs.
func redactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}

// openTelemetry sets up tracing from the standard OTEL_* variables and returns a
// function that flushes it on exit.
func openTelemetry(ctx context.Context, service string, log *slog.Logger) (*telemetry.Telemetry, func(), error) {
	tel, err := telemetry.Setup(ctx, telemetry.OptionsFromEnv(service))
	if err != nil {
		return nil, nil, err
	}
	return tel, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("telemetry shutdown", "error", err)
		}
	}, nil
}

// Config names what a service process opens.
type Config struct {
	Service  string
	Log      envconfig.Log
	Postgres envconfig.Postgres
	NATS     envconfig.NATS
	// Schema: Migrate for the schema's owner, AwaitSchema for the others.
	Schema Schema
}

// Infra is what every service process opens at start: logger, telemetry, a
// migrated PostgreSQL pool and a JetStream connection with the streams in place.
type Infra struct {
	Log       *slog.Logger
	Telemetry *telemetry.Telemetry
	Pool      *pgxpool.Pool
	NATS      *nats.Conn
	JetStream jetstream.JetStream
	flush     func()
}

// Open opens everything, logging to stderr. Close releases it in reverse order.
func Open(ctx context.Context, cfg Config) (*Infra, error) {
	log, err := Logger(os.Stderr, cfg.Log, cfg.Service)
	if err != nil {
		return nil, err
	}
	in := &Infra{Log: log}
	if in.Telemetry, in.flush, err = openTelemetry(ctx, cfg.Service, log); err != nil {
		return nil, err
	}
	if in.Pool, err = Postgres(ctx, cfg.Postgres, cfg.Schema, log); err != nil {
		in.Close()
		return nil, err
	}
	if in.NATS, in.JetStream, err = openJetStream(ctx, cfg.NATS, cfg.Service, log); err != nil {
		in.Close()
		return nil, err
	}
	return in, nil
}

// Close drains NATS, closes the pool and flushes telemetry.
func (in *Infra) Close() {
	if in.NATS != nil {
		if err := in.NATS.Drain(); err != nil {
			in.Log.Warn("nats drain", "error", err)
		}
	}
	if in.Pool != nil {
		in.Pool.Close()
	}
	if in.flush != nil {
		in.flush()
	}
}

// Metrics listens on addr and returns the function that serves the
// telemetry's /metrics there, and /debug/pprof/ when cfg.PProf is set, until
// its context ends; addr "off" serves nothing. When addr cannot be listened on (the port is taken, e.g.
// by another replica on the same host) the error is logged and the service
// runs without /metrics: delivering mail matters more than counting it, and
// the failed scrape shows the gap (up == 0).
func Metrics(addr string, cfg envconfig.Metrics, tel *telemetry.Telemetry, log *slog.Logger) func(context.Context) error {
	idle := func(ctx context.Context) error { <-ctx.Done(); return nil }
	if addr == "off" {
		return idle
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error("metrics not served", "addr", addr, "error", err)
		return idle
	}
	h := tel.HTTPHandler(cfg.PProf)
	return func(ctx context.Context) error { return telemetry.ServeHTTP(ctx, lis, h, log) }
}

// Listener returns given when set (tests and the all-in-one process pass
// listeners they opened), else a new TCP listener on addr.
func Listener(given net.Listener, addr string) (net.Listener, error) {
	if given != nil {
		return given, nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return lis, nil
}
