package jwtauth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/namirasoft/email-sender/pkg/auth"
)

// Authenticator routes a bearer token to the API key store ("es_…") or to
// the JWT verifier (three dot-separated parts), and makes sure a token's
// account has its accounts row.
type Authenticator struct {
	keys     auth.Authenticator
	jwt      *Verifier
	accounts *Accounts
}

// NewAuthenticator returns an authenticator. jwt may be nil (tokens are then
// refused); accounts may be nil (no row is checked or created).
func NewAuthenticator(keys auth.Authenticator, jwt *Verifier, accounts *Accounts) *Authenticator {
	return &Authenticator{keys: keys, jwt: jwt, accounts: accounts}
}

// Authenticate implements auth.Authenticator.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (auth.Principal, error) {
	switch {
	case strings.HasPrefix(token, "es_"):
		return a.keys.Authenticate(ctx, token)
	case LooksLikeJWT(token) && a.jwt != nil:
		p, err := a.jwt.Verify(ctx, token)
		if err != nil {
			return auth.Principal{}, err
		}
		if a.accounts != nil {
			if err := a.accounts.Ensure(ctx, p.AccountID); err != nil {
				return auth.Principal{}, err
			}
		}
		return p, nil
	default:
		return auth.Principal{}, auth.ErrUnauthenticated
	}
}

// Accounts makes sure an account authenticated by a token has its row: a
// Namirasoft account that never used the service has none. With provision it
// creates the row (no provider yet: sending answers FAILED_PRECONDITION until
// the owner adds one); without, a token of an unknown account is refused.
// Known accounts are remembered for a minute, so a busy account costs one
// query per minute per process.
type Accounts struct {
	pool      *pgxpool.Pool
	provision bool
	ttl       time.Duration
	now       func() time.Time

	mu    sync.Mutex
	known map[string]time.Time
}

// NewAccounts returns the account check over pool.
func NewAccounts(pool *pgxpool.Pool, provision bool) *Accounts {
	return &Accounts{pool: pool, provision: provision, ttl: time.Minute, now: time.Now, known: map[string]time.Time{}}
}

// ErrUnknownAccount means the token's account has no row and provisioning is
// off, or the account was terminated (or is being deleted) and is not
// provisioned again.
var ErrUnknownAccount = errors.New("account not registered with the email sender (or terminated)")

// Ensure checks (or creates) the accounts row of id.
func (a *Accounts) Ensure(ctx context.Context, id string) error {
	now := a.now()
	a.mu.Lock()
	until, ok := a.known[id]
	a.mu.Unlock()
	if ok && now.Before(until) {
		return nil
	}
	var err error
	if a.provision {
		// A terminated account (pkg/accountstate), or one whose deletion's
		// final sweep has not run yet, is not provisioned again.
		_, err = a.pool.Exec(ctx, `
			INSERT INTO accounts (id, name) SELECT $1, $2
			WHERE NOT EXISTS (SELECT 1 FROM account_states WHERE account = $1::uuid AND state IN ('terminated', 'deleted'))
			ON CONFLICT (id) DO NOTHING`,
			id, "namirasoft:"+id)
		if err != nil {
			return fmt.Errorf("provision account %s: %w", id, err)
		}
	}
	var exists bool
	if err = a.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1)`, id).Scan(&exists); err != nil {
		return fmt.Errorf("look up account %s: %w", id, err)
	}
	if !exists {
		return fmt.Errorf("%w: %w", auth.ErrUnauthenticated, ErrUnknownAccount)
	}
	a.mu.Lock()
	if len(a.known) > 100_000 {
		a.known = map[string]time.Time{}
	}
	a.known[id] = now.Add(a.ttl)
	a.mu.Unlock()
	return nil
}
