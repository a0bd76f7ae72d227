// Command report runs the report service: the delivery event consumer and the
// ReportService gRPC API. Configuration comes from the environment (see
// report.Config; `report -h` lists the variables).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sync/errgroup"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/grpcserver"
	"github.com/namirasoft/email-sender/pkg/infra"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/report"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run() error {
	var cfg report.Config
	if len(os.Args) > 1 && (os.Args[1] == "-h" || os.Args[1] == "--help") {
		fmt.Println("report: delivery events into status, and the ReportService API.\nEnvironment:")
		envconfig.PrintUsage(os.Stdout, &cfg)
		return nil
	}
	if err := envconfig.Load(&cfg); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log, err := infra.Logger(os.Stderr, cfg.Log, "report")
	if err != nil {
		return err
	}
	stopStandby, err := grpcserver.Standby(cfg.GRPCAddr, log, v1.ReportService_ServiceDesc.ServiceName)
	if err != nil {
		return err
	}
	in, err := infra.Open(ctx, infra.Config{Service: "report", Log: cfg.Log, Postgres: cfg.Postgres, NATS: cfg.NATS, Schema: infra.AwaitSchema})
	stopStandby()
	if err != nil {
		return err
	}
	defer in.Close()
	pool := in.Pool

	// The key cache follows API key revocations (pkg/auth/revocation.go), so a
	// revoked key fails here at once too.
	keys := auth.NewKeyStore(pool, cfg.KeyCacheTTL)
	svc, err := report.New(cfg, report.Deps{
		Pool:          pool,
		JetStream:     in.JetStream,
		Authenticator: keys,
		KeyStore:      keys,
		Telemetry:     in.Telemetry,
		Logger:        log,
	})
	if err != nil {
		return err
	}
	serveMetrics := infra.Metrics(cfg.MetricsAddr, cfg.Metrics, in.Telemetry, log)
	log.Info("report starting", "grpc_addr", cfg.GRPCAddr, "metrics_addr", cfg.MetricsAddr)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serveMetrics(gctx) })
	g.Go(func() error { return svc.Run(gctx) })
	return g.Wait()
}
