package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// APIKey is a stored API key, without its hash.
type APIKey struct {
	ID         string
	Name       string
	Prefix     string
	Scopes     []string
	CreatedAt  time.Time
	ExpiresAt  *time.Time
	RevokedAt  *time.Time
	LastUsedAt *time.Time
}

const apiKeyColumns = `id::text, name, prefix, scopes, created_at, expires_at, revoked_at, last_used_at`

func scanAPIKey(r pgx.Row) (APIKey, error) {
	var k APIKey
	err := r.Scan(&k.ID, &k.Name, &k.Prefix, &k.Scopes, &k.CreatedAt, &k.ExpiresAt, &k.RevokedAt, &k.LastUsedAt)
	return k, err
}

// GetAPIKey returns a key of accountID, or ErrNotFound.
func GetAPIKey(ctx context.Context, db DBTX, accountID, id string) (APIKey, error) {
	if _, err := uuid.Parse(id); err != nil {
		return APIKey{}, ErrNotFound
	}
	k, err := scanAPIKey(db.QueryRow(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE account_id = $1 AND id = $2`, accountID, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return APIKey{}, ErrNotFound
	}
	if err != nil {
		return APIKey{}, fmt.Errorf("get api key %s: %w", id, err)
	}
	return k, nil
}

// ListAPIKeys returns every key of accountID, revoked ones included, oldest first.
func ListAPIKeys(ctx context.Context, db DBTX, accountID string) ([]APIKey, error) {
	rows, err := db.Query(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE account_id = $1 ORDER BY created_at, id`, accountID)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (APIKey, error) { return scanAPIKey(r) })
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return keys, nil
}

// RevokeAPIKey marks a key of accountID revoked (a key already revoked keeps
// its first revocation time) and returns it; ErrNotFound when there is none.
func RevokeAPIKey(ctx context.Context, db DBTX, accountID, id string, now time.Time) (APIKey, error) {
	if _, err := uuid.Parse(id); err != nil {
		return APIKey{}, ErrNotFound
	}
	k, err := scanAPIKey(db.QueryRow(ctx, `
		UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3)
		WHERE account_id = $1 AND id = $2
		RETURNING `+apiKeyColumns, accountID, id, now))
	if errors.Is(err, pgx.ErrNoRows) {
		return APIKey{}, ErrNotFound
	}
	if err != nil {
		return APIKey{}, fmt.Errorf("revoke api key %s: %w", id, err)
	}
	return k, nil
}
