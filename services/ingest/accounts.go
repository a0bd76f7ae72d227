package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/namirasoft/email-sender/pkg/accountstate"
	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/invalidate"
	"github.com/namirasoft/email-sender/pkg/provider/kinds"
	"github.com/namirasoft/email-sender/pkg/secretbox"
	"github.com/namirasoft/email-sender/services/ingest/account"
	"github.com/namirasoft/email-sender/services/ingest/erase"
	"github.com/namirasoft/email-sender/services/ingest/operator"
	"github.com/namirasoft/email-sender/services/ingest/send"
	"github.com/namirasoft/email-sender/services/ingest/store"
)

// accounts is what the AccountService adds to the service: the server, the
// kinds' checks of credentials (closeVerifiers closes the senders they log in
// with), and the revocation feed of the key cache.
type accounts struct {
	server         *account.Server
	closeVerifiers func() error
	keyStore       *auth.KeyStore
	revs           *auth.Revocations
	// states follows the account states (stateGate); eraser deletes
	// accounts' data and runs the final sweeps; operator is the operator's
	// controls (OperatorService, `ingest operator`).
	states   *accountstate.View
	eraser   *erase.Eraser
	operator *operator.Controls
	tokens   []operator.Token
}

// revoker revokes keys on this replica's cache at once and announces them to
// the others.
type revoker struct {
	ks   *auth.KeyStore
	revs *auth.Revocations
}

func (r revoker) Revoke(ctx context.Context, keyIDs ...string) error {
	if r.ks != nil {
		r.ks.Forget()
	}
	return r.revs.Publish(ctx, keyIDs...)
}

func newAccounts(cfg Config, deps Deps, mailer *send.Server, states *accountstate.View, configs *invalidate.Feed) (*accounts, error) {
	var keyring *secretbox.Keyring
	if cfg.MasterKeys != "" {
		var err error
		if keyring, err = secretbox.ParseKeyring(cfg.MasterKeys, cfg.MasterKeyID); err != nil {
			return nil, fmt.Errorf("ingest: MASTER_KEYS: %w", err)
		}
	}
	ks := deps.KeyStore
	if ks == nil {
		ks, _ = deps.Auth.(*auth.KeyStore)
	}
	opts, err := cfg.Outbound.Options(deps.Logger)
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	verifiers, closeVerifiers := kinds.Verifiers(opts)
	tokens, err := operator.ParseTokens(cfg.OperatorTokens)
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	a := &accounts{
		closeVerifiers: closeVerifiers,
		keyStore:       ks,
		revs:           auth.NewRevocations(deps.JetStream, cfg.NATS.StreamReplicas),
		states:         states,
		tokens:         tokens,
	}
	rev := revoker{ks: ks, revs: a.revs}
	a.eraser = newEraser(cfg, deps, rev)
	stateStore := accountstate.NewStore(deps.Pool, deps.JetStream, cfg.NATS.StreamReplicas)
	a.operator = operator.New(deps.Pool, stateStore, a.eraser)
	resolver, err := cfg.Account.DNS.Resolver()
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	a.server = account.New(cfg.Account, account.Deps{
		DB: deps.Pool, JetStream: deps.JetStream, Keyring: keyring, Mailer: mailer,
		Revoker:   rev,
		Configs:   configs,
		Eraser:    a.eraser,
		States:    stateStore,
		Verifiers: verifiers,
		Resolver:  resolver, OperatorBounceDomain: cfg.Outbound.Bounce.Domain,
		Logger: deps.Logger, Now: deps.Now,
	})
	return a, nil
}

// retention runs every RetentionInterval until ctx ends: the partition
// manager makes the partitions ahead and drops the expired ones (content
// after RetentionPeriod, the rest of a message after MetadataRetention,
// usage records after USAGE_RETENTION, idempotency keys after a day; see
// pkg/partition), and the content of delivered sender verification mails,
// which holds their code, is deleted at once.
func (s *Service) retention(ctx context.Context) {
	t := time.NewTicker(s.cfg.RetentionInterval)
	defer t.Stop()
	const batch = 1000
	for {
		if _, err := s.partitions.RunOnce(ctx); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "partition maintenance", "error", err)
		}
		for {
			n, err := store.PurgeVerificationContent(ctx, s.deps.Pool, batch)
			if err != nil {
				if ctx.Err() == nil {
					s.log.WarnContext(ctx, "purge verification mail content", "error", err)
				}
				break
			}
			if n < batch {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Service) now() time.Time {
	if s.deps.Now != nil {
		return s.deps.Now()
	}
	return time.Now()
}

// RotateResult counts what RotateMasterKey did.
type RotateResult struct {
	// Rewrapped secrets now sealed under the current key.
	Rewrapped int
	// Current secrets were already under it.
	Current int
}

// RotateMasterKey re-seals every provider secret's data key under keyring's
// current master key (MASTER_KEY_ID), in transactions of batch rows; the
// secrets themselves are not decrypted. The keyring must also hold every
// older key still in use. Safe to run again (it resumes) and beside running
// services (workers open either key id).
func RotateMasterKey(ctx context.Context, pool *pgxpool.Pool, keyring *secretbox.Keyring, batch int) (RotateResult, error) {
	if batch <= 0 {
		batch = 500
	}
	kid := keyring.CurrentKeyID()
	var res RotateResult
	for {
		n := 0
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			rows, err := store.LockSecretsNotUnder(ctx, tx, kid, nil, batch)
			if err != nil {
				return err
			}
			for _, r := range rows {
				out, err := keyring.Rewrap(r.Secret)
				if errors.Is(err, secretbox.ErrUnknownKey) {
					old, _ := secretbox.KeyID(r.Secret)
					return fmt.Errorf("provider configuration %s is sealed with master key %q, which is not in MASTER_KEYS: add it", r.ID, old)
				}
				if err != nil {
					return fmt.Errorf("rewrap secret of provider configuration %s: %w", r.ID, err)
				}
				if err := store.ReplaceSecret(ctx, tx, r.ID, out); err != nil {
					return err
				}
			}
			n = len(rows)
			return nil
		})
		if err != nil {
			return res, err
		}
		res.Rewrapped += n
		if n < batch {
			break
		}
	}
	hooks, err := rotateWebhookSecrets(ctx, pool, keyring, batch)
	res.Rewrapped += hooks.Rewrapped
	if err != nil {
		return res, err
	}
	err = pool.QueryRow(ctx, `SELECT count(*) FROM provider_configs WHERE secret IS NOT NULL`).Scan(&res.Current)
	if err != nil {
		return res, fmt.Errorf("count secrets: %w", err)
	}
	res.Current -= res.Rewrapped - hooks.Rewrapped
	res.Current += hooks.Current
	return res, nil
}

// rotateWebhookSecrets re-seals the webhook signing secrets (the report's
// webhook_endpoints: the current one and, during a secret rotation, the
// previous one; the endpoint id is the additional data) under the current
// master key, batch endpoints per transaction.
func rotateWebhookSecrets(ctx context.Context, pool *pgxpool.Pool, keyring *secretbox.Keyring, batch int) (RotateResult, error) {
	kid := keyring.CurrentKeyID()
	var res RotateResult
	after := "00000000-0000-0000-0000-000000000000"
	for {
		n := 0
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `
				SELECT id::text, secret, previous_secret FROM webhook_endpoints
				WHERE id > $1::uuid ORDER BY id LIMIT $2 FOR UPDATE`, after, batch)
			if err != nil {
				return fmt.Errorf("read webhook secrets: %w", err)
			}
			type endpoint struct {
				id               string
				secret, previous []byte
			}
			var eps []endpoint
			for rows.Next() {
				var e endpoint
				if err := rows.Scan(&e.id, &e.secret, &e.previous); err != nil {
					rows.Close()
					return fmt.Errorf("read webhook secrets: %w", err)
				}
				eps = append(eps, e)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("read webhook secrets: %w", err)
			}
			for _, e := range eps {
				changed := false
				for _, blob := range []*[]byte{&e.secret, &e.previous} {
					if *blob == nil {
						continue
					}
					if old, err := secretbox.KeyID(*blob); err == nil && old == kid {
						res.Current++
						continue
					}
					out, err := keyring.Rewrap(*blob)
					if errors.Is(err, secretbox.ErrUnknownKey) {
						old, _ := secretbox.KeyID(*blob)
						return fmt.Errorf("webhook endpoint %s is sealed with master key %q, which is not in MASTER_KEYS: add it", e.id, old)
					}
					if err != nil {
						return fmt.Errorf("rewrap secret of webhook endpoint %s: %w", e.id, err)
					}
					*blob = out
					res.Rewrapped++
					changed = true
				}
				if changed {
					if _, err := tx.Exec(ctx, `UPDATE webhook_endpoints SET secret = $2, previous_secret = $3 WHERE id = $1::uuid`, e.id, e.secret, e.previous); err != nil {
						return fmt.Errorf("store webhook secret: %w", err)
					}
				}
				after = e.id
			}
			n = len(eps)
			return nil
		})
		if err != nil {
			return res, err
		}
		if n < batch {
			return res, nil
		}
	}
}
