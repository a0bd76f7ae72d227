package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/client"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/testkit/natsembed"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest/store"
	"github.com/namirasoft/email-sender/services/report"
)

// shapeHeader is the gRPC metadata key the harness sends on the one call of a
// shape whose SQL it records; the recorder on the report's pool files each
// statement under its value.
const shapeHeader = "x-bench-scale-shape"

// statement is one SQL statement the report ran, with its arguments.
type statement struct {
	sql  string
	args []any
}

// recorder is a pgx tracer that keeps the statements run on behalf of gRPC
// calls that carry shapeHeader.
type recorder struct {
	mu  sync.Mutex
	got map[string][]statement
}

func (r *recorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return ctx
	}
	v := md.Get(shapeHeader)
	if len(v) == 0 {
		return ctx
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got[v[0]] = append(r.got[v[0]], statement{sql: data.SQL, args: append([]any(nil), data.Args...)})
	return ctx
}

func (*recorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// take returns and forgets what was recorded under key.
func (r *recorder) take(key string) []statement {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.got[key]
	delete(r.got, key)
	return s
}

// reportService is the report service running in this process on the seeded
// database, and what the harness needs to call it.
type reportService struct {
	db   *seededDB
	addr string
	// httpBase is the report's HTTP listener (the console under /console/):
	// http://127.0.0.1:port.
	httpBase string
	// operatorToken signs in to the console's operator view.
	operatorToken string
	rec           *recorder
	pool          *pgxpool.Pool
	stops         []func()
	keys          []string // API key ids to delete on stop
}

// startReport starts the report service (with an in-process nats-server for
// its JetStream) and waits until it serves.
func startReport(ctx context.Context, db *seededDB, log *slog.Logger) (*reportService, error) {
	s := &reportService{db: db, rec: &recorder{got: map[string][]statement{}}}
	ok := false
	defer func() {
		if !ok {
			s.stop()
		}
	}()
	dir, err := os.MkdirTemp("", "emailsender-bench-scale-nats")
	if err != nil {
		return nil, err
	}
	s.stops = append(s.stops, func() { _ = os.RemoveAll(dir) })
	ns, err := natsembed.Start(natsembed.Config{Host: "127.0.0.1", Port: -1, StoreDir: dir})
	if err != nil {
		return nil, err
	}
	s.stops = append(s.stops, func() { ns.Shutdown(); ns.WaitForShutdown() })
	js, err := connectJetStream(ctx, ns)
	if err != nil {
		return nil, err
	}

	cfg := db.poolConfig()
	cfg.MaxConns = 16 // DATABASE_MAX_CONNS' default
	cfg.ConnConfig.Tracer = s.rec
	if s.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, fmt.Errorf("report pool: %w", err)
	}
	s.stops = append(s.stops, s.pool.Close)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.addr = lis.Addr().String()
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.httpBase = "http://" + httpLis.Addr().String()
	cfg2, err := consoleConfig(s)
	if err != nil {
		return nil, err
	}
	svcLog := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	svc, err := report.New(cfg2, report.Deps{
		Pool: s.pool, JetStream: js, Logger: svcLog,
		Authenticator: auth.NewKeyStore(s.pool, 30*time.Second), Listener: lis, HTTPListener: httpLis,
	})
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	s.stops = append(s.stops, func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				log.Warn("report stopped", "error", err)
			}
		case <-time.After(30 * time.Second):
			log.Warn("report did not stop within 30s")
		}
	})
	ok = true
	return s, nil
}

func connectJetStream(ctx context.Context, ns *server.Server) (jetstream.JetStream, error) {
	nc, err := nats.Connect(ns.ClientURL(), nats.Name("bench-scale"))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	if err := queue.EnsureStreams(ctx, js, queue.StreamConfig{}); err != nil {
		nc.Close()
		return nil, err
	}
	return js, nil
}

// client creates an API key (scope read) for the account, as AccountService
// would, and returns a pkg/client Client that calls with it, and the key (the
// console signs in with it). The key is deleted when the service stops.
func (s *reportService) client(ctx context.Context, accountID string) (*client.Client, string, error) {
	key, prefix, hash, err := auth.NewKey()
	if err != nil {
		return nil, "", err
	}
	id := uuid.NewString()
	if err := store.CreateAPIKey(ctx, s.db.pool, store.NewAPIKey{
		ID: id, AccountID: accountID, Name: "bench-scale", Prefix: prefix, Hash: hash,
		Scopes: []string{auth.ScopeRead},
	}); err != nil {
		return nil, "", err
	}
	s.keys = append(s.keys, id)
	// One attempt: a failure is reported, not hidden by a retry.
	c, err := client.New(ctx, s.addr, client.WithAPIKey(key), client.WithInsecure(),
		client.WithRetry(client.RetryPolicy{MaxAttempts: 1}), client.WithDefaultTimeout(time.Minute))
	if err != nil {
		return nil, "", err
	}
	s.stops = append(s.stops, func() { _ = c.Close() })
	// The service answers once it has started serving.
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := c.ListMessages(ctx, &emailsenderv1.ListMessagesRequest{PageSize: 1})
		if err == nil || status.Code(err) != codes.Unavailable || time.Now().After(deadline) || ctx.Err() != nil {
			return c, key, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *reportService) stop() {
	if len(s.keys) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, _ = s.db.pool.Exec(ctx, `DELETE FROM api_keys WHERE id = ANY($1::uuid[])`, s.keys)
		cancel()
	}
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i]()
	}
}

// settle waits until the report has folded every pending change of the
// message counts into GetStats' rollup (the seed's inserts made millions),
// then vacuums both tables, as autovacuum would have long before in a
// service that ran for the 60 days: what is measured is the steady state,
// not the backlog of the seeding.
func settle(ctx context.Context, db *seededDB, log *slog.Logger) error {
	start := time.Now()
	for {
		var n int64
		if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM message_stats_pending`).Scan(&n); err != nil {
			return fmt.Errorf("pending message stats: %w", err)
		}
		if n == 0 {
			break
		}
		if time.Since(start) > 30*time.Minute {
			return fmt.Errorf("the report has not folded the message stats after %s: %d pending", time.Since(start).Round(time.Second), n)
		}
		log.Info("waiting for the report to fold the message stats", "pending", n)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Second):
		}
	}
	for _, t := range []string{"message_stats", "message_stats_pending"} {
		if _, err := db.pool.Exec(ctx, `VACUUM (ANALYZE) `+t); err != nil {
			return fmt.Errorf("vacuum %s: %w", t, err)
		}
	}
	return nil
}
