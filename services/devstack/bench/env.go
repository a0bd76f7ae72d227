package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/netguard"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/smtp"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/schema"
	"github.com/namirasoft/email-sender/pkg/secretbox"
	"github.com/namirasoft/email-sender/pkg/telemetry"
	"github.com/namirasoft/email-sender/pkg/testkit/natsembed"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
	"github.com/namirasoft/email-sender/pkg/testkit/smtpsink"
	"github.com/namirasoft/email-sender/services/ingest"
	"github.com/namirasoft/email-sender/services/report"
	"github.com/namirasoft/email-sender/services/worker"
)

// Pool sizes of the benchmark's SMTP provider configurations: the local sinks
// answer at once, so 16 connections keep them busy; the 200 ms sink needs 256
// (the most a configuration allows) to pass 1,000 messages/s.
const (
	fastPool = 16
	slowPool = 256
	// workerConcurrency is the in-process worker's WORKER_CONCURRENCY: at least
	// the largest pool, so the 200 ms sink's connections are all in use.
	workerConcurrency = 256
	// pgConns is DATABASE_MAX_CONNS of each service (the default) and the
	// limit's pool size.
	pgConns = 16
)

// env is the system under test.
type env struct {
	o   options
	log *slog.Logger

	adminURL string
	schema   string
	dbURL    string
	db       *pgxpool.Pool // the harness's own pool (queries, setup)
	// pgApp is the application_name of the services' (and the limits')
	// connections, "<pgApp>:<part>": the backends whose CPU a phase counts
	// as postgres' (others' use of a shared server is not this run's).
	pgApp string

	natsSrv *server.Server
	natsURL string
	natsDir string

	fastSink  *smtpsink.Sink
	slowSink  *smtpsink.Sink
	stallSink *smtpsink.Sink

	accounts map[string]ingest.BootstrapResult
	// params are the accounts' bootstrap parameters, for runs that take an
	// account of their own like one of them (newAccount).
	params map[string]ingest.BootstrapParams
	// hooksMsgID is the hooks account's one message (webhook.go).
	hooksMsgID string

	ingestAddr string
	reportAddr string
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	errs       chan error
	closers    []func()
	stopped    bool

	setup map[string]string
}

func newEnv(ctx context.Context, o options, log *slog.Logger) (*env, error) {
	e := &env{o: o, log: log, accounts: map[string]ingest.BootstrapResult{}, params: map[string]ingest.BootstrapParams{},
		errs: make(chan error, 8), setup: map[string]string{}}
	ok := false
	defer func() {
		if !ok {
			e.close()
		}
	}()
	if err := e.startPostgres(ctx); err != nil {
		return nil, err
	}
	if err := e.startNATS(); err != nil {
		return nil, err
	}
	var err error
	if e.fastSink, err = smtpsink.New(smtpsink.Options{DiscardData: true}); err != nil {
		return nil, err
	}
	e.closers = append(e.closers, e.fastSink.Close)
	if e.slowSink, err = smtpsink.New(smtpsink.Options{DiscardData: true, Latency: 200 * time.Millisecond}); err != nil {
		return nil, err
	}
	e.closers = append(e.closers, e.slowSink.Close)
	if e.stallSink, err = smtpsink.New(smtpsink.Options{DiscardData: true, Latency: time.Hour}); err != nil {
		return nil, err
	}
	e.closers = append(e.closers, e.stallSink.Close)

	accounts := []ingest.BootstrapParams{
		{AccountName: "ingest", ProviderKind: "sandbox", Senders: []string{"example.com"}},
		{AccountName: "e2e", ProviderKind: "smtp", SMTP: ingest.SMTPSettings{Host: e.fastSink.Host(), Port: e.fastSink.Port(), TLS: "none", PoolSize: fastPool}, Senders: []string{"example.com"}},
		{AccountName: "slow", ProviderKind: "smtp", SMTP: ingest.SMTPSettings{Host: e.slowSink.Host(), Port: e.slowSink.Port(), TLS: "none", PoolSize: slowPool}, Senders: []string{"example.com"}},
		{AccountName: hooksAccount, ProviderKind: "sandbox", Senders: []string{"example.com"}},
		{AccountName: "queued", ProviderKind: "smtp", SMTP: ingest.SMTPSettings{Host: e.stallSink.Host(), Port: e.stallSink.Port(), TLS: "none", PoolSize: fastPool}, Senders: []string{"example.com"}},
	}
	for _, p := range accounts {
		p.Senders = []string{"example.com"} // sender@example.com sends
		acc, err := ingest.Bootstrap(ctx, e.db, nil, p)
		if err != nil {
			return nil, err
		}
		e.accounts[p.AccountName], e.params[p.AccountName] = acc, p
	}
	if err := e.startServices(); err != nil {
		return nil, err
	}
	e.setup["postgres"] = redact(e.adminURL) + " schema " + e.schema
	e.setup["nats"] = "in-process nats-server (JetStream file storage, default 2m sync interval) " + e.natsURL
	e.setup["smtp_pool_fast_sink"] = fmt.Sprint(fastPool)
	e.setup["smtp_pool_200ms_sink"] = fmt.Sprint(slowPool)
	e.setup["worker_concurrency"] = fmt.Sprint(workerConcurrency)
	e.setup["database_max_conns_per_service"] = fmt.Sprint(pgConns)
	ok = true
	return e, nil
}

// newAccount bootstraps an account configured like the account named like
// (its provider, with a configuration of its own) and returns its name.
func (e *env) newAccount(ctx context.Context, like string) (string, error) {
	p := e.params[like]
	p.AccountName = fmt.Sprintf("%s-%d", like, len(e.accounts))
	acc, err := ingest.Bootstrap(ctx, e.db, nil, p)
	if err != nil {
		return "", fmt.Errorf("bootstrap account %s: %w", p.AccountName, err)
	}
	e.accounts[p.AccountName], e.params[p.AccountName] = acc, p
	return p.AccountName, nil
}

// startPostgres creates a fresh schema with every migration applied.
func (e *env) startPostgres(ctx context.Context) error {
	e.adminURL = pgtest.URL()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	e.schema = "bench_" + hex.EncodeToString(b[:])
	e.pgApp = "emailsender-" + e.schema
	admin, err := pgxpool.New(ctx, e.adminURL)
	if err != nil {
		return fmt.Errorf("connect %s: %w", redact(e.adminURL), err)
	}
	defer admin.Close()
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+e.schema); err != nil {
		return fmt.Errorf("create schema (is PostgreSQL running? DATABASE_URL=%s): %w", redact(e.adminURL), err)
	}
	e.closers = append(e.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		a, err := pgxpool.New(ctx, e.adminURL)
		if err != nil {
			e.log.Warn("drop schema", "error", err)
			return
		}
		defer a.Close()
		if _, err := a.Exec(ctx, "DROP SCHEMA "+e.schema+" CASCADE"); err != nil {
			e.log.Warn("drop schema", "schema", e.schema, "error", err)
		}
	})
	if e.dbURL, err = pgtest.WithSearchPath(e.adminURL, e.schema); err != nil {
		return err
	}
	if e.db, err = e.poolNamed(ctx, pgConns, e.pgApp+"-harness"); err != nil {
		return err
	}
	e.closers = append(e.closers, e.db.Close)
	if _, err := schema.Migrate(ctx, e.db); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var version string
	if err := e.db.QueryRow(ctx, "SHOW server_version").Scan(&version); err == nil {
		e.setup["postgres_version"] = version
	}
	for _, s := range []string{"synchronous_commit", "fsync", "shared_buffers"} {
		var v string
		if err := e.db.QueryRow(ctx, "SHOW "+s).Scan(&v); err == nil {
			e.setup["postgres_"+s] = v
		}
	}
	return nil
}

// pool is a pool of part of the system under test (a service, a limit).
func (e *env) pool(ctx context.Context, conns int32, part string) (*pgxpool.Pool, error) {
	return e.poolNamed(ctx, conns, e.pgApp+":"+part)
}

func (e *env) poolNamed(ctx context.Context, conns int32, app string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(e.dbURL)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = conns
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	return pgxpool.NewWithConfig(ctx, cfg)
}

func (e *env) startNATS() error {
	dir, err := os.MkdirTemp("", "emailsender-bench-nats")
	if err != nil {
		return err
	}
	e.natsDir = dir
	e.closers = append(e.closers, func() { _ = os.RemoveAll(dir) })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	var srv *server.Server
	pprof.Do(context.Background(), pprof.Labels("part", "nats"), func(context.Context) {
		srv, err = natsembed.Start(natsembed.Config{Host: "127.0.0.1", Port: port, StoreDir: dir})
	})
	if err != nil {
		return err
	}
	e.natsSrv = srv
	e.natsURL = fmt.Sprintf("nats://127.0.0.1:%d", port)
	e.closers = append(e.closers, func() { srv.Shutdown(); srv.WaitForShutdown() })

	nc, js, err := e.jetstream("bench-setup")
	if err != nil {
		return err
	}
	defer nc.Close()
	return queue.EnsureStreams(context.Background(), js, queue.StreamConfig{})
}

// jetstream opens a NATS connection; its reader goroutines carry the caller's
// pprof labels.
func (e *env) jetstream(name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(e.natsURL, nats.Name(name), nats.MaxReconnects(-1))
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// startServices runs ingest, report and the smtp worker in this process, each
// with its own PostgreSQL pool and NATS connection and its own pprof label.
func (e *env) startServices() error {
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	tel := telemetry.Nop()

	start := func(part string, build func(ctx context.Context) (func(context.Context) error, error)) error {
		var err error
		pprof.Do(ctx, pprof.Labels("part", part), func(ctx context.Context) {
			var runFn func(context.Context) error
			if runFn, err = build(ctx); err != nil {
				return
			}
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				if err := runFn(ctx); err != nil && !errors.Is(err, context.Canceled) {
					e.log.Error("service stopped", "service", part, "error", err)
					e.errs <- fmt.Errorf("%s: %w", part, err)
				}
			}()
		})
		return err
	}
	deps := func(ctx context.Context, name string) (*pgxpool.Pool, jetstream.JetStream, error) {
		pool, err := e.pool(ctx, pgConns, name)
		if err != nil {
			return nil, nil, err
		}
		nc, js, err := e.jetstream(name)
		if err != nil {
			pool.Close()
			return nil, nil, err
		}
		e.closers = append(e.closers, func() { nc.Close(); pool.Close() })
		return pool, js, nil
	}

	if err := start("ingest", func(ctx context.Context) (func(context.Context) error, error) {
		pool, js, err := deps(ctx, "ingest")
		if err != nil {
			return nil, err
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		e.ingestAddr = lis.Addr().String()
		svc, err := ingest.New(ingest.Config{HTTPAddr: "off"}, ingest.Deps{Pool: pool, JetStream: js, Telemetry: tel, Logger: log,
			Auth: auth.NewKeyStore(pool, 10*time.Second), Listener: lis})
		if err != nil {
			return nil, err
		}
		return svc.Run, nil
	}); err != nil {
		return fmt.Errorf("start ingest: %w", err)
	}
	if err := start("report", func(ctx context.Context) (func(context.Context) error, error) {
		pool, js, err := deps(ctx, "report")
		if err != nil {
			return nil, err
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		e.reportAddr = lis.Addr().String()
		mk, err := secretbox.NewMasterKey()
		if err != nil {
			return nil, err
		}
		cfg := report.Config{HTTPAddr: "off", MasterKeys: "bench:" + mk}
		// The webhook receiver of the bench listens on loopback.
		cfg.Webhooks.Outbound.AllowNets = []string{"127.0.0.0/8", "::1/128"}
		svc, err := report.New(cfg, report.Deps{Pool: pool, JetStream: js, Telemetry: tel, Logger: log,
			Authenticator: auth.NewKeyStore(pool, 30*time.Second), Listener: lis})
		if err != nil {
			return nil, err
		}
		return svc.Run, nil
	}); err != nil {
		return fmt.Errorf("start report: %w", err)
	}
	if err := start("worker", func(ctx context.Context) (func(context.Context) error, error) {
		pool, js, err := deps(ctx, "worker")
		if err != nil {
			return nil, err
		}
		// The SMTP sink runs on this machine (OUTBOUND_ALLOW_NETS of a bench).
		guard, err := netguard.New(netguard.Config{AllowNets: []string{"127.0.0.0/8", "::1"}})
		if err != nil {
			return nil, err
		}
		sender := smtp.New(smtp.Options{Logger: log, Guard: guard})
		e.closers = append(e.closers, func() { _ = sender.Close() })
		w, err := worker.New(ctx, worker.Config{Providers: []string{"smtp"}, Concurrency: workerConcurrency},
			worker.Deps{Pool: pool, JetStream: js, Telemetry: tel, Logger: log,
				Senders: map[string]provider.Sender{"smtp": sender}})
		if err != nil {
			return nil, err
		}
		return w.Run, nil
	}); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	return nil
}

// stopServices stops the in-process services (before the memory phase runs
// them as processes).
func (e *env) stopServices() {
	if e.cancel == nil || e.stopped {
		return
	}
	e.stopped = true
	e.cancel()
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		e.log.Warn("in-process services did not stop within 30s")
	}
}

func (e *env) failed() error {
	select {
	case err := <-e.errs:
		return err
	default:
		return nil
	}
}

func (e *env) close() {
	e.stopServices()
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

// dial opens n gRPC connections to addr.
func dialN(addr string, n int) ([]*grpc.ClientConn, func(), error) {
	var conns []*grpc.ClientConn
	closeAll := func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}
	for range n {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		conns = append(conns, cc)
	}
	return conns, closeAll, nil
}

func redact(url string) string {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return "(unparseable)"
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s", cfg.ConnConfig.User, cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
}

func splitComma(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
