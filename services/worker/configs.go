package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/secretbox"
)

// errConfigNotFound means the job names a provider configuration that no longer
// exists (deleted, or the account's data was deleted): a permanent failure.
var errConfigNotFound = errors.New("provider configuration not found")

// configStore loads provider configurations, opening their secrets, with a
// short cache: a configuration change reaches workers within the TTL.
type configStore struct {
	pool    *pgxpool.Pool
	keyring *secretbox.Keyring
	ttl     time.Duration
	now     func() time.Time

	mu    sync.Mutex
	cache map[string]cachedConfig
}

type cachedConfig struct {
	cfg     storedConfig
	expires time.Time
}

// storedConfig is a provider configuration with what the worker needs to
// route a message besides the provider's own settings.
type storedConfig struct {
	provider.Config
	// Healthy is false once the provider refused the configuration's credentials.
	Healthy    bool
	HealthNote string
	// FallbackID names the configuration messages move to when this one is
	// unhealthy or keeps failing transiently ("" when none).
	FallbackID string
}

// load returns the configuration id of the account, cached for the TTL.
func (s *configStore) load(ctx context.Context, accountID, id string) (storedConfig, error) {
	now := s.now()
	s.mu.Lock()
	c, ok := s.cache[id]
	s.mu.Unlock()
	if ok && now.Before(c.expires) && c.cfg.AccountID == accountID {
		return c.cfg, nil
	}
	var (
		cfg    storedConfig
		secret []byte
	)
	err := s.pool.QueryRow(ctx, `
		SELECT id::text, account_id::text, kind, settings, secret, updated_at,
			healthy, health_note, COALESCE(fallback_provider_id::text, '')
		FROM provider_configs WHERE id = $1 AND account_id = $2`, id, accountID).
		Scan(&cfg.ID, &cfg.AccountID, &cfg.Kind, &cfg.Settings, &secret, &cfg.Version,
			&cfg.Healthy, &cfg.HealthNote, &cfg.FallbackID)
	if errors.Is(err, pgx.ErrNoRows) {
		return storedConfig{}, fmt.Errorf("%w: %s", errConfigNotFound, id)
	}
	if err != nil {
		return storedConfig{}, fmt.Errorf("load provider configuration %s: %w", id, err)
	}
	if len(secret) > 0 {
		if s.keyring == nil {
			return storedConfig{}, fmt.Errorf("provider configuration %s has a secret but no MASTER_KEYS are configured", id)
		}
		pt, err := s.keyring.Open(secret, []byte(cfg.ID))
		if err != nil {
			return storedConfig{}, fmt.Errorf("open secret of provider configuration %s: %w", id, err)
		}
		cfg.Secret = pt
	}
	s.mu.Lock()
	s.cache[id] = cachedConfig{cfg: cfg, expires: now.Add(s.ttl)}
	s.mu.Unlock()
	return cfg, nil
}

// markUnhealthy flags a configuration whose credentials were refused.
func (s *configStore) markUnhealthy(ctx context.Context, accountID, id, note string) error {
	_, err := s.pool.Exec(ctx, `
		UPDATE provider_configs SET healthy = false, health_note = $3, updated_at = now()
		WHERE id = $1 AND account_id = $2`, id, accountID, note)
	if err != nil {
		return fmt.Errorf("mark provider configuration %s unhealthy: %w", id, err)
	}
	s.mu.Lock()
	delete(s.cache, id)
	s.mu.Unlock()
	return nil
}
