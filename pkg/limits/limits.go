// Package limits enforces per-account API limits across every replica: a
// request rate (calls per second) and a daily send quota (messages accepted per
// UTC day). The counters live in PostgreSQL, so the limits hold across any
// number of replicas; each replica takes tokens from the shared counter in
// chunks, so a busy account costs one round trip per chunk, not per call.
//
// Exactness. The shared counters only ever grant tokens up to the limit, so
// across all replicas an account never gets more than its rate in one
// one-second window (of PostgreSQL's clock) nor more than its quota in one UTC
// day. Windows are fixed, so a burst straddling a window boundary may see up to
// twice the rate within one second. The error is on the safe side: a replica
// may hold up to chunk-1 tokens it does not use (rate: until the window ends;
// quota: until it restarts or the day ends), so with R replicas an account may
// be refused up to ×(chunk-1) calls or messages early. Chunks are
// rate/20 (1..100) and quota/100 (1..50). When the database cannot be reached
// the limiter lets calls through (the call itself then usually fails on the
// same database).
package limits

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Config holds the defaults, shared by the services that serve the API.
type Config struct {
	// RateDefault is each account's API calls per second across all replicas
	// and services, unless overridden.
	RateDefault int `env:"RATE_LIMIT_DEFAULT" default:"100" help:"API calls per second per account, all replicas together (0 = unlimited); per-account overrides: ingest admin set-limits"`
	// DailyQuotaDefault is each account's messages accepted per UTC day, unless overridden.
	DailyQuotaDefault int `env:"DAILY_QUOTA_DEFAULT" default:"100000" help:"messages accepted per account per UTC day (0 = unlimited); per-account overrides: ingest admin set-limits"`
	// CacheTTL is how long a replica keeps an account's overrides.
	CacheTTL time.Duration `env:"LIMITS_CACHE_TTL" default:"10s" help:"how long per-account limit overrides are cached"`
}

// Validate checks the configuration. It has no defaults of its own: the env
// tags are their one source.
func (c Config) Validate() error {
	switch {
	case c.RateDefault < 0:
		return fmt.Errorf("RATE_LIMIT_DEFAULT=%d: want 0 (unlimited) or more", c.RateDefault)
	case c.DailyQuotaDefault < 0:
		return fmt.Errorf("DAILY_QUOTA_DEFAULT=%d: want 0 (unlimited) or more", c.DailyQuotaDefault)
	case c.CacheTTL < 0:
		return fmt.Errorf("LIMITS_CACHE_TTL=%s: want 0 (no cache) or more", c.CacheTTL)
	}
	return nil
}

// DBTX is what the limiter needs of a pool or transaction.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Limits are one account's effective limits; 0 is unlimited.
type Limits struct {
	Rate       int
	DailyQuota int
}

// Limiter enforces the limits.
type Limiter struct {
	cfg Config
	db  DBTX
	log *slog.Logger
	now func() time.Time

	mu       sync.Mutex
	accounts map[string]*account
}

type account struct {
	mu sync.Mutex

	limits   Limits
	limitsAt time.Time // when limits were read

	rateTokens    int
	rateUntil     time.Time // local time the window's tokens expire
	rateExhausted bool      // the shared window had nothing left

	quotaTokens    int
	quotaDay       string // UTC day of quotaTokens
	quotaExhausted int    // limit at which the day's shared quota ran out (0: not)
}

// New returns a limiter over db; cfg is taken as given (Validate checks it).
func New(cfg Config, db DBTX, log *slog.Logger) *Limiter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Limiter{cfg: cfg, db: db, log: log, now: time.Now, accounts: map[string]*account{}}
}

func (l *Limiter) account(id string) *account {
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.accounts[id]
	if !ok {
		if len(l.accounts) > 100_000 {
			l.accounts = map[string]*account{}
		}
		a = &account{}
		l.accounts[id] = a
	}
	return a
}

// limitsLocked returns the account's effective limits, read again after CacheTTL.
func (l *Limiter) limitsLocked(ctx context.Context, id string, a *account, now time.Time) (Limits, error) {
	if !a.limitsAt.IsZero() && now.Sub(a.limitsAt) < l.cfg.CacheTTL {
		return a.limits, nil
	}
	lim, err := Get(ctx, l.db, id, Limits{Rate: l.cfg.RateDefault, DailyQuota: l.cfg.DailyQuotaDefault})
	if err != nil {
		return Limits{}, err
	}
	a.limits, a.limitsAt = lim, now
	return lim, nil
}

// ExhaustedError is a RESOURCE_EXHAUSTED status with RetryInfo and QuotaFailure details.
func exhausted(accountID, what string, limit int, retry time.Duration) error {
	if retry < time.Millisecond {
		retry = time.Millisecond
	}
	st := status.Newf(codes.ResourceExhausted, "%s of %d exceeded for account %s; retry in %s", what, limit, accountID, retry.Round(time.Millisecond))
	if d, err := st.WithDetails(
		&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)},
		&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{
			Subject:     "account:" + accountID,
			Description: fmt.Sprintf("%s: %d", what, limit),
		}}},
	); err == nil {
		st = d
	}
	return st.Err()
}

// AllowCall takes one token of the account's request rate, or answers
// RESOURCE_EXHAUSTED with the time until the next window.
func (l *Limiter) AllowCall(ctx context.Context, accountID string) error {
	a := l.account(accountID)
	a.mu.Lock()
	defer a.mu.Unlock()
	now := l.now()
	lim, err := l.limitsLocked(ctx, accountID, a, now)
	if err != nil {
		l.log.WarnContext(ctx, "rate limit: read limits; letting the call through", "account_id", accountID, "error", err)
		return nil
	}
	if lim.Rate <= 0 {
		return nil
	}
	if now.Before(a.rateUntil) {
		if a.rateTokens > 0 {
			a.rateTokens--
			return nil
		}
		if a.rateExhausted {
			return exhausted(accountID, "request rate per second", lim.Rate, a.rateUntil.Sub(now))
		}
	}
	chunk := min(max(lim.Rate/20, 1), 100)
	granted, left, err := takeRate(ctx, l.db, accountID, chunk, lim.Rate)
	if err != nil {
		l.log.WarnContext(ctx, "rate limit: take tokens; letting the call through", "account_id", accountID, "error", err)
		return nil
	}
	a.rateUntil = now.Add(left)
	a.rateTokens = granted
	a.rateExhausted = granted == 0
	if granted == 0 {
		return exhausted(accountID, "request rate per second", lim.Rate, left)
	}
	a.rateTokens--
	return nil
}

// Reserve takes n messages of the account's daily quota, all or none, and
// returns how many it took (0 when the account has no quota): an error is
// RESOURCE_EXHAUSTED with the time until the UTC day ends. Give back what was
// taken but not used with Refund.
func (l *Limiter) Reserve(ctx context.Context, accountID string, n int) (int, error) {
	if n <= 0 {
		return 0, nil
	}
	a := l.account(accountID)
	a.mu.Lock()
	defer a.mu.Unlock()
	now := l.now()
	lim, err := l.limitsLocked(ctx, accountID, a, now)
	if err != nil {
		l.log.WarnContext(ctx, "daily quota: read limits; letting the call through", "account_id", accountID, "error", err)
		return 0, nil
	}
	if lim.DailyQuota <= 0 {
		return 0, nil
	}
	day := now.UTC().Format(time.DateOnly)
	if a.quotaDay != day {
		a.quotaDay, a.quotaTokens, a.quotaExhausted = day, 0, 0
	}
	if a.quotaTokens >= n {
		a.quotaTokens -= n
		return n, nil
	}
	untilMidnight := time.Date(now.UTC().Year(), now.UTC().Month(), now.UTC().Day()+1, 0, 0, 0, 0, time.UTC).Sub(now)
	if a.quotaExhausted == lim.DailyQuota {
		return 0, exhausted(accountID, "daily send quota", lim.DailyQuota, untilMidnight)
	}
	chunk := min(max(lim.DailyQuota/100, 1), 50)
	want := max(chunk, n-a.quotaTokens)
	granted, dbDay, left, err := takeQuota(ctx, l.db, accountID, want, lim.DailyQuota)
	if err != nil {
		l.log.WarnContext(ctx, "daily quota: take tokens; letting the call through", "account_id", accountID, "error", err)
		return 0, nil
	}
	if dbDay != day { // the database's UTC day differs from ours (midnight, skew)
		a.quotaDay, a.quotaTokens = dbDay, 0
	}
	a.quotaTokens += granted
	if granted < want {
		a.quotaExhausted = lim.DailyQuota
	}
	if a.quotaTokens < n {
		return 0, exhausted(accountID, "daily send quota", lim.DailyQuota, left)
	}
	a.quotaTokens -= n
	return n, nil
}

// Refund gives back n of the messages Reserve took that were not accepted
// (to this replica's share of the day's quota).
func (l *Limiter) Refund(accountID string, n int) {
	if n <= 0 {
		return
	}
	a := l.account(accountID)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.quotaDay == l.now().UTC().Format(time.DateOnly) {
		a.quotaTokens += n
	}
}
