// Command inbound runs the inbound SMTP service: the MX of the bounce domain
// (BOUNCE_DOMAIN), which turns the DSNs and ARF reports that come back to
// the SMTP sends' signed envelope senders into BOUNCED and COMPLAINED
// events and suppressions. Configuration comes from the environment
// (`inbound -h` lists it). With SUBMISSION_ADDR (or SUBMISSION_TLS_ADDR) it
// also serves SMTP submission (package submission): messages from
// applications that speak only SMTP, accepted through ingest's SendEmail.
// With MASTER_KEYS it also polls the bounce mailboxes of SMTP provider
// configurations over IMAP (package imappoll).
package main

import (
	"context"
	"fmt"
	"net"
	"os"

	"golang.org/x/sync/errgroup"

	"github.com/namirasoft/email-sender/pkg/grpcserver"
	"github.com/namirasoft/email-sender/pkg/infra"
	"github.com/namirasoft/email-sender/services/inbound"
	"github.com/namirasoft/email-sender/services/inbound/imappoll"
	"github.com/namirasoft/email-sender/services/inbound/submission"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "inbound:", err)
		os.Exit(1)
	}
}

func run() error {
	var cfg inbound.Config
	about := "inbound: bounces and complaints by mail (the bounce domain's MX) into delivery events and suppressions; SMTP submission into SendEmail."
	return infra.Main(os.Args[1:], os.Stdout, about, &cfg, func(ctx context.Context) error {
		p := infra.Process{
			Config:   infra.Config{Service: "inbound", Log: cfg.Log, Postgres: cfg.Postgres, NATS: cfg.NATS, Schema: infra.AwaitSchema},
			GRPCAddr: cfg.GRPCAddr, MetricsAddr: cfg.MetricsAddr, Metrics: cfg.Metrics,
		}
		return p.Run(ctx, func(ctx context.Context, in *infra.Infra) error { return serve(ctx, cfg, in) })
	})
}

func serve(ctx context.Context, cfg inbound.Config, in *infra.Infra) error {
	log, tel := in.Log, in.Telemetry
	svc, err := inbound.New(cfg, inbound.Deps{Pool: in.Pool, JetStream: in.JetStream, Telemetry: tel, Logger: log})
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
	g.Go(func() error { return svc.Run(gctx) })
	if cfg.IMAP.Enabled() {
		poller, err := imappoll.New(ctx, cfg.IMAP, imappoll.Deps{Pool: in.Pool, JetStream: in.JetStream, Signer: svc.Signer(),
			Recorder: svc.IMAPRecorder(), ParseBytes: cfg.ParseBytes, Logger: log.With("component", "imappoll")})
		if err != nil {
			return err
		}
		g.Go(func() error { return poller.Run(gctx) })
	} else {
		log.Info("imap poller off (MASTER_KEYS unset or IMAP_POLL_INTERVAL=0): bounce mailboxes of SMTP configurations are not read")
	}
	if cfg.Submission.Enabled() {
		sub, err := submission.New(cfg.Submission, submission.Deps{Telemetry: tel, Logger: log.With("component", "submission")})
		if err != nil {
			return err
		}
		g.Go(func() error { return sub.Run(gctx) })
	}
	log.Info("inbound starting", "smtp_addr", cfg.SMTPAddr, "bounce_domain", cfg.Bounce.Domain, "grpc_addr", cfg.GRPCAddr, "metrics_addr", cfg.MetricsAddr)
	return g.Wait()
}
