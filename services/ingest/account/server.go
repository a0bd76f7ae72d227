// Package account implements the AccountService gRPC API: API keys, provider
// configurations (secrets sealed with pkg/secretbox, never returned), verified
// senders, suppressions, and DeleteAccountData. Every query is scoped to the
// caller's account in the store.
package account

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/accountstate"
	"github.com/namirasoft/email-sender/pkg/address"
	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/bouncedomain"
	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/provider/kinds"
	"github.com/namirasoft/email-sender/pkg/secretbox"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest/store"
)

// Config tunes the service. The tags are the environment variables (part of
// the ingest service's Config) and the one source of the defaults.
type Config struct {
	// VerificationFrom is the From of sender verification mails; empty means
	// the address being verified (see AddSender).
	VerificationFrom string `env:"VERIFICATION_FROM" help:"From of sender verification mails (default: the address being verified)"`
	// CodeTTL is how long a mailed sender code is valid.
	CodeTTL time.Duration `env:"SENDER_CODE_TTL" default:"24h" help:"how long a mailed sender verification code is valid"`
	// VerifyTimeout bounds one VerifyProvider login (and one
	// VerifyBounceDomain lookup).
	VerifyTimeout time.Duration `env:"PROVIDER_VERIFY_TIMEOUT" default:"30s" help:"timeout of one VerifyProvider login or VerifyBounceDomain DNS lookup"`
	// DNS is where VerifyBounceDomain's lookups go (DNS_SERVER).
	DNS bouncedomain.ResolverConfig
}

// maxCodeAttempts wrong guesses kill a sender verification code: a guard
// against guessing, not a setting.
const maxCodeAttempts = 5

// WithDefaults fills unset fields from the default tags.
func (c Config) WithDefaults() Config {
	// The names are this type's own fields: an error here is a typo in this
	// list, caught by TestConfigDefaultsAreTheTags.
	_ = envconfig.FillDefaults(&c, "CodeTTL", "VerifyTimeout")
	return c
}

// Validate checks a configuration after WithDefaults; each error names its
// variable.
func (c Config) Validate() error {
	switch {
	case c.CodeTTL <= 0:
		return fmt.Errorf("SENDER_CODE_TTL=%s: want a positive duration", c.CodeTTL)
	case c.VerifyTimeout <= 0:
		return fmt.Errorf("PROVIDER_VERIFY_TIMEOUT=%s: want a positive duration", c.VerifyTimeout)
	}
	if _, err := c.DNS.Resolver(); err != nil {
		return err
	}
	if c.VerificationFrom != "" {
		if _, err := address.Parse(c.VerificationFrom); err != nil {
			return fmt.Errorf("VERIFICATION_FROM=%q: %w", c.VerificationFrom, err)
		}
	}
	return nil
}

// DB is what the service needs of PostgreSQL (a *pgxpool.Pool).
type DB interface {
	store.DBTX
	store.Beginner
}

// Mailer accepts the messages the service sends itself (a *send.Server).
type Mailer interface {
	SendSystem(ctx context.Context, accountID string, req *emailsenderv1.SendEmailRequest) (*emailsenderv1.SendEmailResponse, error)
}

// Revoker makes revoked or deleted API keys stop working on every replica.
type Revoker interface {
	Revoke(ctx context.Context, keyIDs ...string) error
}

// Announcer announces that accounts' sender or provider configurations
// changed, returning once every ingest replica's send cache forgot them
// (queue.AccountConfigFeed).
type Announcer interface {
	Announce(ctx context.Context, accountIDs ...string) error
}

// Deps are the service's dependencies.
type Deps struct {
	DB        DB
	JetStream jetstream.JetStream
	// Keyring seals and opens provider secrets; nil refuses secrets.
	Keyring *secretbox.Keyring
	Mailer  Mailer
	Revoker Revoker
	// Configs announces the changes of senders and provider configurations
	// (nil: not announced; the send caches' TTL bounds them).
	Configs Announcer
	// Eraser deletes the account's data (DeleteAccountData).
	Eraser Eraser
	// States lifts provider pauses (ResumeProvider).
	States *accountstate.Store
	// Verifiers check credentials and sender identities by kind
	// (kinds.Verifiers).
	Verifiers map[string]kinds.Checks
	// Resolver looks up the TXT records of bounce domains (Config.DNS's;
	// net.DefaultResolver when nil).
	Resolver bouncedomain.TXTResolver
	// OperatorBounceDomain is the operator's BOUNCE_DOMAIN, which no account
	// may register.
	OperatorBounceDomain string
	Logger               *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Server is the AccountService.
type Server struct {
	emailsenderv1.UnimplementedAccountServiceServer

	cfg Config
	d   Deps
	log *slog.Logger
	now func() time.Time
}

// New returns the service.
func New(cfg Config, d Deps) *Server {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	now := d.Now
	if now == nil {
		now = time.Now
	}
	if d.Resolver == nil {
		d.Resolver = net.DefaultResolver
	}
	return &Server{cfg: cfg.WithDefaults(), d: d, log: d.Logger, now: now}
}

// Scopes is the scope each AccountService method needs, for auth.Interceptor:
// admin for every one. ListUsage is admin too: it shows every key's calls
// with their client addresses and user agents.
func Scopes() map[string]string {
	m := map[string]string{}
	for _, method := range emailsenderv1.AccountService_ServiceDesc.Methods {
		m["/"+emailsenderv1.AccountService_ServiceDesc.ServiceName+"/"+method.MethodName] = auth.ScopeAdmin
	}
	return m
}

func caller(ctx context.Context) (auth.Principal, error) {
	p, ok := auth.FromContext(ctx)
	if !ok || p.AccountID == "" {
		return auth.Principal{}, status.Error(codes.Unauthenticated, "no authenticated account")
	}
	return p, nil
}

// configChanged tells every replica's send cache that the account's senders
// or provider configurations changed. The change is stored already: when not
// every replica confirms (one is cut off from NATS, and does not use its
// cache then, or died), it is logged, and the cache's TTL bounds the rest.
func (s *Server) configChanged(ctx context.Context, accountID string) {
	if s.d.Configs == nil {
		return
	}
	if err := s.d.Configs.Announce(ctx, accountID); err != nil {
		s.log.WarnContext(ctx, "announce configuration change", "account_id", accountID, "error", err)
	}
}
