// Package account implements the AccountService gRPC API: API keys, provider
// configurations (secrets sealed with pkg/secretbox, never returned), verified
// senders, suppressions, and DeleteAccountData. Every query is scoped to the
// caller's account in the store.
package account

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/provider/kinds"
	"github.com/namirasoft/email-sender/pkg/secretbox"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest/store"
)

// Config tunes the service.
type Config struct {
	// VerificationFrom is the From of sender verification mails; empty means
	// the address being verified (see AddSender).
	VerificationFrom string
	// CodeTTL is how long a mailed sender code is valid (default 24h).
	CodeTTL time.Duration
	// MaxCodeAttempts wrong codes kill a code (default 5).
	MaxCodeAttempts int
	// VerifyTimeout bounds one VerifyProvider login (default 30s).
	VerifyTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.CodeTTL <= 0 {
		c.CodeTTL = 24 * time.Hour
	}
	if c.MaxCodeAttempts <= 0 {
		c.MaxCodeAttempts = 5
	}
	if c.VerifyTimeout <= 0 {
		c.VerifyTimeout = 30 * time.Second
	}
	return c
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

// Deps are the service's dependencies.
type Deps struct {
	DB        DB
	JetStream jetstream.JetStream
	// Keyring seals and opens provider secrets; nil refuses secrets.
	Keyring *secretbox.Keyring
	Mailer  Mailer
	Revoker Revoker
	// Eraser deletes the account's data (DeleteAccountData).
	Eraser Eraser
	// Verifiers check credentials and sender identities by kind
	// (kinds.Verifiers).
	Verifiers map[string]kinds.Checks
	Logger    *slog.Logger
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
	return &Server{cfg: cfg.withDefaults(), d: d, log: d.Logger, now: now}
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
