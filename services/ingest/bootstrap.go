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
	"github.com/namirasoft/email-sender/pkg/provider/kinds"
	"github.com/namirasoft/email-sender/pkg/provider/sandbox"
	"github.com/namirasoft/email-sender/pkg/provider/smtp"
	"github.com/namirasoft/email-sender/pkg/secretbox"
	"github.com/namirasoft/email-sender/services/ingest/store"
)

// BootstrapParams describes the account Bootstrap creates.
type BootstrapParams struct {
	// AccountName is required.
	AccountName string
	// AccountID is the new account's id (a UUID), e.g. the account claim of
	// a Namirasoft Account user known beforehand; default a new one.
	AccountID string
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

// SMTPSettings are the admin CLI's smtp flags. They become the kind's
// smtp.Settings (stored as the configuration's settings JSON) and smtp.Secret
// (Password, sealed as its secret JSON), validated and defaulted by the same
// Normalize as the API's settings.
type SMTPSettings struct {
	Host string
	// Port defaults by TLS mode (465 implicit, 25 none, else 587).
	Port int
	// TLS is "starttls" (default: STARTTLS required), "starttls_opportunistic",
	// "implicit" (TLS from the first byte) or "none".
	TLS      string
	Username string
	PoolSize int
	Password string
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
	if p.AccountID != "" {
		id, err := uuid.Parse(p.AccountID)
		if err != nil {
			return BootstrapResult{}, fmt.Errorf("bootstrap: account id %q: %w", p.AccountID, err)
		}
		res.AccountID = id.String()
	}
	settings, secret, secretFields, err := providerSettings(p, res.ProviderID, keyring)
	if err != nil {
		return BootstrapResult{}, err
	}
	senders, err := senderKeys(p.Senders)
	if err != nil {
		return BootstrapResult{}, err
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

// providerSettings validates the provider's settings with its kind's schema
// and returns them stored: the settings JSON, the sealed secret (nil when no
// secret field is set) and the names of the secret fields set.
func providerSettings(p BootstrapParams, providerID string, keyring *secretbox.Keyring) (settings, secret []byte, secretFields []string, err error) {
	var st kinds.Stored
	switch p.ProviderKind {
	case sandbox.Kind:
		st, err = kindSettings(sandbox.Kind, sandbox.Settings{}, sandbox.Secret{})
	case smtp.Kind:
		s := p.SMTP
		st, err = kindSettings(smtp.Kind,
			smtp.Settings{Host: s.Host, Port: s.Port, TLS: s.TLS, Username: s.Username, PoolSize: s.PoolSize},
			smtp.Secret{Password: s.Password})
	default:
		return nil, nil, nil, fmt.Errorf("bootstrap: provider kind %q: want %s or %s", p.ProviderKind, sandbox.Kind, smtp.Kind)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("bootstrap: %s %w", p.ProviderKind, err)
	}
	if st.Secret == nil {
		return st.Settings, nil, nil, nil
	}
	if keyring == nil {
		return nil, nil, nil, fmt.Errorf("bootstrap: an %s secret (%s) needs MASTER_KEYS to seal it", p.ProviderKind, strings.Join(st.SecretFields, ", "))
	}
	if secret, err = keyring.Seal(st.Secret, []byte(providerID)); err != nil {
		return nil, nil, nil, fmt.Errorf("bootstrap: seal %s secret: %w", p.ProviderKind, err)
	}
	return st.Settings, secret, st.SecretFields, nil
}

// kindSettings validates and encodes a kind's settings with the kind's schema
// (kinds.Schema.Normalize), the one the API uses.
func kindSettings(kind string, settings, secret any) (kinds.Stored, error) {
	k, ok := kinds.Lookup(kind)
	if !ok {
		return kinds.Stored{}, fmt.Errorf("unknown provider kind %q", kind)
	}
	set, err := json.Marshal(settings)
	if err != nil {
		return kinds.Stored{}, fmt.Errorf("encode settings: %w", err)
	}
	sec, err := json.Marshal(secret)
	if err != nil {
		return kinds.Stored{}, errors.New("encode secret") // never the encoder's error: it could quote the secret
	}
	return k.Schema.Normalize(set, sec)
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
