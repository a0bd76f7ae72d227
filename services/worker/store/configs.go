// Package store is the worker's PostgreSQL: it reads provider configurations
// (cached, their secrets opened) and marks one unhealthy when its credentials
// are refused, and reads whether a message was canceled. The worker writes
// nothing else there.
package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/namirasoft/email-sender/pkg/bouncedomain"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/secretbox"
)

// ErrConfigNotFound means the job names a provider configuration that no longer
// exists (deleted, or the account's data was deleted): a permanent failure.
var ErrConfigNotFound = errors.New("provider configuration not found")

// Configs loads provider configurations, opening their secrets, with a
// short cache: a configuration change reaches workers within the TTL.
type Configs struct {
	pool    *pgxpool.Pool
	keyring *secretbox.Keyring
	ttl     time.Duration
	now     func() time.Time

	mu    sync.Mutex
	cache map[string]cachedConfig
}

// NewConfigs reads configurations from pool, opening their secrets with
// keyring (nil when no configuration has one), and caches them for ttl.
func NewConfigs(pool *pgxpool.Pool, keyring *secretbox.Keyring, ttl time.Duration) *Configs {
	return &Configs{pool: pool, keyring: keyring, ttl: ttl, now: time.Now, cache: map[string]cachedConfig{}}
}

type cachedConfig struct {
	cfg     ProviderConfig
	expires time.Time
}

// ProviderConfig is a provider configuration with what the worker needs to
// route a message besides the provider's own settings.
type ProviderConfig struct {
	provider.Config
	// Healthy is false once the provider refused the configuration's credentials.
	Healthy    bool
	HealthNote string
	// FallbackID names the configuration messages move to when this one is
	// unhealthy or keeps failing transiently ("" when none).
	FallbackID string
}

// Load returns the configuration id of the account, cached for the TTL.
func (s *Configs) Load(ctx context.Context, accountID, id string) (ProviderConfig, error) {
	now := s.now()
	s.mu.Lock()
	c, ok := s.cache[id]
	s.mu.Unlock()
	if ok && now.Before(c.expires) && c.cfg.AccountID == accountID {
		return c.cfg, nil
	}
	var (
		cfg    ProviderConfig
		secret []byte
	)
	err := s.pool.QueryRow(ctx, `
		SELECT id::text, account_id::text, kind, settings, secret, updated_at,
			healthy, health_note, COALESCE(fallback_provider_id::text, '')
		FROM provider_configs WHERE id = $1 AND account_id = $2`, id, accountID).
		Scan(&cfg.ID, &cfg.AccountID, &cfg.Kind, &cfg.Settings, &secret, &cfg.Version,
			&cfg.Healthy, &cfg.HealthNote, &cfg.FallbackID)
	if errors.Is(err, pgx.ErrNoRows) {
		return ProviderConfig{}, fmt.Errorf("%w: %s", ErrConfigNotFound, id)
	}
	if err != nil {
		return ProviderConfig{}, fmt.Errorf("load provider configuration %s: %w", id, err)
	}
	if len(secret) > 0 {
		if s.keyring == nil {
			return ProviderConfig{}, fmt.Errorf("provider configuration %s has a secret but no MASTER_KEYS are configured", id)
		}
		pt, err := s.keyring.Open(secret, []byte(cfg.ID))
		if err != nil {
			return ProviderConfig{}, fmt.Errorf("open secret of provider configuration %s: %w", id, err)
		}
		cfg.Secret = pt
	}
	// The account's bounce domain rides with the configuration, and its
	// cache: a change reaches workers within the TTL too.
	if cfg.BounceDomain, err = bouncedomain.Verified(ctx, s.pool, accountID); err != nil {
		return ProviderConfig{}, err
	}
	s.mu.Lock()
	s.cache[id] = cachedConfig{cfg: cfg, expires: now.Add(s.ttl)}
	s.mu.Unlock()
	return cfg, nil
}

// MarkUnhealthy flags a configuration whose credentials were refused.
func (s *Configs) MarkUnhealthy(ctx context.Context, accountID, id, note string) error {
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
