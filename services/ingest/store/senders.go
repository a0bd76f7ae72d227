package store

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Sender statuses and verification methods.
const (
	SenderPending  = "pending"
	SenderVerified = "verified"

	MethodCode        = "code"
	MethodSESIdentity = "ses_identity"
	MethodBootstrap   = "bootstrap"
)

// Sender errors.
var (
	// ErrSenderVerified means the address is already a verified sender.
	ErrSenderVerified = errors.New("is already a verified sender of this account")
	// ErrNoCode means the sender is not verified by a mailed code.
	ErrNoCode = errors.New("this sender is not verified by a mailed code")
	// ErrCodeExpired means the code expired or was guessed wrong too often.
	ErrCodeExpired = errors.New("the code expired or was entered wrong too many times; call AddSender again for a new code")
)

// WrongCodeError means the code does not match.
type WrongCodeError struct{ Left int }

func (e *WrongCodeError) Error() string {
	return fmt.Sprintf("the code is wrong (%d attempts left)", e.Left)
}

// Sender is a stored sender.
type Sender struct {
	ID         string
	Address    string
	IsDomain   bool
	Status     string
	Method     string
	ProviderID string
	CreatedAt  time.Time
	VerifiedAt *time.Time
}

const senderColumns = `id::text, address, is_domain, status, method, COALESCE(provider_id::text, ''), created_at, verified_at`

func scanSender(r pgx.Row) (Sender, error) {
	var s Sender
	err := r.Scan(&s.ID, &s.Address, &s.IsDomain, &s.Status, &s.Method, &s.ProviderID, &s.CreatedAt, &s.VerifiedAt)
	return s, err
}

// SenderCodeHash is what is stored of a verification code.
func SenderCodeHash(accountID, address, code string) []byte {
	h := sha256.Sum256([]byte("emailsender-sender-code|" + accountID + "|" + address + "|" + code))
	return h[:]
}

// NewPendingSender is a sender awaiting verification.
type NewPendingSender struct {
	ID         string
	AccountID  string
	Address    string // lower-cased
	IsDomain   bool
	Method     string
	ProviderID string
	// CodeHash and CodeExpires are empty for senders verified otherwise (SES identities).
	CodeHash    []byte
	CodeExpires time.Time
	Now         time.Time
}

// PutPendingSender stores s as pending, or gives a pending sender of the same
// address a new code (its attempts reset). ErrSenderVerified when the address
// is already verified.
func PutPendingSender(ctx context.Context, db DBTX, s NewPendingSender) (Sender, error) {
	var expires *time.Time
	if !s.CodeExpires.IsZero() {
		expires = &s.CodeExpires
	}
	out, err := scanSender(db.QueryRow(ctx, `
		INSERT INTO senders AS s (id, account_id, address, is_domain, status, method, provider_id,
			code_hash, code_expires_at, code_attempts, created_at)
		VALUES ($1, $2, $3, $4, 'pending', $5, NULLIF($6, '')::uuid, $7, $8, 0, $9)
		ON CONFLICT (account_id, address) DO UPDATE
		SET method = EXCLUDED.method, provider_id = EXCLUDED.provider_id, code_hash = EXCLUDED.code_hash,
		    code_expires_at = EXCLUDED.code_expires_at, code_attempts = 0
		WHERE s.status = 'pending'
		RETURNING `+senderColumns,
		s.ID, s.AccountID, s.Address, s.IsDomain, s.Method, s.ProviderID, s.CodeHash, expires, s.Now))
	if errors.Is(err, pgx.ErrNoRows) {
		return Sender{}, ErrSenderVerified
	}
	if err != nil {
		return Sender{}, fmt.Errorf("store sender: %w", err)
	}
	return out, nil
}

// PutVerifiedSender stores s as verified at s.Now by s.Method (an SES
// identity), or verifies a pending sender of the same address.
// ErrSenderVerified when the address is already verified.
func PutVerifiedSender(ctx context.Context, db DBTX, s NewPendingSender) (Sender, error) {
	out, err := scanSender(db.QueryRow(ctx, `
		INSERT INTO senders AS s (id, account_id, address, is_domain, status, method, provider_id,
			verified_at, created_at)
		VALUES ($1, $2, $3, $4, 'verified', $5, NULLIF($6, '')::uuid, $7, $7)
		ON CONFLICT (account_id, address) DO UPDATE
		SET status = 'verified', method = EXCLUDED.method, provider_id = EXCLUDED.provider_id,
		    verified_at = EXCLUDED.verified_at, code_hash = NULL, code_expires_at = NULL, code_attempts = 0
		WHERE s.status = 'pending'
		RETURNING `+senderColumns,
		s.ID, s.AccountID, s.Address, s.IsDomain, s.Method, s.ProviderID, s.Now))
	if errors.Is(err, pgx.ErrNoRows) {
		return Sender{}, ErrSenderVerified
	}
	if err != nil {
		return Sender{}, fmt.Errorf("store verified sender: %w", err)
	}
	return out, nil
}

// AddVerifiedSenders stores addresses (lower-cased; without "@" a whole domain)
// as verified by method.
func AddVerifiedSenders(ctx context.Context, db DBTX, accountID string, addresses []string, method string, now time.Time) error {
	for _, a := range addresses {
		_, err := db.Exec(ctx, `
			INSERT INTO senders (id, account_id, address, is_domain, status, method, verified_at, created_at)
			VALUES ($1, $2, $3, $4, 'verified', $5, $6, $6)
			ON CONFLICT (account_id, address) DO UPDATE
			SET status = 'verified', method = EXCLUDED.method, verified_at = EXCLUDED.verified_at,
			    code_hash = NULL, code_expires_at = NULL, code_attempts = 0
			WHERE senders.status = 'pending'`,
			uuid.NewString(), accountID, a, !strings.Contains(a, "@"), method, now)
		if err != nil {
			return fmt.Errorf("add verified sender %s: %w", a, err)
		}
	}
	return nil
}

// VerifySenderCode checks code against the pending sender id of accountID. A
// wrong code counts an attempt (*WrongCodeError); after maxAttempts wrong ones,
// or past its expiry, the code is dead (ErrCodeExpired). A verified sender is
// returned as is.
func VerifySenderCode(ctx context.Context, db Beginner, accountID, id, code string, now time.Time, maxAttempts int) (Sender, error) {
	if _, err := uuid.Parse(id); err != nil {
		return Sender{}, ErrNotFound
	}
	var out Sender
	var wrong error
	err := withTx(ctx, db, func(tx pgx.Tx) error {
		var (
			s        Sender
			hash     []byte
			expires  *time.Time
			attempts int
		)
		err := tx.QueryRow(ctx, `
			SELECT `+senderColumns+`, code_hash, code_expires_at, code_attempts
			FROM senders WHERE account_id = $1 AND id = $2 FOR UPDATE`, accountID, id).
			Scan(&s.ID, &s.Address, &s.IsDomain, &s.Status, &s.Method, &s.ProviderID, &s.CreatedAt, &s.VerifiedAt,
				&hash, &expires, &attempts)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("read sender %s: %w", id, err)
		}
		if s.Status == SenderVerified {
			out = s
			return nil
		}
		if hash == nil {
			return ErrNoCode
		}
		if attempts >= maxAttempts || expires == nil || !now.Before(*expires) {
			return ErrCodeExpired
		}
		if subtle.ConstantTimeCompare(hash, SenderCodeHash(accountID, s.Address, code)) != 1 {
			if _, err := tx.Exec(ctx, `UPDATE senders SET code_attempts = code_attempts + 1 WHERE id = $1`, id); err != nil {
				return fmt.Errorf("count code attempt: %w", err)
			}
			// Committed: the attempt counts even though the call fails.
			wrong = &WrongCodeError{Left: maxAttempts - attempts - 1}
			return nil
		}
		out, err = scanSender(tx.QueryRow(ctx, `
			UPDATE senders SET status = 'verified', method = $2, verified_at = $3,
				code_hash = NULL, code_expires_at = NULL, code_attempts = 0
			WHERE id = $1 RETURNING `+senderColumns, id, MethodCode, now))
		if err != nil {
			return fmt.Errorf("mark sender %s verified: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return Sender{}, err
	}
	if wrong != nil {
		return Sender{}, wrong
	}
	return out, nil
}

// ListSenders returns the senders of accountID, by address.
func ListSenders(ctx context.Context, db DBTX, accountID string) ([]Sender, error) {
	rows, err := db.Query(ctx, `SELECT `+senderColumns+` FROM senders WHERE account_id = $1 ORDER BY address`, accountID)
	if err != nil {
		return nil, fmt.Errorf("list senders: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Sender, error) { return scanSender(r) })
	if err != nil {
		return nil, fmt.Errorf("list senders: %w", err)
	}
	return out, nil
}

// RemoveSender deletes a sender of accountID; ErrNotFound when there is none.
func RemoveSender(ctx context.Context, db DBTX, accountID, id string) error {
	if _, err := uuid.Parse(id); err != nil {
		return ErrNotFound
	}
	tag, err := db.Exec(ctx, `DELETE FROM senders WHERE account_id = $1 AND id = $2`, accountID, id)
	if err != nil {
		return fmt.Errorf("remove sender %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// VerifiedSenders answers which of froms (lower-cased canonical addresses)
// are verified senders of the account, in one round trip: an address counts
// when it or its domain is verified.
func VerifiedSenders(ctx context.Context, db DBTX, accountID string, froms []string) (map[string]SenderGrant, error) {
	keys := make([]string, 0, 2*len(froms))
	for _, f := range froms {
		keys = append(keys, f)
		if at := strings.LastIndexByte(f, '@'); at >= 0 {
			keys = append(keys, f[at+1:])
		}
	}
	rows, err := db.Query(ctx, `
		SELECT address, method, COALESCE(provider_id::text, '') FROM senders
		WHERE account_id = $1 AND status = 'verified' AND address = ANY($2)`,
		accountID, keys)
	if err != nil {
		return nil, fmt.Errorf("look up senders: %w", err)
	}
	found := map[string]SenderGrant{}
	var a, method, providerID string
	_, err = pgx.ForEachRow(rows, []any{&a, &method, &providerID}, func() error {
		found[a] = found[a].add(method, providerID)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("look up senders: %w", err)
	}
	verified := make(map[string]SenderGrant, len(froms))
	for _, f := range froms {
		g := found[f]
		if at := strings.LastIndexByte(f, '@'); at >= 0 {
			g = g.merge(found[f[at+1:]])
		}
		verified[f] = g
	}
	return verified, nil
}

// SenderGrant is what makes a from address a verified sender: a sender (the
// address, or its domain) verified for every provider of the account (a
// mailed code, the operator's bootstrap), or only for the providers whose own
// identity check verified it (ses_identity: SES vouches for its AWS account,
// not for the account's other providers).
type SenderGrant struct {
	// Any: verified for sends through any provider of the account.
	Any bool
	// Providers are the provider ids it is verified for when not Any.
	Providers []string
}

// Verified reports whether the address is a verified sender through some
// provider.
func (g SenderGrant) Verified() bool { return g.Any || len(g.Providers) > 0 }

// Allows reports whether the address may be sent from through providerID.
func (g SenderGrant) Allows(providerID string) bool {
	return g.Any || slices.Contains(g.Providers, providerID)
}

func (g SenderGrant) add(method, providerID string) SenderGrant {
	if method == MethodSESIdentity {
		if providerID != "" && !slices.Contains(g.Providers, providerID) {
			g.Providers = append(g.Providers, providerID)
		}
		return g
	}
	g.Any = true
	return g
}

func (g SenderGrant) merge(o SenderGrant) SenderGrant {
	g.Any = g.Any || o.Any
	for _, p := range o.Providers {
		if !slices.Contains(g.Providers, p) {
			g.Providers = append(g.Providers, p)
		}
	}
	return g
}
