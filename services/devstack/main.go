// Command devstack runs the whole Email Sender in one process for development:
// an embedded NATS JetStream server (unless NATS_URL is set), the ingest,
// worker and report services (and the inbound SMTP service when BOUNCE_DOMAIN
// is set), and a dev account with a sandbox provider whose
// API key it prints together with the commands that send a first mail.
//
// PostgreSQL comes from DATABASE_URL (scripts/pg.sh, run by `make run`, starts a
// throwaway local cluster when none is set). State lives under DEV_DATA_DIR.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/namirasoft/email-sender/pkg/apigate"
	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/grpcserver"
	"github.com/namirasoft/email-sender/pkg/infra"
	"github.com/namirasoft/email-sender/pkg/provider/kinds"
	"github.com/namirasoft/email-sender/pkg/secretbox"
	"github.com/namirasoft/email-sender/pkg/testkit/natsembed"
	"github.com/namirasoft/email-sender/services/inbound"
	"github.com/namirasoft/email-sender/services/inbound/submission"
	"github.com/namirasoft/email-sender/services/ingest"
	"github.com/namirasoft/email-sender/services/report"
	"github.com/namirasoft/email-sender/services/worker"
)

// Config is the dev runner's own configuration; each service reads its own
// from the same environment.
type Config struct {
	DataDir string `env:"DEV_DATA_DIR" default:".data" help:"where the embedded NATS data, the dev master key and the dev account live"`
	// NATSPort is the embedded server's port; not 4222, so that a system NATS can run beside it.
	NATSPort int `env:"DEV_NATS_PORT" default:"14222" help:"embedded NATS port (when NATS_URL is unset)"`
	// NATSSyncAlways makes the embedded JetStream fsync every write before acking.
	NATSSyncAlways bool `env:"DEV_NATS_SYNC_ALWAYS" default:"false" help:"embedded JetStream: fsync before every ack (survives power loss; slower)"`
	// NATSSyncInterval is the embedded JetStream's flush interval when not syncing always.
	NATSSyncInterval time.Duration `env:"DEV_NATS_SYNC_INTERVAL" default:"2m" help:"embedded JetStream: fsync interval otherwise"`
	// MetricsAddr serves the one /metrics of the whole process: the three
	// services share one Telemetry, so their instruments are on one page (the
	// services' own *_METRICS_ADDR are not used here).
	MetricsAddr string `env:"DEV_METRICS_ADDR" default:":9080" help:"HTTP listen address of /metrics for all services (Prometheus; off disables)"`
	// GRPCurl is how the printed commands call grpcurl: scripts/run.sh sets
	// the path that works in a new shell (grpcurl when it is on the user's
	// PATH, else the absolute path of the copy it installed in .bin/).
	GRPCurl string `env:"DEV_GRPCURL" default:"grpcurl" help:"the grpcurl command the printed first-send commands use"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		dev Config
		ic  ingest.Config
		wc  worker.Config
		rc  report.Config
		bc  inbound.Config
	)
	if len(os.Args) > 1 && os.Args[1] == "envdoc" {
		// The README's configuration tables are this output (make docs).
		return envDoc(os.Stdout, []envSection{
			{"Shared by every service", &sharedConfig{}},
			{"ingest and report: authentication, limits, usage", &apigate.Config{}},
			{"ingest", &ic}, {"worker", &wc}, {"report", &rc}, {"inbound", &bc}, {"make run (devstack)", &dev},
		})
	}
	for _, c := range []any{&dev, &ic, &wc, &rc, &bc} {
		if err := envconfig.Load(c); err != nil {
			return err
		}
	}
	if _, set := os.LookupEnv("OUTBOUND_ALLOW_NETS"); !set {
		// The dev stack's SMTP sinks and emulators run on this machine; a
		// deployment's services allow only the public internet unless told.
		ic.Outbound.AllowNets, wc.Outbound.AllowNets = devAllowNets, devAllowNets
	}
	if _, set := os.LookupEnv("CONSOLE_DEV_LOOPBACK_HTTP"); !set {
		// make run serves plain HTTP on this machine: the console's cookie
		// cannot be Secure there (it is not, on a loopback host only).
		rc.Console.DevLoopbackHTTP = true
	}
	log, err := infra.Logger(os.Stderr, ic.Log, "devstack")
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := os.MkdirAll(dev.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}

	if _, set := os.LookupEnv("NATS_URL"); !set {
		srv, err := natsembed.Start(natsembed.Config{
			Port: dev.NATSPort, StoreDir: filepath.Join(dev.DataDir, "nats"),
			SyncAlways: dev.NATSSyncAlways, SyncInterval: dev.NATSSyncInterval,
		})
		if err != nil {
			return err
		}
		defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
		url := "nats://127.0.0.1:" + strconv.Itoa(dev.NATSPort)
		ic.NATS.URL, wc.NATS.URL, rc.NATS.URL = url, url, url
		log.Info("embedded nats-server started", "url", url, "store", filepath.Join(dev.DataDir, "nats"), "sync_always", dev.NATSSyncAlways)
	}

	keys, err := masterKeys(dev.DataDir, ic.MasterKeys)
	if err != nil {
		return err
	}
	ic.MasterKeys, wc.MasterKeys = keys, keys
	if rc.MasterKeys == "" {
		rc.MasterKeys = keys // webhook secrets, and the console's sealed credentials
	}
	if _, set := os.LookupEnv("CONSOLE_INGEST_ADDR"); !set {
		// The console calls this process's ingest for API keys and cancel.
		rc.Console.IngestAddr, rc.Console.IngestPlaintext = hostPort(ic.GRPCAddr), ic.TLSCertFile == ""
	}
	if _, set := os.LookupEnv("CONSOLE_OPERATOR_ADDR"); !set && ic.OperatorTokens != "" && ic.OperatorAddr != "off" {
		// With OPERATOR_TOKEN_SHA256 (read by both), the console's operator
		// view suspends and resumes through this process's OperatorService.
		rc.Console.OperatorAddr = hostPort(ic.OperatorAddr)
	}
	if bc.Bounce.Domain != "" && bc.Bounce.Keys == "" {
		// VERP with a dev key kept in the data dir, shared by the worker
		// (signs) and the inbound service (verifies).
		if bc.Bounce.Keys, err = bounceKey(dev.DataDir); err != nil {
			return err
		}
	}
	ic.Outbound.Bounce, wc.Outbound.Bounce = bc.Bounce, bc.Bounce
	keyring, err := secretbox.ParseKeyring(keys, ic.MasterKeyID)
	if err != nil {
		return err
	}

	in, err := infra.Open(ctx, infra.Config{Service: "emailsender", Log: ic.Log, Postgres: ic.Postgres, NATS: ic.NATS, Schema: infra.Migrate})
	if err != nil {
		return err
	}
	defer in.Close()
	tel, pool, js := in.Telemetry, in.Pool, in.JetStream

	account, err := devAccount(ctx, pool, keyring, filepath.Join(dev.DataDir, "dev-account.json"))
	if err != nil {
		return err
	}

	keyStore := auth.NewKeyStore(pool, ic.AuthCacheTTL)
	ingestSvc, err := ingest.New(ic, ingest.Deps{Pool: pool, JetStream: js, Telemetry: tel, Logger: log.With("component", "ingest"), Auth: keyStore})
	if err != nil {
		return err
	}
	reportSvc, err := report.New(rc, report.Deps{Pool: pool, JetStream: js, Telemetry: tel, Logger: log.With("component", "report"), Authenticator: keyStore})
	if err != nil {
		return err
	}
	opts, err := wc.Outbound.Options(log.With("component", "worker"))
	if err != nil {
		return err
	}
	senders, closeSenders := kinds.Senders(opts)
	defer func() { _ = closeSenders() }()
	workerSvc, err := worker.New(ctx, wc, worker.Deps{
		Pool: pool, JetStream: js, Telemetry: tel, Logger: log.With("component", "worker"), Keyring: keyring, Senders: senders,
	})
	if err != nil {
		return err
	}
	workerLis, err := net.Listen("tcp", wc.GRPCAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", wc.GRPCAddr, err)
	}
	serveMetrics := infra.Metrics(dev.MetricsAddr, ic.Metrics, tel, log)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return ingestSvc.Run(gctx) })
	g.Go(func() error { return reportSvc.Run(gctx) })
	g.Go(func() error { return workerSvc.Run(gctx) })
	g.Go(func() error { return grpcserver.New(grpcserver.Config{}, tel, log).Serve(gctx, workerLis) })
	g.Go(func() error { return serveMetrics(gctx) })
	if bc.Bounce.Domain != "" {
		inboundSvc, err := inbound.New(bc, inbound.Deps{Pool: pool, JetStream: js, Telemetry: tel, Logger: log.With("component", "inbound")})
		if err != nil {
			return err
		}
		g.Go(func() error { return inboundSvc.Run(gctx) })
		log.Info("inbound smtp service on", "smtp_addr", bc.SMTPAddr, "bounce_domain", bc.Bounce.Domain)
	}
	if bc.Submission.Enabled() {
		// Submission calls this stack's ingest unless told otherwise.
		if _, set := os.LookupEnv("SUBMISSION_INGEST_TARGET"); !set {
			bc.Submission.IngestTarget = loopbackTarget(ic.GRPCAddr)
			bc.Submission.IngestInsecure = ic.TLSCertFile == ""
		}
		sub, err := submission.New(bc.Submission, submission.Deps{Telemetry: tel, Logger: log.With("component", "submission")})
		if err != nil {
			return err
		}
		g.Go(func() error { return sub.Run(gctx) })
		log.Info("smtp submission on", "addr", bc.Submission.Addr, "tls_addr", bc.Submission.TLSAddr, "ingest", bc.Submission.IngestTarget)
	}
	printWelcome(os.Stdout, account, dev.GRPCurl, ic.GRPCAddr, rc.GRPCAddr, dev.MetricsAddr, ic.HTTPAddr, rc.HTTPAddr)
	return g.Wait()
}

// loopbackTarget is the gRPC target of a service listening on addr
// (":8081" is 127.0.0.1:8081).
func loopbackTarget(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || host == "0.0.0.0" || host == "::" {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

type sharedConfig struct {
	Postgres envconfig.Postgres
	NATS     envconfig.NATS
	Log      envconfig.Log
	Metrics  envconfig.Metrics
}

type envSection struct {
	title string
	cfg   any
}

// envDoc prints a markdown table of every variable per section; shared
// variables are listed once, in the first section.
func envDoc(w io.Writer, sections []envSection) error {
	seen := map[string]bool{}
	for _, sec := range sections {
		fmt.Fprintf(w, "\n**%s**\n\n| Variable | Default | Meaning |\n|---|---|---|\n", sec.title)
		for _, v := range envconfig.Describe(sec.cfg) {
			if seen[v.Name] {
				continue
			}
			seen[v.Name] = true
			def := v.Default
			if def == "" {
				def = "(unset)"
			}
			fmt.Fprintf(w, "| `%s` | `%s` | %s |\n", v.Name, def, v.Help)
		}
	}
	return nil
}

// masterKeys returns MASTER_KEYS, or a dev key generated once and kept in the data dir.
func masterKeys(dir, configured string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	path := filepath.Join(dir, "master.key")
	if b, err := os.ReadFile(path); err == nil {
		return string(b), nil
	}
	k, err := secretbox.NewMasterKey()
	if err != nil {
		return "", err
	}
	spec := "dev1:" + k
	if err := os.WriteFile(path, []byte(spec), 0o600); err != nil {
		return "", fmt.Errorf("write dev master key: %w", err)
	}
	return spec, nil
}

// bounceKey returns a dev BOUNCE_KEY generated once and kept in the data dir.
func bounceKey(dir string) (string, error) {
	path := filepath.Join(dir, "bounce.key")
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return "", err
	}
	spec := base64.StdEncoding.EncodeToString(k)
	if err := os.WriteFile(path, []byte(spec), 0o600); err != nil {
		return "", fmt.Errorf("write dev bounce key: %w", err)
	}
	return spec, nil
}

// devAllowNets is OUTBOUND_ALLOW_NETS of the dev stack when unset: loopback.
var devAllowNets = []string{"127.0.0.0/8", "::1/128"}

// devSenderDomain is the dev account's verified sender: the whole example.com
// domain, so the printed first send (from dev@example.com) works at once.
const devSenderDomain = "example.com"

// devAccount loads the dev account saved by an earlier run, or bootstraps one
// when there is none or its key no longer works (e.g. a fresh database).
func devAccount(ctx context.Context, pool *pgxpool.Pool, keyring *secretbox.Keyring, path string) (ingest.BootstrapResult, error) {
	var acc ingest.BootstrapResult
	if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &acc) == nil && acc.APIKey != "" {
		if _, err := auth.NewKeyStore(pool, 0).Authenticate(ctx, acc.APIKey); err == nil {
			// An account made before senders were verified gets its dev sender.
			return acc, ingest.AddVerifiedSenders(ctx, pool, acc.AccountID, []string{devSenderDomain})
		} else if !errors.Is(err, auth.ErrUnauthenticated) {
			return acc, err
		}
	}
	acc, err := ingest.Bootstrap(ctx, pool, keyring, ingest.BootstrapParams{AccountName: "dev", ProviderKind: "sandbox", KeyName: "dev", Senders: []string{devSenderDomain}})
	if err != nil {
		return acc, err
	}
	b, err := json.MarshalIndent(acc, "", "  ")
	if err != nil {
		return acc, err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return acc, fmt.Errorf("save dev account: %w", err)
	}
	return acc, nil
}

func hostPort(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

func printWelcome(w io.Writer, acc ingest.BootstrapResult, grpcurl, ingestAddr, reportAddr, metricsAddr, ingestHTTP, reportHTTP string) {
	in, rep := hostPort(ingestAddr), hostPort(reportAddr)
	fmt.Fprintf(w, `
Email Sender is running (ingest %[1]s, report %[2]s).

Dev account %[3]s, sandbox provider %[4]s.
API key (keep it; it is stored only as a hash):

  export KEY=%[5]s

Send a first mail through the sandbox provider:

  %[8]s -plaintext -H "authorization: Bearer $KEY" -d '{"message":{"from":{"address":"dev@example.com","name":"Dev"},"to":[{"address":"someone@example.com"}],"subject":"Hello","text_body":"Hello from Email Sender"}}' %[1]s emailsender.v1.SendService/SendEmail

Read its status (put the message_id from the answer in ID):

  %[8]s -plaintext -H "authorization: Bearer $KEY" -d "{\"message_id\":\"$ID\"}" %[2]s emailsender.v1.ReportService/GetMessage
%[7]s
Sandbox addresses simulate outcomes: bounce@..., complaint@..., transient@..., reject@..., timeout@...
Metrics of all services (Prometheus): http://%[6]s/metrics
Stop with Ctrl-C.

`, in, rep, acc.AccountID, acc.ProviderID, acc.APIKey, hostPort(metricsAddr), httpExamples(ingestHTTP, reportHTTP), shellQuote(grpcurl))
}

// shellQuote quotes s for a POSIX shell when it needs it (a path with spaces).
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// httpExamples are the curl forms of the welcome's grpcurl commands; empty
// when the HTTP/JSON API is off.
func httpExamples(ingestHTTP, reportHTTP string) string {
	if ingestHTTP == "" || ingestHTTP == "off" || reportHTTP == "" || reportHTTP == "off" {
		return ""
	}
	return fmt.Sprintf(`
The console (sign in with the API key above): http://%[2]s/console/

The same over HTTP/JSON (OpenAPI document: proto/openapi/emailsender.swagger.json):

  curl -s -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" -d '{"message":{"from":{"address":"dev@example.com","name":"Dev"},"to":[{"address":"someone@example.com"}],"subject":"Hello","textBody":"Hello from Email Sender"}}' http://%[1]s/v1/messages:send
  curl -s -H "Authorization: Bearer $KEY" http://%[2]s/v1/messages/$ID
`, hostPort(ingestHTTP), hostPort(reportHTTP))
}
