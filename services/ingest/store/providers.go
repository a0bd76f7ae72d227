package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/namirasoft/email-sender/pkg/pgerr"
)

// ErrNameTaken means another provider configuration of the account has the name.
var ErrNameTaken = errors.New("another provider configuration of this account has this name")

// ProviderConfig is a stored provider configuration (its secret still sealed).
type ProviderConfig struct {
	ID        string
	AccountID string
	Name      string
	Kind      string
	Settings  []byte // JSON object
	Secret    []byte // sealed; nil when none
	// SecretFields names the secret fields that are set.
	SecretFields []string
	Healthy      bool
	HealthNote   string
	FallbackID   string
	// LastVerify is the JSON of the last VerifyProvider result; nil before one.
	LastVerify []byte
	VerifiedAt *time.Time
	CreatedAt  time.Time
	UpdatedAt  time.Time
	IsDefault  bool
}

const providerColumns = `p.id::text, p.account_id::text, p.name, p.kind, p.settings, p.secret, p.secret_fields, p.healthy, p.health_note,
	COALESCE(p.fallback_provider_id::text, ''), p.last_verify, p.verified_at, p.created_at, p.updated_at,
	COALESCE(a.default_provider_id = p.id, false)`

func scanProvider(r pgx.Row) (ProviderConfig, error) {
	var p ProviderConfig
	err := r.Scan(&p.ID, &p.AccountID, &p.Name, &p.Kind, &p.Settings, &p.Secret, &p.SecretFields, &p.Healthy, &p.HealthNote,
		&p.FallbackID, &p.LastVerify, &p.VerifiedAt, &p.CreatedAt, &p.UpdatedAt, &p.IsDefault)
	return p, err
}

// GetProviderConfig returns a configuration of accountID, or ErrNotFound.
func GetProviderConfig(ctx context.Context, db DBTX, accountID, id string) (ProviderConfig, error) {
	if _, err := uuid.Parse(id); err != nil {
		return ProviderConfig{}, ErrNotFound
	}
	p, err := scanProvider(db.QueryRow(ctx, `
		SELECT `+providerColumns+` FROM provider_configs p JOIN accounts a ON a.id = p.account_id
		WHERE p.account_id = $1 AND p.id = $2`, accountID, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return ProviderConfig{}, ErrNotFound
	}
	if err != nil {
		return ProviderConfig{}, fmt.Errorf("get provider configuration %s: %w", id, err)
	}
	return p, nil
}

// ListProviderConfigs returns the configurations of accountID, oldest first.
func ListProviderConfigs(ctx context.Context, db DBTX, accountID string) ([]ProviderConfig, error) {
	rows, err := db.Query(ctx, `
		SELECT `+providerColumns+` FROM provider_configs p JOIN accounts a ON a.id = p.account_id
		WHERE p.account_id = $1 ORDER BY p.created_at, p.id`, accountID)
	if err != nil {
		return nil, fmt.Errorf("list provider configurations: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ProviderConfig, error) { return scanProvider(r) })
	if err != nil {
		return nil, fmt.Errorf("list provider configurations: %w", err)
	}
	return out, nil
}

// PutProviderConfig is a configuration to create or replace.
type PutProviderConfig struct {
	ID        string
	AccountID string
	Name      string
	Kind      string
	Settings  []byte
	Secret    []byte
	// SecretFields names the secret fields that are set.
	SecretFields []string
	FallbackID   string
	// MakeDefault makes it the account's default; a configuration also becomes
	// the default when the account has none.
	MakeDefault bool
}

// InsertProviderConfig creates p. ErrNameTaken when the name is in use;
// *UnknownProviderError when the fallback is not in the account.
func InsertProviderConfig(ctx context.Context, db Beginner, p PutProviderConfig) error {
	return withTx(ctx, db, func(tx pgx.Tx) error {
		if err := checkFallback(ctx, tx, p); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `
			INSERT INTO provider_configs (id, account_id, name, kind, settings, secret, fallback_provider_id, secret_fields)
			VALUES ($1, $2, $3, $4, $5, $6, NULLIF($7, '')::uuid, $8)`,
			p.ID, p.AccountID, p.Name, p.Kind, string(p.Settings), p.Secret, p.FallbackID, nonNil(p.SecretFields))
		if err != nil {
			return providerWriteError(err)
		}
		return setDefaultIf(ctx, tx, p)
	})
}

// UpdateProviderConfig replaces the configuration p.ID of p.AccountID (kind
// included). Its health and last verification are reset: the settings they were
// about are gone. ErrNotFound when there is no such configuration.
func UpdateProviderConfig(ctx context.Context, db Beginner, p PutProviderConfig) error {
	return withTx(ctx, db, func(tx pgx.Tx) error {
		if err := checkFallback(ctx, tx, p); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `
			UPDATE provider_configs SET name = $3, kind = $4, settings = $5, secret = $6,
				fallback_provider_id = NULLIF($7, '')::uuid, healthy = true, health_note = '',
				last_verify = NULL, verified_at = NULL, secret_fields = $8, updated_at = now()
			WHERE account_id = $1 AND id = $2`,
			p.AccountID, p.ID, p.Name, p.Kind, string(p.Settings), p.Secret, p.FallbackID, nonNil(p.SecretFields))
		if err != nil {
			return providerWriteError(err)
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return setDefaultIf(ctx, tx, p)
	})
}

func checkFallback(ctx context.Context, tx pgx.Tx, p PutProviderConfig) error {
	if p.FallbackID == "" {
		return nil
	}
	if _, err := uuid.Parse(p.FallbackID); err != nil || p.FallbackID == p.ID {
		return &UnknownProviderError{ID: p.FallbackID}
	}
	var ok bool
	err := tx.QueryRow(ctx, `SELECT true FROM provider_configs WHERE account_id = $1 AND id = $2`, p.AccountID, p.FallbackID).Scan(&ok)
	if errors.Is(err, pgx.ErrNoRows) {
		return &UnknownProviderError{ID: p.FallbackID}
	}
	if err != nil {
		return fmt.Errorf("check fallback provider: %w", err)
	}
	return nil
}

func setDefaultIf(ctx context.Context, tx pgx.Tx, p PutProviderConfig) error {
	_, err := tx.Exec(ctx, `
		UPDATE accounts SET default_provider_id = $2
		WHERE id = $1 AND ($3 OR default_provider_id IS NULL)`, p.AccountID, p.ID, p.MakeDefault)
	if err != nil {
		return fmt.Errorf("set default provider: %w", err)
	}
	return nil
}

func providerWriteError(err error) error {
	if pgerr.Is(err, pgerr.UniqueViolation) {
		return ErrNameTaken
	}
	return fmt.Errorf("write provider configuration: %w", err)
}

// DeleteProviderConfig deletes a configuration of accountID; the account's
// default and other configurations' fallbacks that named it are cleared.
// ErrNotFound when there is none.
func DeleteProviderConfig(ctx context.Context, db Beginner, accountID, id string) error {
	if _, err := uuid.Parse(id); err != nil {
		return ErrNotFound
	}
	return withTx(ctx, db, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM provider_configs WHERE account_id = $1 AND id = $2`, accountID, id)
		if err != nil {
			return fmt.Errorf("delete provider configuration %s: %w", id, err)
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		b := &pgx.Batch{}
		b.Queue(`UPDATE accounts SET default_provider_id = NULL WHERE id = $1 AND default_provider_id = $2`, accountID, id)
		b.Queue(`UPDATE provider_configs SET fallback_provider_id = NULL WHERE account_id = $1 AND fallback_provider_id = $2`, accountID, id)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("clear references to provider configuration %s: %w", id, err)
		}
		return nil
	})
}

// RecordVerify stores a verification result (JSON) and its time. healthy, when
// set, also sets the configuration's health (a refused login marks it
// unhealthy; a successful one healthy again).
func RecordVerify(ctx context.Context, db DBTX, accountID, id string, result []byte, at time.Time, healthy *bool, note string) error {
	_, err := db.Exec(ctx, `
		UPDATE provider_configs SET last_verify = $3, verified_at = $4,
			healthy = COALESCE($5, healthy), health_note = CASE WHEN $5 IS NULL THEN health_note ELSE $6 END
		WHERE account_id = $1 AND id = $2`, accountID, id, string(result), at, healthy, note)
	if err != nil {
		return fmt.Errorf("record verification of provider configuration %s: %w", id, err)
	}
	return nil
}

// SealedSecret is a provider configuration's sealed secret, for master key
// rotation.
type SealedSecret struct {
	ID     string
	Secret []byte
}

// LockSecretsNotUnder locks (in tx) up to limit configurations whose secret is
// sealed under another master key than kid, skipping ids in skip.
func LockSecretsNotUnder(ctx context.Context, tx pgx.Tx, kid string, skip []string, limit int) ([]SealedSecret, error) {
	if skip == nil {
		skip = []string{}
	}
	// Blob layout (pkg/secretbox): version byte, kid length byte, kid.
	rows, err := tx.Query(ctx, `
		SELECT id::text, secret FROM provider_configs
		WHERE secret IS NOT NULL
		  AND substring(secret FROM 3 FOR get_byte(secret, 1)) <> convert_to($1, 'UTF8')
		  AND NOT (id::text = ANY($2))
		ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED`, kid, skip, limit)
	if err != nil {
		return nil, fmt.Errorf("list secrets to rewrap: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (SealedSecret, error) {
		var s SealedSecret
		return s, r.Scan(&s.ID, &s.Secret)
	})
	if err != nil {
		return nil, fmt.Errorf("list secrets to rewrap: %w", err)
	}
	return out, nil
}

// ReplaceSecret stores a rewrapped secret. updated_at stays: the secret itself
// did not change, so workers need not rebuild their connections.
func ReplaceSecret(ctx context.Context, db DBTX, id string, secret []byte) error {
	if _, err := db.Exec(ctx, `UPDATE provider_configs SET secret = $2 WHERE id = $1`, id, secret); err != nil {
		return fmt.Errorf("store rewrapped secret of %s: %w", id, err)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
