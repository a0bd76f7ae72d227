// Command report runs the report service: the delivery event consumer and the
// ReportService gRPC API. Configuration comes from the environment (see
// report.Config; `report -h` lists the variables).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/namirasoft/email-sender/pkg/auth"
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
	return infra.Main(os.Args[1:], os.Stdout, "report: delivery events into status, and the ReportService API.", &cfg, func(ctx context.Context) error {
		p := infra.Process{
			Config:   infra.Config{Service: "report", Log: cfg.Log, Postgres: cfg.Postgres, NATS: cfg.NATS, Schema: infra.AwaitSchema},
			GRPCAddr: cfg.GRPCAddr, Standby: []string{v1.ReportService_ServiceDesc.ServiceName},
			MetricsAddr: cfg.MetricsAddr, Metrics: cfg.Metrics,
		}
		return p.Run(ctx, func(ctx context.Context, in *infra.Infra) error {
			// The key cache follows API key revocations (pkg/auth/revocation.go), so a
			// revoked key fails here at once too.
			keys := auth.NewKeyStore(in.Pool, cfg.KeyCacheTTL)
			svc, err := report.New(cfg, report.Deps{
				Pool: in.Pool, JetStream: in.JetStream, Authenticator: keys, KeyStore: keys,
				Telemetry: in.Telemetry, Logger: in.Log,
			})
			if err != nil {
				return err
			}
			in.Log.Info("report starting", "grpc_addr", cfg.GRPCAddr, "metrics_addr", cfg.MetricsAddr)
			return svc.Run(ctx)
		})
	})
}
