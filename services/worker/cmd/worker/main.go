// Command worker delivers send jobs through the providers named by
// WORKER_PROVIDERS (sandbox, smtp, ses, gmail), each kind with its own pool of
// deliveries and durable per-account JetStream consumers, so
// `WORKER_PROVIDERS=ses worker` scales SES alone. Configuration comes from the
// environment (`worker -h` lists it).
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sync/errgroup"

	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/grpcserver"
	"github.com/namirasoft/email-sender/pkg/infra"
	"github.com/namirasoft/email-sender/pkg/provider/kinds"
	"github.com/namirasoft/email-sender/pkg/secretbox"
	"github.com/namirasoft/email-sender/services/worker"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

func run() error {
	var cfg worker.Config
	if len(os.Args) > 1 && (os.Args[1] == "-h" || os.Args[1] == "--help") {
		fmt.Println("worker: delivers send jobs through the account's providers.\nEnvironment:")
		envconfig.PrintUsage(os.Stdout, &cfg)
		return nil
	}
	if err := envconfig.Load(&cfg); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	standbyLog, err := infra.Logger(os.Stderr, cfg.Log, "worker")
	if err != nil {
		return err
	}
	stopStandby, err := grpcserver.Standby(cfg.GRPCAddr, standbyLog)
	if err != nil {
		return err
	}
	in, err := infra.Open(ctx, infra.Config{Service: "worker", Log: cfg.Log, Postgres: cfg.Postgres, NATS: cfg.NATS, Schema: infra.AwaitSchema})
	stopStandby()
	if err != nil {
		return err
	}
	defer in.Close()
	log, tel := in.Log, in.Telemetry

	var keyring *secretbox.Keyring
	if cfg.MasterKeys != "" {
		if keyring, err = secretbox.ParseKeyring(cfg.MasterKeys, cfg.MasterKeyID); err != nil {
			return err
		}
	}
	opts, err := cfg.Outbound.Options(log)
	if err != nil {
		return err
	}
	senders, closeSenders := kinds.Senders(opts)
	defer func() { _ = closeSenders() }()

	w, err := worker.New(ctx, cfg, worker.Deps{
		Pool: in.Pool, JetStream: in.JetStream, Telemetry: tel, Logger: log, Keyring: keyring, Senders: senders,
	})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.GRPCAddr, err)
	}
	serveMetrics := infra.Metrics(cfg.MetricsAddr, cfg.Metrics, tel, log)
	health := grpcserver.New(grpcserver.Config{}, tel, log)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return health.Serve(gctx, lis) })
	g.Go(func() error { return serveMetrics(gctx) })
	g.Go(func() error { return w.Run(gctx) })
	log.Info("worker starting", "providers", cfg.Providers, "grpc_addr", cfg.GRPCAddr, "metrics_addr", cfg.MetricsAddr)
	return g.Wait()
}
