package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Provider is a provider configuration as ingest needs it.
type Provider struct {
	ID        string
	AccountID string
	Kind      string
	// Healthy: the configuration can send, or it names a healthy fallback
	// (a worker moves the message there, see services/worker).
	Healthy bool
}

// ResolveProvider returns the provider configuration id of accountID, or the
// account's default one when id is empty. It returns *UnknownProviderError when
// there is no such configuration in the account and ErrNoDefaultProvider when
// id is empty and the account has no default.
func ResolveProvider(ctx context.Context, db DBTX, accountID, id string) (Provider, error) {
	var want *string
	if id != "" {
		if _, err := uuid.Parse(id); err != nil {
			return Provider{}, &UnknownProviderError{ID: id}
		}
		want = &id
	}
	var (
		def, pid, kind *string
		healthy        *bool
	)
	err := db.QueryRow(ctx, `
		SELECT a.default_provider_id::text, p.id::text, p.kind, p.healthy OR COALESCE(f.healthy, false)
		FROM accounts a
		LEFT JOIN provider_configs p
		       ON p.account_id = a.id AND p.id = COALESCE($2::uuid, a.default_provider_id)
		LEFT JOIN provider_configs f
		       ON f.account_id = a.id AND f.id = p.fallback_provider_id
		WHERE a.id = $1`, accountID, want).Scan(&def, &pid, &kind, &healthy)
	if errors.Is(err, pgx.ErrNoRows) {
		return Provider{}, fmt.Errorf("account %s: %w", accountID, ErrNotFound)
	}
	if err != nil {
		return Provider{}, fmt.Errorf("resolve provider: %w", err)
	}
	if pid == nil {
		if want == nil && def == nil {
			return Provider{}, ErrNoDefaultProvider
		}
		missing := id
		if want == nil {
			missing = *def
		}
		return Provider{}, &UnknownProviderError{ID: missing}
	}
	return Provider{ID: *pid, AccountID: accountID, Kind: *kind, Healthy: *healthy}, nil
}
