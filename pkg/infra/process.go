package infra

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sync/errgroup"

	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/grpcserver"
)

// Main is the start of every service command: with -h or --help it prints
// about and the variables of cfg; otherwise it loads cfg from the
// environment and calls run with a context that ends on SIGINT or SIGTERM.
func Main(args []string, stdout io.Writer, about string, cfg any, run func(context.Context) error) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprintf(stdout, "%s\nEnvironment:\n", about)
		envconfig.PrintUsage(stdout, cfg)
		return nil
	}
	if err := envconfig.Load(cfg); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx)
}

// Process is what a service process opens and serves around its own work.
type Process struct {
	Config
	// GRPCAddr is the service's gRPC address: a standby health server
	// answers there (NOT_SERVING, and UNAVAILABLE to the Standby services'
	// calls) while PostgreSQL and NATS are awaited.
	GRPCAddr string
	Standby  []string
	// MetricsAddr serves /metrics ("off": not at all).
	MetricsAddr string
	Metrics     envconfig.Metrics
}

// Run opens the infrastructure while the standby health server answers, then
// runs work beside the /metrics server until ctx ends or either fails, and
// closes the infrastructure last (after work has returned, so work's own
// drains still have PostgreSQL and NATS).
func (p Process) Run(ctx context.Context, work func(ctx context.Context, in *Infra) error) error {
	log, err := Logger(os.Stderr, p.Log, p.Service)
	if err != nil {
		return err
	}
	stopStandby, err := grpcserver.Standby(p.GRPCAddr, log, p.Standby...)
	if err != nil {
		return err
	}
	in, err := Open(ctx, p.Config)
	stopStandby()
	if err != nil {
		return err
	}
	defer in.Close()
	serveMetrics := Metrics(p.MetricsAddr, p.Metrics, in.Telemetry, in.Log)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serveMetrics(gctx) })
	g.Go(func() error { return work(gctx, in) })
	return g.Wait()
}
