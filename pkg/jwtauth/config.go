// Package jwtauth accepts Namirasoft Account tokens as bearer tokens: JWTs
// signed with RS256 or ES256 by a key of a configured JWKS, with the configured
// issuer and audience. The account is the token's account claim (a UUID); its
// scopes come from the scope claim.
//
// Only RS256 and ES256 are accepted, and each key only for its own algorithm:
// "alg": "none", the HS* family (including HMAC keyed with a public key, the
// classic algorithm confusion) and any algorithm a key was not published for are
// rejected before a signature is looked at. exp is required; exp, nbf and iat
// are checked with a small leeway.
//
// The JWKS is fetched over HTTP(S) and cached; it is fetched again after
// JWKSRefresh (in the background: the stale set keeps answering), and at once
// when a token names a kid the cache does not know (key rotation), at most once
// per JWKSMinRefresh so that tokens with made-up kids cannot make the service
// hammer the JWKS endpoint.
//
// Authenticator routes a bearer token: "es_…" to the API key store, a
// three-part JWT to the Verifier.
package jwtauth

import (
	"errors"
	"time"

	"github.com/namirasoft/email-sender/pkg/envconfig"
)

// Config configures Namirasoft Account tokens. It is shared by every service
// that serves the API (ingest and report); load it with envconfig.
type Config struct {
	JWKSURL  string `env:"JWT_JWKS_URL" help:"Namirasoft Account JWKS URL; unset: only API keys are accepted"`
	Issuer   string `env:"JWT_ISSUER" help:"required iss of Namirasoft Account tokens (required with JWT_JWKS_URL)"`
	Audience string `env:"JWT_AUDIENCE" default:"email-sender" help:"required aud of Namirasoft Account tokens"`
	// AccountClaim names the claim holding the account id (a UUID).
	AccountClaim string `env:"JWT_ACCOUNT_CLAIM" default:"account_id" help:"claim holding the account id (a UUID)"`
	// ScopeClaim names the claim holding the scopes: a space separated string
	// ("send read") or an array of strings.
	ScopeClaim string `env:"JWT_SCOPE_CLAIM" default:"scope" help:"claim holding the scopes (space separated string or array)"`
	// DefaultScopes are a token's scopes when it has no scope claim at all.
	DefaultScopes []string      `env:"JWT_DEFAULT_SCOPES" default:"send,read" help:"scopes of a token without the scope claim"`
	Leeway        time.Duration `env:"JWT_LEEWAY" default:"30s" help:"clock skew allowed on exp, nbf and iat"`
	// MaxLifetime bounds how long a token may be valid: exp - iat (iat is then
	// required), and exp - now. A stolen token is useful no longer than this.
	MaxLifetime time.Duration `env:"JWT_MAX_LIFETIME" default:"24h" help:"longest validity of a Namirasoft Account token (exp - iat); longer-lived tokens are refused"`
	// JWKSRefresh is how old the cached key set may get before it is fetched again.
	JWKSRefresh time.Duration `env:"JWT_JWKS_REFRESH" default:"1h" help:"how often the JWKS is fetched again"`
	// JWKSMinRefresh is the least time between two fetches (unknown kid, errors).
	JWKSMinRefresh time.Duration `env:"JWT_JWKS_MIN_REFRESH" default:"10s" help:"least time between JWKS fetches (unknown kid)"`
	// AutoProvision creates the accounts row of an account on its first valid
	// token; when false, a token for an account without a row is refused.
	AutoProvision bool `env:"JWT_AUTO_PROVISION" default:"true" help:"create a Namirasoft account's row on its first valid token"`
}

// Enabled reports whether tokens are accepted at all.
func (c Config) Enabled() bool { return c.JWKSURL != "" }

// WithDefaults fills the unset fields of a Config built in code from the
// default tags above, the one source of the defaults.
func (c Config) WithDefaults() Config {
	// The field names are this package's own: an error here is a typo in
	// this list, caught by the tests.
	_ = envconfig.FillDefaults(&c, "Audience", "AccountClaim", "ScopeClaim", "DefaultScopes", "Leeway", "JWKSRefresh", "JWKSMinRefresh", "MaxLifetime")
	return c
}

// Validate fails when tokens are enabled without an issuer or audience.
func (c Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	if c.Issuer == "" {
		return errors.New("JWT_ISSUER is required with JWT_JWKS_URL")
	}
	if c.Audience == "" {
		return errors.New("JWT_AUDIENCE is required with JWT_JWKS_URL")
	}
	if c.Leeway < 0 || c.Leeway > 5*time.Minute {
		return errors.New("JWT_LEEWAY must be within 0..5m")
	}
	return nil
}
