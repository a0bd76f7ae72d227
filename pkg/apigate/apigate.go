// Package apigate is the gate every API call of ingest and report passes, in
// this order:
//
//  1. count calls refused by authentication (they have no account to be recorded under);
//  2. authenticate: an API key ("es_…") or a Namirasoft Account JWT (pkg/jwtauth);
//  3. record the call's usage (pkg/usage), whatever happens after;
//  4. authorize: the method's scope (auth.Authorize; unknown methods need admin);
//  5. the per-account request rate and, for sends, the daily quota (pkg/limits).
package apigate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/jwtauth"
	"github.com/namirasoft/email-sender/pkg/limits"
	"github.com/namirasoft/email-sender/pkg/usage"
)

// Config configures the gate; ingest and report read the same variables.
type Config struct {
	JWT    jwtauth.Config
	Limits limits.Config
	Usage  usage.Config
	// Throttle bounds failed authentications per client address.
	Throttle auth.ThrottleConfig
}

// WithDefaults fills the unset fields of a Config built in code with the
// defaults their env tags name (the one source of them); the packages it
// configures have none of their own.
func (c Config) WithDefaults() (Config, error) {
	err := errors.Join(
		envconfig.FillDefaults(&c.Usage, "QueueSize", "BatchSize", "FlushInterval", "Retention"),
		envconfig.FillDefaults(&c.Limits, "CacheTTL"),
	)

	return c, err
}

// Validate checks the configuration; each error names its variable.
func (c Config) Validate() error {
	if err := c.JWT.WithDefaults().Validate(); err != nil {
		return err
	}
	if err := c.Limits.Validate(); err != nil {
		return err
	}
	if _, err := usage.New(c.Usage, nil, nil); err != nil {
		return err
	}
	return nil
}

// Gate holds what the interceptors share.
type Gate struct {
	Auth     auth.Authenticator
	Recorder *usage.Recorder
	Limiter  *limits.Limiter
}

// New builds the gate. keys authenticates API keys (an *auth.KeyStore); JWTs
// are accepted when cfg.JWT is enabled.
func New(cfg Config, pool *pgxpool.Pool, keys auth.Authenticator, log *slog.Logger) (*Gate, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Limits.Validate(); err != nil {
		return nil, err
	}
	var verifier *jwtauth.Verifier
	if cfg.JWT.Enabled() {
		var err error
		if verifier, err = jwtauth.NewVerifier(cfg.JWT, log); err != nil {
			return nil, err
		}
	}
	rec, err := usage.New(cfg.Usage, pool, log)
	if err != nil {
		return nil, fmt.Errorf("usage: %w", err)
	}
	if cfg.Throttle.PerMinute < 0 || cfg.Throttle.Burst < 0 {
		return nil, errors.New("AUTH_FAILURES_PER_MINUTE and AUTH_FAILURES_BURST: want 0 or more")
	}
	authn := jwtauth.NewAuthenticator(keys, verifier, jwtauth.NewAccounts(pool, cfg.JWT.AutoProvision))
	return &Gate{
		// Failed authentications are throttled per client address (as the
		// usage recorder sees it: x-forwarded-for only from trusted proxies).
		Auth:     auth.NewThrottle(authn, cfg.Throttle, rec.ClientIP),
		Recorder: rec,
		Limiter:  limits.New(cfg.Limits, pool, log),
	}, nil
}

// Interceptors are the gate's interceptors for a service whose methods need
// scopes; sends names the calls that use the daily quota (zero: none).
func (g *Gate) Interceptors(scopes map[string]string, sends limits.Sends) []grpc.UnaryServerInterceptor {
	return []grpc.UnaryServerInterceptor{
		g.Recorder.CountUnauthenticated(),
		auth.Authenticate(g.Auth),
		g.Recorder.Interceptor(),
		auth.Authorize(scopes),
		g.Limiter.Interceptor(sends),
	}
}

// Run writes usage records until ctx ends, then flushes the queue. Give it a
// context that ends after the gRPC server has stopped.
func (g *Gate) Run(ctx context.Context) error { return g.Recorder.Run(ctx) }
