package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/namirasoft/email-sender/pkg/address"
	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/secretbox"
	"github.com/namirasoft/email-sender/services/ingest/store"
)

// BootstrapParams describes the account Bootstrap creates.
type BootstrapParams struct {
	// AccountName is required.
	AccountName string
	// ProviderKind is "sandbox" or "smtp".
	ProviderKind string
	// ProviderName names the provider configuration (default: the kind).
	ProviderName string
	// SMTP configures an smtp provider.
	SMTP SMTPSettings
	// KeyName names the API key (default "bootstrap").
	KeyName string
	// Senders are addresses ("dev@example.com") or whole domains
	// ("example.com") stored as verified senders (method "bootstrap"), so the
	// account can send at once where REQUIRE_VERIFIED_SENDERS is on.
	Senders []string
}

// SMTPSettings are an SMTP provider's settings. All but Password are stored as
// the configuration's settings JSON {"host","port","tls","username","pool_size"};
// Password is sealed as its secret JSON {"password"}.
type SMTPSettings struct {
	Host string `json:"host"`
	Port int    `json:"port"`
	// TLS is "starttls" (default: STARTTLS required), "starttls_opportunistic",
	// "implicit" (TLS from the first byte, port 465) or "none".
	TLS      string `json:"tls"`
	Username string `json:"username,omitempty"`
	PoolSize int    `json:"pool_size"`
	Password string `json:"-"`
}

// BootstrapResult names what Bootstrap created. APIKey is the only copy of the
// key: only its hash is stored.
type BootstrapResult struct {
	AccountID  string
	ProviderID string
	APIKeyID   string
	APIKey     string
}

// Bootstrap creates, in one transaction, an account, a provider configuration
// that becomes the account's default, and an API key with the send, read and
// admin scopes. keyring seals the provider's secret; it may be nil when the
// provider has none (sandbox, smtp without password).
func Bootstrap(ctx context.Context, pool *pgxpool.Pool, keyring *secretbox.Keyring, p BootstrapParams) (BootstrapResult, error) {
	if p.AccountName == "" {
		return BootstrapResult{}, errors.New("bootstrap: account name is required")
	}
	if p.ProviderName == "" {
		p.ProviderName = p.ProviderKind
	}
	if p.KeyName == "" {
		p.KeyName = "bootstrap"
	}
	res := BootstrapResult{AccountID: uuid.NewString(), ProviderID: uuid.NewString(), APIKeyID: uuid.NewString()}
	settings, secret, err := providerSettings(p, res.ProviderID, keyring)
	if err != nil {
		return BootstrapResult{}, err
	}
	senders, err := senderKeys(p.Senders)
	if err != nil {
		return BootstrapResult{}, err
	}
	var secretFields []string
	if secret != nil {
		secretFields = []string{"password"}
	}
	key, prefix, hash, err := auth.NewKey()
	if err != nil {
		return BootstrapResult{}, fmt.Errorf("bootstrap: %w", err)
	}
	res.APIKey = key
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if err := store.CreateAccount(ctx, tx, store.NewAccount{ID: res.AccountID, Name: p.AccountName}); err != nil {
			return err
		}
		if err := store.CreateProviderConfig(ctx, tx, store.NewProviderConfig{
			ID: res.ProviderID, AccountID: res.AccountID, Name: p.ProviderName, Kind: p.ProviderKind,
			Settings: settings, Secret: secret, SecretFields: secretFields,
		}); err != nil {
			return err
		}
		if err := store.SetDefaultProvider(ctx, tx, res.AccountID, res.ProviderID); err != nil {
			return err
		}
		if err := store.AddVerifiedSenders(ctx, tx, res.AccountID, senders, store.MethodBootstrap, time.Now()); err != nil {
			return err
		}
		return store.CreateAPIKey(ctx, tx, store.NewAPIKey{
			ID: res.APIKeyID, AccountID: res.AccountID, Name: p.KeyName, Prefix: prefix, Hash: hash,
			Scopes: []string{auth.ScopeSend, auth.ScopeRead, auth.ScopeAdmin},
		})
	})
	if err != nil {
		return BootstrapResult{}, fmt.Errorf("bootstrap: %w", err)
	}
	return res, nil
}

func providerSettings(p BootstrapParams, providerID string, keyring *secretbox.Keyring) (settings, secret []byte, err error) {
	switch p.ProviderKind {
	case "sandbox":
		return []byte("{}"), nil, nil
	case "smtp":
	default:
		return nil, nil, fmt.Errorf("bootstrap: provider kind %q: want sandbox or smtp", p.ProviderKind)
	}
	s := p.SMTP
	if s.Host == "" {
		return nil, nil, errors.New("bootstrap: smtp host is required")
	}
	if s.Port == 0 {
		s.Port = 587
	}
	if s.TLS == "" {
		s.TLS = "starttls"
	}
	switch s.TLS {
	case "starttls", "starttls_opportunistic", "implicit", "none":
	default:
		return nil, nil, fmt.Errorf("bootstrap: smtp tls %q: want starttls, starttls_opportunistic, implicit or none", s.TLS)
	}
	if s.PoolSize <= 0 {
		s.PoolSize = 4
	}
	if settings, err = json.Marshal(s); err != nil {
		return nil, nil, fmt.Errorf("bootstrap: encode smtp settings: %w", err)
	}
	if s.Password == "" {
		return settings, nil, nil
	}
	if keyring == nil {
		return nil, nil, errors.New("bootstrap: an smtp password needs MASTER_KEYS to seal it")
	}
	plain, err := json.Marshal(struct {
		Password string `json:"password"`
	}{s.Password})
	if err != nil {
		return nil, nil, fmt.Errorf("bootstrap: encode smtp secret: %w", err)
	}
	if secret, err = keyring.Seal(plain, []byte(providerID)); err != nil {
		return nil, nil, fmt.Errorf("bootstrap: seal smtp secret: %w", err)
	}
	return settings, secret, nil
}

// senderKeys normalises sender addresses and domains to their stored form.
func senderKeys(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, raw := range in {
		raw = strings.TrimSpace(raw)
		if strings.Contains(raw, "@") {
			a, err := address.Parse(raw)
			if err != nil {
				return nil, fmt.Errorf("bootstrap: sender %q: %w", raw, err)
			}
			out = append(out, a.Lower())
			continue
		}
		a, err := address.Parse("postmaster@" + raw)
		if err != nil {
			return nil, fmt.Errorf("bootstrap: sender domain %q: %w", raw, err)
		}
		out = append(out, a.Domain)
	}
	return out, nil
}

// AddVerifiedSenders stores senders (addresses or whole domains) of accountID
// as verified by the operator (method "bootstrap"); it is how `make run` keeps
// an account made by an older version able to send.
func AddVerifiedSenders(ctx context.Context, pool *pgxpool.Pool, accountID string, senders []string) error {
	keys, err := senderKeys(senders)
	if err != nil {
		return err
	}
	return store.AddVerifiedSenders(ctx, pool, accountID, keys, store.MethodBootstrap, time.Now())
}
