// Command ingest runs the ingest service.
//
//	ingest [serve]       serve the SendService (default)
//	ingest migrate       apply the database migrations
//	ingest admin bootstrap --account NAME --provider-kind sandbox|smtp
//	      [--smtp-host H --smtp-port P --smtp-tls starttls|starttls_opportunistic|implicit|none
//	       --smtp-user U --smtp-password-env VAR]
//	      [--sender ADDR_OR_DOMAIN]...
//	                     create an account with a default provider and an API
//	                     key (printed once), and verified senders
//	ingest admin rotate-master-key [--batch N]
//	                     re-seal every provider secret under MASTER_KEY_ID
//	                     (MASTER_KEYS holds the new key and the old ones)
//	ingest admin set-limits --account ID [--rate N|default] [--daily-quota N|default]
//	                     override an account's request rate and daily send
//	                     quota (0 = unlimited)
//	ingest operator suspend|resume|terminate --account ID --reason TEXT
//	ingest operator state --account ID
//	ingest operator audit [--account ID] [--limit N]
//	                     the operator's controls over an account, audited
//	                     with actor "cli:$USER" (as the OperatorService)
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
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/infra"
	"github.com/namirasoft/email-sender/pkg/secretbox"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
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
		switch {
		case len(args) > 0 && args[0] == "bootstrap":
			return bootstrap(ctx, cfg, args[1:], stdout)
		case len(args) > 0 && args[0] == "rotate-master-key":
			return rotateMasterKey(ctx, cfg, args[1:], stdout)
		case len(args) > 0 && args[0] == "set-limits":
			return setLimits(ctx, cfg, args[1:], stdout)
		}
		return errors.New("usage: ingest admin bootstrap --account NAME --provider-kind sandbox|smtp [smtp flags] [--sender ADDR_OR_DOMAIN]...\n" +
			"       ingest admin rotate-master-key [--batch N]   (MASTER_KEYS with the new key added, MASTER_KEY_ID = its id)\n" +
			"       " + setLimitsUsage)
	case "operator":
		return operatorCmd(ctx, cfg, args, stdout)
	default:
		return fmt.Errorf("unknown command %q: want serve, migrate, admin or operator", cmd)
	}
}

func serve(ctx context.Context, cfg ingest.Config) error {
	p := infra.Process{
		// ingest owns the schema: it migrates.
		Config:   infra.Config{Service: "ingest", Log: cfg.Log, Postgres: cfg.Postgres, NATS: cfg.NATS, Schema: infra.Migrate},
		GRPCAddr: cfg.GRPCAddr, Standby: []string{v1.SendService_ServiceDesc.ServiceName, v1.AccountService_ServiceDesc.ServiceName},
		MetricsAddr: cfg.MetricsAddr, Metrics: cfg.Metrics,
	}
	return p.Run(ctx, func(ctx context.Context, in *infra.Infra) error {
		svc, err := ingest.New(cfg, ingest.Deps{
			Pool: in.Pool, JetStream: in.JetStream, Telemetry: in.Telemetry, Logger: in.Log,
			Auth: auth.NewKeyStore(in.Pool, cfg.AuthCacheTTL),
		})
		if err != nil {
			return err
		}
		return svc.Run(ctx)
	})
}

func migrate(ctx context.Context, cfg ingest.Config, stdout io.Writer) error {
	pool, err := adminPool(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	fmt.Fprintln(stdout, "the schema is current")
	return nil
}

// adminPool is the pool of a command (migrate, admin ...): ingest owns the
// schema, so it migrates; it waits for PostgreSQL a minute at most.
func adminPool(ctx context.Context, cfg ingest.Config) (*pgxpool.Pool, error) {
	log, err := infra.Logger(os.Stderr, cfg.Log, "ingest")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return infra.Postgres(ctx, cfg.Postgres, infra.Migrate, log)
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
	fs.Func("sender", "a verified sender address or whole domain (repeatable)", func(v string) error {
		p.Senders = append(p.Senders, v)
		return nil
	})
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
	pool, err := adminPool(ctx, cfg)
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

func rotateMasterKey(ctx context.Context, cfg ingest.Config, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("admin rotate-master-key", flag.ContinueOnError)
	batch := fs.Int("batch", 500, "secrets re-sealed per transaction")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.MasterKeys == "" || cfg.MasterKeyID == "" {
		return errors.New("rotate-master-key needs MASTER_KEYS (the new key and every old one) and MASTER_KEY_ID (the new key's id)")
	}
	keyring, err := secretbox.ParseKeyring(cfg.MasterKeys, cfg.MasterKeyID)
	if err != nil {
		return fmt.Errorf("MASTER_KEYS: %w", err)
	}
	pool, err := adminPool(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	res, err := ingest.RotateMasterKey(ctx, pool, keyring, *batch)
	fmt.Fprintf(stdout, "rewrapped %d secrets under master key %q; %d were already under it\n", res.Rewrapped, keyring.CurrentKeyID(), res.Current)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "Every secret (provider and webhook) is sealed under the new key: restart ingest, workers, report and inbound with it first in MASTER_KEYS, then the old keys can be removed.")
	return nil
}
