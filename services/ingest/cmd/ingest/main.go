// Command ingest runs the ingest service.
//
//	ingest [serve]       serve the SendService (default)
//	ingest migrate       apply the database migrations
//	ingest admin bootstrap --account NAME --provider-kind sandbox|smtp
//	      [--smtp-host H --smtp-port P --smtp-tls starttls|starttls_opportunistic|implicit|none
//	       --smtp-user U --smtp-password-env VAR]
//	                     create an account with a default provider and an API
//	                     key (printed once)
//
// Configuration comes from the environment; see ingest.Config.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/connect"
	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/schema"
	"github.com/namirasoft/email-sender/pkg/secretbox"
	"github.com/namirasoft/email-sender/services/ingest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ingest:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	var cfg ingest.Config
	if err := envconfig.Load(&cfg); err != nil {
		return err
	}
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, "usage: ingest [serve | migrate | admin bootstrap --account NAME --provider-kind sandbox|smtp [smtp flags]]\nEnvironment:")
		envconfig.PrintUsage(stdout, &cfg)
		return nil
	case "serve":
		return serve(ctx, cfg)
	case "migrate":
		return migrate(ctx, cfg, stdout)
	case "admin":
		if len(args) == 0 || args[0] != "bootstrap" {
			return errors.New("usage: ingest admin bootstrap --account NAME --provider-kind sandbox|smtp [smtp flags]")
		}
		return bootstrap(ctx, cfg, args[1:], stdout)
	default:
		return fmt.Errorf("unknown command %q: want serve, migrate or admin bootstrap", cmd)
	}
}

func serve(ctx context.Context, cfg ingest.Config) error {
	in, err := connect.Open(ctx, connect.Config{Service: "ingest", Log: cfg.Log, Postgres: cfg.Postgres, NATS: cfg.NATS})
	if err != nil {
		return err
	}
	defer in.Close()

	svc, err := ingest.New(cfg, ingest.Deps{
		Pool: in.Pool, JetStream: in.JetStream, Telemetry: in.Telemetry, Logger: in.Log,
		Auth: auth.NewKeyStore(in.Pool, cfg.AuthCacheTTL),
	})
	if err != nil {
		return err
	}
	return svc.Run(ctx)
}

func migrate(ctx context.Context, cfg ingest.Config, stdout io.Writer) error {
	pool, err := pgxpool.New(ctx, cfg.Postgres.URL)
	if err != nil {
		return fmt.Errorf("connect postgres: %w", err)
	}
	defer pool.Close()
	applied, err := schema.Migrate(ctx, pool)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "applied migrations: %v\n", applied)
	return nil
}

func bootstrap(ctx context.Context, cfg ingest.Config, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("admin bootstrap", flag.ContinueOnError)
	var (
		p       ingest.BootstrapParams
		passEnv string
	)
	fs.StringVar(&p.AccountName, "account", "", "account name (required)")
	fs.StringVar(&p.ProviderKind, "provider-kind", "sandbox", "sandbox or smtp")
	fs.StringVar(&p.ProviderName, "provider-name", "", "provider configuration name (default: the kind)")
	fs.StringVar(&p.SMTP.Host, "smtp-host", "", "SMTP server host")
	fs.IntVar(&p.SMTP.Port, "smtp-port", 587, "SMTP server port")
	fs.StringVar(&p.SMTP.TLS, "smtp-tls", "starttls", "starttls, starttls_opportunistic, implicit or none")
	fs.StringVar(&p.SMTP.Username, "smtp-user", "", "SMTP user name")
	fs.IntVar(&p.SMTP.PoolSize, "smtp-pool-size", 4, "SMTP connections per worker")
	fs.StringVar(&passEnv, "smtp-password-env", "", "name of the environment variable holding the SMTP password")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if p.AccountName == "" {
		return errors.New("--account is required")
	}
	if passEnv != "" {
		pw, ok := os.LookupEnv(passEnv)
		if !ok {
			return fmt.Errorf("--smtp-password-env: %s is not set", passEnv)
		}
		p.SMTP.Password = pw
	}
	var keyring *secretbox.Keyring
	if cfg.MasterKeys != "" {
		var err error
		if keyring, err = secretbox.ParseKeyring(cfg.MasterKeys, cfg.MasterKeyID); err != nil {
			return fmt.Errorf("MASTER_KEYS: %w", err)
		}
	}
	pool, err := connect.Postgres(ctx, cfg.Postgres)
	if err != nil {
		return err
	}
	defer pool.Close()
	res, err := ingest.Bootstrap(ctx, pool, keyring, p)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "account_id:  %s\nprovider_id: %s (%s, default)\napi_key_id:  %s\napi_key:     %s\n\nThe API key is shown only this once; store it now.\n",
		res.AccountID, res.ProviderID, p.ProviderKind, res.APIKeyID, res.APIKey)
	return nil
}
