package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/schema"
	"github.com/namirasoft/email-sender/pkg/secretbox"
	"github.com/namirasoft/email-sender/pkg/testkit/smtpsink"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest"
)

// systemConfig shapes the system under test.
type systemConfig struct {
	WorkDir string
	Bins    Binaries
	// DatabaseURL, when set, is used as it is (it cannot be restarted); else the
	// harness starts its own PostgreSQL cluster under WorkDir.
	DatabaseURL string
	// NATSNodes is 1 (one server) or 3 (a cluster with R3 streams).
	NATSNodes int
	Ingests   int
	Workers   int
	// SinkLatency delays every answer of the SMTP sink to DATA, like a real
	// server, so that sends are in flight when a worker is killed.
	SinkLatency time.Duration
	// WorkerAckWait is how soon a killed worker's job is redelivered.
	WorkerAckWait time.Duration
	Log           io.Writer
}

// system is the email sender as separate processes, plus the harness's own
// view of it: a pool on its database, a NATS connection and the SMTP sink.
type system struct {
	cfg   systemConfig
	start time.Time

	pg    *Postgres // nil when DatabaseURL was given
	dbURL string
	pool  *pgxpool.Pool

	nats []*NATSNode
	nc   *nats.Conn
	js   jetstream.JetStream

	sink      *smtpsink.Sink
	masterKey string
	account   ingest.BootstrapResult

	ingests []*proc
	workers []*proc
	report  *proc
	conns   []*grpc.ClientConn
	clients []v1.SendServiceClient

	logMu sync.Mutex
}

func (s *system) logf(format string, args ...any) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	fmt.Fprintf(s.cfg.Log, "[%7.2fs] %s\n", time.Since(s.start).Seconds(), fmt.Sprintf(format, args...))
}

// startSystem starts PostgreSQL (unless given), nats-server, the sink, an
// account whose SMTP provider is the sink, and the service processes.
func startSystem(ctx context.Context, cfg systemConfig) (_ *system, err error) {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.WorkerAckWait == 0 {
		cfg.WorkerAckWait = 5 * time.Second
	}
	s := &system{cfg: cfg, start: time.Now()}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err := os.MkdirAll(filepath.Join(cfg.WorkDir, "logs"), 0o755); err != nil {
		return nil, err
	}
	// PostgreSQL may run as another user, which must reach its directory.
	if err := os.Chmod(cfg.WorkDir, 0o755); err != nil {
		return nil, err
	}

	s.dbURL = cfg.DatabaseURL
	if s.dbURL == "" {
		s.logf("starting PostgreSQL")
		if s.pg, err = StartPostgres(ctx, filepath.Join(cfg.WorkDir, "pg")); err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		s.dbURL = s.pg.URL
	}
	pcfg, err := pgxpool.ParseConfig(s.dbURL)
	if err != nil {
		return nil, err
	}
	pcfg.MaxConns = 4
	if s.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return nil, err
	}
	if _, err := schema.Migrate(ctx, s.pool); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}

	if s.sink, err = smtpsink.New(smtpsink.Options{Latency: cfg.SinkLatency}); err != nil {
		return nil, err
	}
	if s.masterKey, err = secretbox.NewMasterKey(); err != nil {
		return nil, err
	}
	s.masterKey = "k1:" + s.masterKey
	keyring, err := secretbox.ParseKeyring(s.masterKey, "")
	if err != nil {
		return nil, err
	}
	s.account, err = ingest.Bootstrap(ctx, s.pool, keyring, ingest.BootstrapParams{
		AccountName: "chaos", ProviderKind: "smtp",
		SMTP:    ingest.SMTPSettings{Host: s.sink.Host(), Port: s.sink.Port(), TLS: "none", PoolSize: 8},
		Senders: []string{"example.com"}, // chaos@example.com sends
	})
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}

	s.logf("starting %d nats-server node(s)", cfg.NATSNodes)
	if s.nats, err = newNATSNodes(cfg.Bins.NATSServer, filepath.Join(cfg.WorkDir, "nats"), cfg.NATSNodes, s.logf); err != nil {
		return nil, err
	}
	for _, nd := range s.nats {
		if err := nd.Start(ctx); err != nil {
			return nil, fmt.Errorf("nats %s: %w\n%s", nd.Name, err, nd.proc.Tail(2000))
		}
	}
	if s.nc, err = nats.Connect(natsURLs(s.nats), nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond), nats.Name("chaos-harness")); err != nil {
		return nil, err
	}
	if s.js, err = jetstream.New(s.nc); err != nil {
		return nil, err
	}
	// The streams exist (with their replicas) before any service starts.
	replicas := 1
	if cfg.NATSNodes > 1 {
		replicas = 3
	}
	if err := s.ensureStreams(ctx, replicas); err != nil {
		return nil, err
	}

	s.startServices(replicas)
	for _, p := range append(append([]*proc{s.report}, s.workers...), s.ingests...) {
		if err := p.Start(); err != nil {
			return nil, err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, p := range append([]*proc{s.report}, s.ingests...) {
		if err := waitTCP(wctx, p.addr()); err != nil {
			return nil, fmt.Errorf("%s: %w\n%s", p.name, err, p.Tail(3000))
		}
	}
	for _, p := range s.ingests {
		cc, err := grpc.NewClient(p.addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		s.conns = append(s.conns, cc)
		s.clients = append(s.clients, v1.NewSendServiceClient(cc))
	}
	s.logf("system up: %d ingest, %d worker, 1 report, %d nats node(s), PostgreSQL %s, sink %s",
		len(s.ingests), len(s.workers), len(s.nats), redactURL(s.dbURL), s.sink.Addr())
	return s, nil
}

func (s *system) ensureStreams(ctx context.Context, replicas int) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := queue.EnsureStreams(sctx, s.js, queue.StreamConfig{Replicas: replicas})
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("create streams: %w", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// startServices prepares the service processes (they are started by the caller).
func (s *system) startServices(replicas int) {
	base := append(os.Environ(),
		"DATABASE_URL="+s.dbURL,
		"DATABASE_MAX_CONNS=8",
		"NATS_URL="+natsURLs(s.nats),
		"NATS_STREAM_REPLICAS="+strconv.Itoa(replicas),
		"MASTER_KEYS="+s.masterKey,
		"LOG_LEVEL=warn",
		"OTEL_SDK_DISABLED=true",
		// Nothing of a run listens on a fixed port: two runs (or a `make run`)
		// may share the machine.
		"INGEST_HTTP_ADDR=off",
		"REPORT_HTTP_ADDR=off",
		"INGEST_METRICS_ADDR=127.0.0.1:0",
		"REPORT_METRICS_ADDR=127.0.0.1:0",
		"WORKER_METRICS_ADDR=127.0.0.1:0",
		// A load test of one account: the per-account defaults (API rate,
		// daily quota, send rate) would be what it measures.
		"RATE_LIMIT_DEFAULT=0",
		"DAILY_QUOTA_DEFAULT=0",
		"WORKER_ACCOUNT_RATE=0",
		// The SMTP sink runs on this machine; providers' hosts are public
		// only otherwise.
		"OUTBOUND_ALLOW_NETS=127.0.0.0/8,::1",
	)
	newProc := func(name, bin string, port int, env ...string) *proc {
		p := &proc{name: name, bin: bin, env: append(append([]string(nil), base...), env...), supervise: true,
			logPath: filepath.Join(s.cfg.WorkDir, "logs", name+".log"), onEvent: s.logf}
		p.port = port
		return p
	}
	for i := range s.cfg.Ingests {
		port := mustFreePort()
		s.ingests = append(s.ingests, newProc(fmt.Sprintf("ingest-%d", i+1), s.cfg.Bins.Ingest, port,
			"INGEST_GRPC_ADDR="+hostPort(port),
			"INGEST_SHUTDOWN_GRACE=2s",
			"OUTBOX_INTERVAL=250ms",
			"OUTBOX_GRACE=2s",
			"OUTBOX_MAX_BACKOFF=2s",
			// The harness's sender is not a verified one; sender
			// verification is not what this run is about.
			"REQUIRE_VERIFIED_SENDERS=false",
		))
	}
	for i := range s.cfg.Workers {
		s.workers = append(s.workers, newProc(fmt.Sprintf("worker-%d", i+1), s.cfg.Bins.Worker, 0,
			"WORKER_PROVIDERS=smtp",
			"WORKER_GRPC_ADDR=127.0.0.1:0",
			"WORKER_CONCURRENCY=16",
			"WORKER_MAX_ATTEMPTS=12",
			"WORKER_BACKOFF_BASE=200ms",
			"WORKER_BACKOFF_MAX=2s",
			"WORKER_ACK_WAIT="+s.cfg.WorkerAckWait.String(),
			"WORKER_SEND_TIMEOUT=10s",
		))
	}
	port := mustFreePort()
	s.report = newProc("report", s.cfg.Bins.Report, port,
		"REPORT_GRPC_ADDR="+hostPort(port),
		"REPORT_RETRY_DELAY=500ms",
		"REPORT_ACK_WAIT=10s",
		"REPORT_APPLY_TIMEOUT=5s",
		"REPORT_SHUTDOWN_GRACE=2s",
	)
}

func mustFreePort() int {
	p, err := freePort()
	if err != nil {
		panic(err)
	}
	return p
}

// allProcs are the service processes.
func (s *system) allProcs() []*proc {
	out := append([]*proc(nil), s.ingests...)
	out = append(out, s.workers...)
	if s.report != nil {
		out = append(out, s.report)
	}
	return out
}

// unexpectedExits lists every service exit nobody asked for.
func (s *system) unexpectedExits() []string {
	var out []string
	for _, p := range s.allProcs() {
		out = append(out, p.Unexpected()...)
	}
	return out
}

// logTails returns the end of every service log, for a failure report.
func (s *system) logTails() string {
	var b strings.Builder
	for _, p := range s.allProcs() {
		fmt.Fprintf(&b, "==== %s (%s)\n%s\n", p.name, p.logPath, p.Tail(3000))
	}
	for _, nd := range s.nats {
		fmt.Fprintf(&b, "==== nats %s\n%s\n", nd.Name, nd.proc.Tail(2000))
	}
	if s.pg != nil {
		fmt.Fprintf(&b, "==== postgres\n%s\n", s.pg.LogTail())
	}
	return b.String()
}

// Close stops everything the system started.
func (s *system) Close() {
	var wg sync.WaitGroup
	for _, p := range s.allProcs() {
		wg.Add(1)
		go func() { defer wg.Done(); p.Close() }()
	}
	wg.Wait()
	for _, cc := range s.conns {
		_ = cc.Close()
	}
	if s.nc != nil {
		s.nc.Close()
	}
	for _, nd := range s.nats {
		nd.Close()
	}
	if s.sink != nil {
		s.sink.Close()
	}
	if s.pool != nil {
		s.pool.Close()
	}
	if s.pg != nil {
		s.pg.Close()
	}
}

func redactURL(u string) string {
	cfg, err := pgxpool.ParseConfig(u)
	if err != nil {
		return "(unparseable)"
	}
	return fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
}
