// Package cli is the emailsender command line client (cmd/emailsender), built
// on pkg/client. Run is the whole program; main only wires the process to it.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/client"
)

// Exit codes.
const (
	ExitOK          = 0 // success
	ExitUsage       = 1 // bad flags or arguments, unreadable file, incomplete configuration
	ExitAPI         = 2 // the server refused the call (INVALID_ARGUMENT, FAILED_PRECONDITION, ALREADY_EXISTS, …)
	ExitAuth        = 3 // UNAUTHENTICATED or PERMISSION_DENIED: the key is wrong, revoked or lacks the scope
	ExitNotFound    = 4 // NOT_FOUND: no such message, key, provider, sender or suppression in this account
	ExitUnavailable = 5 // UNAVAILABLE, DEADLINE_EXCEEDED or RESOURCE_EXHAUSTED after the client's retries: try again later
	ExitNegative    = 6 // the call worked but the outcome is negative: send --wait ended undelivered, providers verify failed, webhooks test got no 2xx
)

// Env is the process around Run.
type Env struct {
	Getenv func(string) string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

const usage = `emailsender — command line client of Namirasoft Email Sender

Usage: emailsender [connection flags] COMMAND [flags] [arguments]

Commands:
  send [flags]                   send a message (from flags, --file request.json or --eml message.eml)
  status ID                      a message's status, recipients and timeline
  list [flags]                   messages, newest first (--status, --provider, --recipient, --tag, --since, --until, --limit)
  stats [flags]                  message counts by status (--since, --until, --bucket, --provider)
  cancel ID                      cancel a scheduled message
  keys list | create --name N [--scope S]... [--expires T] | revoke ID
  providers list | put --file provider.json | verify ID | delete ID
  senders list | add ADDRESS [--provider ID] | verify ID CODE | remove ID
  suppressions list [--limit N] [--search TEXT] | add ADDRESS [--reason R] | remove ADDRESS
  bounce-domain get | set DOMAIN | verify | remove   the account's own bounce domain (set prints
                                 the TXT record to publish; verify exits 2 until it is found)
  watch [flags]                  print the account's events as they happen (--message, --type, --tag,
                                 --cursor, --from-start, --limit, --give-up); resumes after disconnects
  webhooks list | create --url U [--description D] [--event-type T]... [--tag K=V]...
         | update ID [--url U] [--description D] [--event-type T]... [--tag K=V]... [--clear-filter]
                     [--enable | --disable]
         | delete ID | rotate-secret ID [--previous-ttl D] | test ID
         | deliveries ID [--state S] [--limit N] | replay ID (--delivery DID | --since T [--until T])
  templates list | push DIR [--publish] | pull DIR [--latest] | publish TEMPLATE [--version N]
         | render TEMPLATE [--version N] [--data JSON] | delete TEMPLATE
                                 DIR holds a folder per template (named for its alias): template.json
                                 (name, layout, variables), subject.txt, body.html, body.txt, partials/
  help                           this text

"emailsender COMMAND -h" lists a command's flags. Flags may follow arguments.

Connection flags (any command; flag > environment > profile > default):
  --addr HOST:PORT       ingest gRPC address                     EMAILSENDER_ADDR
  --report-addr H:P      report gRPC address (default: --addr)  EMAILSENDER_REPORT_ADDR
  --api-key KEY          API key (prefer the environment)        EMAILSENDER_API_KEY
  --profile NAME         profile of the configuration file       EMAILSENDER_PROFILE
  --config FILE          configuration file                      EMAILSENDER_CONFIG
                         (default ~/.config/emailsender/config.json)
  --tls=true|false       TLS (default true)                      EMAILSENDER_TLS
  --ca FILE              PEM CA certificate(s) for TLS           EMAILSENDER_CA
  -o table|json          output (default table)                  EMAILSENDER_OUTPUT
  --timeout D            deadline of each call (default 30s)     EMAILSENDER_TIMEOUT

Configuration file:
  {"default_profile": "dev",
   "profiles": {"dev": {"addr": "localhost:8081", "report_addr": "localhost:8082",
                        "api_key": "es_...", "tls": false, "output": "table"}}}

watch prints one line per event (-o json: one WatchEventsResponse per line, with its cursor). A
broken connection is reopened from the last cursor (no gap, no duplicate); on the way out the
cursor to resume from goes to standard error ("resume with --cursor C"). Ctrl-C ends it with 0. A
cursor older than the retained events (7 days) is refused (exit 2): start anew and catch up with list.

Times (--send-at, --since, --until, --expires): RFC 3339 ("2030-01-02T15:04:05Z") or a
duration from now ("10m"; --since and --until count back: "24h" is 24 hours ago).

Exit codes:
  0  success
  1  usage: bad flags or arguments, unreadable file, incomplete configuration
  2  the server refused the call (invalid argument, failed precondition, already exists, ...)
  3  unauthenticated or permission denied (wrong, revoked or expired key; missing scope)
  4  not found
  5  unavailable, deadline exceeded or rate limited, after retries: try again later
  6  negative outcome: send --wait ended undelivered, providers verify failed,
     webhooks test got no 2xx answer

API keys are never printed, except the secret of a new key by "keys create"; webhook signing
secrets only by "webhooks create" and "webhooks rotate-secret".
`

// Run runs the command line args and returns the exit code.
func Run(ctx context.Context, args []string, env Env) int {
	r := &runner{env: env}
	err := r.run(ctx, args)
	if err == nil {
		return ExitOK
	}
	code := exitCode(err)
	fmt.Fprintf(env.Stderr, "emailsender: %v\n", err)
	if code == ExitUsage && errors.Is(err, errShowUsage) {
		fmt.Fprint(env.Stderr, "\n"+usage)
	}
	return code
}

var errShowUsage = errors.New("see usage")

// negativeError is a call that worked with a negative outcome: exit code 6.
type negativeError struct{ msg string }

func (e *negativeError) Error() string { return e.msg }

func exitCode(err error) int {
	var ue *usageError
	var ne *negativeError
	switch {
	case errors.As(err, &ue), errors.Is(err, flag.ErrHelp), errors.Is(err, errShowUsage):
		return ExitUsage
	case errors.As(err, &ne):
		return ExitNegative
	}
	st, ok := status.FromError(err)
	if !ok {
		var ce *client.Error
		if !errors.As(err, &ce) {
			return ExitUsage // a local failure: a file, the TLS configuration, …
		}
	}
	switch st.Code() {
	case codes.Unauthenticated, codes.PermissionDenied:
		return ExitAuth
	case codes.NotFound:
		return ExitNotFound
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Canceled:
		return ExitUnavailable
	}
	return ExitAPI
}

type runner struct {
	env Env
	g   globals
	cfg Config
	out *printer
}

func (r *runner) run(ctx context.Context, args []string) error {
	r.g.stderr = r.env.Stderr
	fs := r.flagSet("emailsender")
	if err := fs.Parse(args); err != nil {
		return err
	}
	args = fs.Args()
	if len(args) == 0 {
		return fmt.Errorf("no command: %w", errShowUsage)
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "help", "-h", "--help":
		fmt.Fprint(r.env.Stdout, usage)
		return nil
	case "send":
		return r.send(ctx, args)
	case "status":
		return r.status(ctx, args)
	case "list":
		return r.list(ctx, args)
	case "stats":
		return r.stats(ctx, args)
	case "cancel":
		return r.cancel(ctx, args)
	case "keys":
		return r.keys(ctx, args)
	case "providers":
		return r.providers(ctx, args)
	case "senders":
		return r.senders(ctx, args)
	case "suppressions":
		return r.suppressions(ctx, args)
	case "bounce-domain":
		return r.bounceDomain(ctx, args)
	case "watch":
		return r.watch(ctx, args)
	case "webhooks":
		return r.webhooks(ctx, args)
	case "templates":
		return r.templates(ctx, args)
	}
	return fmt.Errorf("unknown command %q: %w", cmd, errShowUsage)
}

// flagSet is a command's flag set with the connection flags.
func (r *runner) flagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(r.env.Stderr)
	r.g.register(fs)
	return fs
}

// parse parses flags that may come before, between and after the positional
// arguments, which it returns; want is their number (-1: any).
func (r *runner) parse(fs *flag.FlagSet, args []string, want int, names string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if want >= 0 && len(pos) != want {
		if want == 0 {
			return nil, usageErrorf("%s takes no arguments, got %q", fs.Name(), strings.Join(pos, " "))
		}
		return nil, usageErrorf("usage: emailsender %s %s", fs.Name(), names)
	}
	return pos, nil
}

// connect resolves the configuration and makes the client.
func (r *runner) connect(ctx context.Context) (*client.Client, error) {
	if err := r.configure(); err != nil {
		return nil, err
	}
	if err := r.cfg.connection(); err != nil {
		return nil, err
	}
	opts := []client.Option{
		client.WithAPIKey(r.cfg.APIKey),
		client.WithReportTarget(r.cfg.ReportAddr),
		client.WithDefaultTimeout(r.cfg.Timeout),
		client.WithUserAgent("emailsender-cli"),
	}
	if r.cfg.TLS {
		tc, err := r.cfg.tlsConfig()
		if err != nil {
			return nil, err
		}
		opts = append(opts, client.WithTLS(tc))
	} else {
		opts = append(opts, client.WithInsecure())
	}
	return client.New(ctx, r.cfg.Addr, opts...)
}

// configure resolves the configuration (output format included).
func (r *runner) configure() error {
	cfg, err := r.g.resolve(r.env.Getenv)
	if err != nil {
		return err
	}
	r.cfg = cfg
	r.out = &printer{w: r.env.Stdout, json: cfg.Output == "json"}
	return nil
}
