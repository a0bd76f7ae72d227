// Package bouncedomain is the one home of accounts' own bounce domains.
//
// By default the VERP envelope senders of SMTP sends (pkg/verp) are at the
// operator's BOUNCE_DOMAIN. An account may register a domain of its own
// (AccountService.SetBounceDomain), e.g. bounces.customer.example, whose MX
// points at the inbound service, and prove it holds it with a DNS TXT
// record: RecordName(domain) must hold RecordValue(token), the token being a
// random one of the registration (Check, through a resolver whose server is
// the operator's DNS_SERVER). Once verified, the worker signs the account's
// SMTP sends at that domain (its verified domain is read with the provider
// configuration: Verified) and the inbound service accepts reports there
// (Directory: every verified domain in memory).
//
// A domain belongs to at most one account, and only once verified: several
// accounts may register it, the first to prove it wins (a unique index on
// verified domains) and the others' verification is refused (ErrTaken). The
// VERP addresses at an account's domain are bound to that account by their
// mac, so an address made for one account's message is refused at another
// account's domain.
//
// PostgreSQL (table bounce_domains) is the source of truth. Ingest announces
// each change on the core NATS subject ChangedSubject (Announce); the
// inbound service's Directory reloads on it, and every refresh interval in
// case an announcement was missed.
package bouncedomain

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/namirasoft/email-sender/pkg/address"
	"github.com/namirasoft/email-sender/pkg/pgerr"
)

// recordLabel is the label under the domain that holds the TXT record.
const recordLabel = "_emailsender"

// valuePrefix starts the TXT record's value.
const valuePrefix = "emailsender-verification="

// RecordName is the name of the TXT record that proves domain.
func RecordName(domain string) string { return recordLabel + "." + domain }

// RecordValue is the TXT record's value for a registration's token.
func RecordValue(token string) string { return valuePrefix + token }

// Normalize returns domain's lower-case ASCII (punycode) form without a
// trailing dot; errors wrap address.ErrInvalid. A bounce domain must have at
// least two labels.
func Normalize(domain string) (string, error) {
	d, err := address.ParseDomain(strings.TrimSuffix(strings.TrimSpace(domain), "."))
	if err != nil {
		return "", err
	}
	if !strings.Contains(d, ".") {
		return "", fmt.Errorf("%w: %q is not a fully qualified domain name", address.ErrInvalid, d)
	}
	return d, nil
}

// newToken is a registration's random token: 20 bytes, base32.
func newToken() (string, error) {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)), nil
}

var (
	// ErrNotFound: the account has no bounce domain.
	ErrNotFound = errors.New("no bounce domain registered")
	// ErrTaken: the domain is verified for another account.
	ErrTaken = errors.New("the domain is verified for another account")
	// ErrOtherDomain: the account has another bounce domain registered.
	ErrOtherDomain = errors.New("the account has another bounce domain; remove it first")
)

// Registration is an account's bounce domain.
type Registration struct {
	AccountID string
	Domain    string
	// Token is what the TXT record must hold (RecordValue).
	Token     string
	CreatedAt time.Time
	// VerifiedAt is nil while pending.
	VerifiedAt *time.Time
	// CheckedAt and LastCheck are the last verification attempt and what it
	// found.
	CheckedAt *time.Time
	LastCheck string
}

// Verified reports whether the domain was proven.
func (r Registration) Verified() bool { return r.VerifiedAt != nil }

// DB is what the package needs of PostgreSQL (a *pgxpool.Pool or a pgx.Tx).
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

const columns = `account_id::text, domain, token, created_at, verified_at, checked_at, last_check`

func scan(row pgx.Row) (Registration, error) {
	var r Registration
	err := row.Scan(&r.AccountID, &r.Domain, &r.Token, &r.CreatedAt, &r.VerifiedAt, &r.CheckedAt, &r.LastCheck)
	return r, err
}

// Get returns account's registration (ErrNotFound when none).
func Get(ctx context.Context, db DB, account string) (Registration, error) {
	r, err := scan(db.QueryRow(ctx, `SELECT `+columns+` FROM bounce_domains WHERE account_id = $1`, account))
	if errors.Is(err, pgx.ErrNoRows) {
		return Registration{}, ErrNotFound
	}
	if err != nil {
		return Registration{}, fmt.Errorf("read bounce domain: %w", err)
	}
	return r, nil
}

// Register registers domain (normalized) for account, pending, with a new
// token; registering the account's own domain again returns it as it is
// (same token, verified or not). ErrOtherDomain when the account has another
// domain. A domain verified for another account registers as well (and says
// nothing of that account): only its verification is refused (Checked), so
// that whether a domain is taken is learnt only by whoever controls its DNS.
func Register(ctx context.Context, db DB, account, domain string, now time.Time) (Registration, error) {
	token, err := newToken()
	if err != nil {
		return Registration{}, fmt.Errorf("register bounce domain: token: %w", err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO bounce_domains (account_id, domain, token, created_at)
		VALUES ($1, $2, $3, $4) ON CONFLICT (account_id) DO NOTHING`, account, domain, token, now); err != nil {
		return Registration{}, fmt.Errorf("register bounce domain: %w", err)
	}
	r, err := Get(ctx, db, account)
	if err != nil {
		return Registration{}, err
	}
	if r.Domain != domain {
		return r, ErrOtherDomain
	}
	return r, nil
}

// Checked records a verification attempt of account's registration of
// domain: verified (the first time, verified_at is set) or not, with what it
// found. ErrTaken when another account verified the domain first,
// ErrNotFound when the registration is gone or is of another domain now.
func Checked(ctx context.Context, db DB, account, domain string, verified bool, note string, now time.Time) (Registration, error) {
	r, err := scan(db.QueryRow(ctx, `
		UPDATE bounce_domains SET checked_at = $4, last_check = $5,
			verified_at = CASE WHEN $3 THEN COALESCE(verified_at, $4) ELSE verified_at END
		WHERE account_id = $1 AND domain = $2
		RETURNING `+columns, account, domain, verified, now, note))
	switch {
	case pgerr.Is(err, pgerr.UniqueViolation):
		return Registration{}, ErrTaken
	case errors.Is(err, pgx.ErrNoRows):
		return Registration{}, ErrNotFound
	case err != nil:
		return Registration{}, fmt.Errorf("record bounce domain check: %w", err)
	}
	return r, nil
}

// Remove deletes account's registration (ErrNotFound when none) and returns
// it.
func Remove(ctx context.Context, db DB, account string) (Registration, error) {
	r, err := scan(db.QueryRow(ctx, `DELETE FROM bounce_domains WHERE account_id = $1 RETURNING `+columns, account))
	if errors.Is(err, pgx.ErrNoRows) {
		return Registration{}, ErrNotFound
	}
	if err != nil {
		return Registration{}, fmt.Errorf("remove bounce domain: %w", err)
	}
	return r, nil
}

// Verified is account's verified bounce domain, "" when it has none.
func Verified(ctx context.Context, db DB, account string) (string, error) {
	var d string
	err := db.QueryRow(ctx, `SELECT domain FROM bounce_domains WHERE account_id = $1 AND verified_at IS NOT NULL`, account).Scan(&d)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read verified bounce domain of account %s: %w", account, err)
	}
	return d, nil
}

// Owners maps every verified domain to its account.
func Owners(ctx context.Context, db DB) (map[string]string, error) {
	rows, err := db.Query(ctx, `SELECT domain, account_id::text FROM bounce_domains WHERE verified_at IS NOT NULL`)
	if err != nil {
		return nil, fmt.Errorf("read verified bounce domains: %w", err)
	}
	out := map[string]string{}
	var d, a string
	if _, err := pgx.ForEachRow(rows, []any{&d, &a}, func() error { out[d] = a; return nil }); err != nil {
		return nil, fmt.Errorf("read verified bounce domains: %w", err)
	}
	return out, nil
}

// TXTResolver looks up TXT records (a *net.Resolver).
type TXTResolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// ResolverConfig is where the DNS lookups of the verification go.
type ResolverConfig struct {
	// Server is a DNS server's host:port; empty: the system's resolver.
	Server string `env:"DNS_SERVER" help:"DNS server (host:port) that bounce domain verification asks for TXT records, over UDP and TCP; unset: the system resolver"`
}

// Resolver is the resolver of c; an error names the variable.
func (c ResolverConfig) Resolver() (*net.Resolver, error) {
	if c.Server == "" {
		return net.DefaultResolver, nil
	}
	if _, _, err := net.SplitHostPort(c.Server); err != nil {
		return nil, fmt.Errorf("DNS_SERVER=%q: want host:port: %w", c.Server, err)
	}
	server := c.Server
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, server)
	}}, nil
}

// ErrLookup wraps a DNS lookup that failed for another reason than the
// record's absence (a timeout, a server failure): try again later.
var ErrLookup = errors.New("dns lookup failed")

// CheckError is a verification that found no TXT record holding the token.
type CheckError struct {
	Name  string
	Found []string
}

// Error says what was found, without quoting the records: they may hold
// another account's registration token.
func (e *CheckError) Error() string {
	if len(e.Found) == 0 {
		return fmt.Sprintf("no TXT record at %s", e.Name)
	}
	return fmt.Sprintf("none of the %d TXT record(s) at %s holds this registration's token", len(e.Found), e.Name)
}

// Check looks up RecordName(domain) and reports whether a TXT record there
// is RecordValue(token): nil, a *CheckError, or an error wrapping ErrLookup.
func Check(ctx context.Context, r TXTResolver, domain, token string) error {
	name := RecordName(domain)
	txts, err := r.LookupTXT(ctx, name)
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		return &CheckError{Name: name}
	}
	if err != nil {
		return fmt.Errorf("%w: TXT %s: %w", ErrLookup, name, err)
	}
	want := RecordValue(token)
	for _, t := range txts {
		if strings.TrimSpace(t) == want {
			return nil
		}
	}
	return &CheckError{Name: name, Found: append([]string(nil), txts...)}
}
