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

	"golang.org/x/sync/errgroup"

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
	return infra.Main(os.Args[1:], os.Stdout, "worker: delivers send jobs through the account's providers.", &cfg, func(ctx context.Context) error {
		p := infra.Process{
			Config:   infra.Config{Service: "worker", Log: cfg.Log, Postgres: cfg.Postgres, NATS: cfg.NATS, Schema: infra.AwaitSchema},
			GRPCAddr: cfg.GRPCAddr, MetricsAddr: cfg.MetricsAddr, Metrics: cfg.Metrics,
		}
		return p.Run(ctx, func(ctx context.Context, in *infra.Infra) error { return serve(ctx, cfg, in) })
	})
}

func serve(ctx context.Context, cfg worker.Config, in *infra.Infra) error {
	log, tel := in.Log, in.Telemetry
	var keyring *secretbox.Keyring
	if cfg.MasterKeys != "" {
		var err error
		if keyring, err = secretbox.ParseKeyring(cfg.MasterKeys, cfg.MasterKeyID); err != nil {
			return err
		}
	}
	opts, err := cfg.Outbound.Options(log)
	if err != nil {
		return err
	}
	senders, closeSenders := kinds.Senders(opts)
	defer func() {
		if err := closeSenders(); err != nil {
			log.Warn("close provider connections", "error", err)
		}
	}()

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
	health := grpcserver.New(grpcserver.Config{}, tel, log)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return health.Serve(gctx, lis) })
	g.Go(func() error { return w.Run(gctx) })
	log.Info("worker starting", "providers", cfg.Providers, "grpc_addr", cfg.GRPCAddr, "metrics_addr", cfg.MetricsAddr)
	return g.Wait()
}
