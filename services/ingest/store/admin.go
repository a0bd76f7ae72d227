package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// NewAccount is an account to create.
type NewAccount struct {
	ID   string
	Name string
}

// CreateAccount inserts an account.
func CreateAccount(ctx context.Context, db DBTX, a NewAccount) error {
	if _, err := db.Exec(ctx, `INSERT INTO accounts (id, name) VALUES ($1, $2)`, a.ID, a.Name); err != nil {
		return fmt.Errorf("create account: %w", err)
	}
	return nil
}

// NewProviderConfig is a provider configuration to create.
type NewProviderConfig struct {
	ID        string
	AccountID string
	Name      string
	Kind      string
	// Settings is a JSON object.
	Settings []byte
	// Secret is sealed by secretbox; nil when the provider needs none.
	Secret []byte
	// SecretFields names the secret fields that are set.
	SecretFields []string
}

// CreateProviderConfig inserts a provider configuration.
func CreateProviderConfig(ctx context.Context, db DBTX, p NewProviderConfig) error {
	_, err := db.Exec(ctx, `
		INSERT INTO provider_configs (id, account_id, name, kind, settings, secret, secret_fields)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, p.ID, p.AccountID, p.Name, p.Kind, string(p.Settings), p.Secret, nonNil(p.SecretFields))
	if err != nil {
		return fmt.Errorf("create provider configuration: %w", err)
	}
	return nil
}

// SetDefaultProvider makes providerID the account's default; the provider must
// belong to the account.
func SetDefaultProvider(ctx context.Context, db DBTX, accountID, providerID string) error {
	tag, err := db.Exec(ctx, `
		UPDATE accounts SET default_provider_id = p.id
		FROM provider_configs p
		WHERE accounts.id = $1 AND p.id = $2 AND p.account_id = $1`, accountID, providerID)
	if err != nil {
		return fmt.Errorf("set default provider: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("set default provider: %w", &UnknownProviderError{ID: providerID})
	}
	return nil
}

// NewAPIKey is an API key to store (its hash only).
type NewAPIKey struct {
	ID        string
	AccountID string
	Name      string
	Prefix    string
	Hash      []byte
	Scopes    []string
	// ExpiresAt is optional (zero: never).
	ExpiresAt time.Time
}

// CreateAPIKey inserts an API key.
func CreateAPIKey(ctx context.Context, db DBTX, k NewAPIKey) error {
	expires := pgtype.Timestamptz{Time: k.ExpiresAt, Valid: !k.ExpiresAt.IsZero()}
	_, err := db.Exec(ctx, `
		INSERT INTO api_keys (id, account_id, name, prefix, hash, scopes, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, k.ID, k.AccountID, k.Name, k.Prefix, k.Hash, k.Scopes, expires)
	if err != nil {
		return fmt.Errorf("create api key: %w", err)
	}
	return nil
}
