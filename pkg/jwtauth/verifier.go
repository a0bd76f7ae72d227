package jwtauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/namirasoft/email-sender/pkg/auth"
)

// Algorithms are the only signature algorithms accepted.
var Algorithms = []string{"RS256", "ES256"}

// maxTokenBytes bounds what is parsed at all.
const maxTokenBytes = 8 << 10

// Verifier checks Namirasoft Account tokens.
type Verifier struct {
	cfg    Config
	keys   *KeySet
	parser *jwt.Parser
	log    *slog.Logger
}

// Option configures a Verifier.
type Option func(*Verifier)

// WithHTTPClient fetches the JWKS with c.
func WithHTTPClient(c *http.Client) Option {
	return func(v *Verifier) { v.keys.client = c }
}

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option {
	return func(v *Verifier) { v.keys.now = now }
}

// NewVerifier returns a verifier for cfg (which must be Enabled).
func NewVerifier(cfg Config, log *slog.Logger, opts ...Option) (*Verifier, error) {
	cfg = cfg.WithDefaults()
	if !cfg.Enabled() {
		return nil, errors.New("jwtauth: JWT_JWKS_URL is not set")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("jwtauth: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	v := &Verifier{cfg: cfg, log: log, keys: NewKeySet(cfg.JWKSURL, nil, cfg.JWKSRefresh, cfg.JWKSMinRefresh, log)}
	for _, o := range opts {
		o(v)
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(Algorithms),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(func() time.Time { return v.keys.now() }),
	)
	return v, nil
}

// LooksLikeJWT reports whether token has the three dot-separated parts of a
// compact JWS.
func LooksLikeJWT(token string) bool {
	return strings.Count(token, ".") == 2
}

// Verify checks token and returns its principal (KeyID empty, Subject the
// "sub" claim). Every rejection wraps auth.ErrUnauthenticated, except a key
// set that could never be fetched (ErrJWKSUnavailable: the caller may retry).
func (v *Verifier) Verify(ctx context.Context, token string) (auth.Principal, error) {
	if len(token) > maxTokenBytes {
		return auth.Principal{}, fmt.Errorf("%w: token larger than %d bytes", auth.ErrUnauthenticated, maxTokenBytes)
	}
	claims := jwt.MapClaims{}
	_, err := v.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		if _, ok := t.Header["crit"]; ok {
			return nil, errors.New("critical header parameters are not supported")
		}
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("token has no kid")
		}
		k, err := v.keys.Key(ctx, kid)
		if err != nil {
			return nil, err
		}
		// A key only verifies the algorithm it was published for.
		if k.alg != t.Method.Alg() {
			return nil, fmt.Errorf("key %s is for %s, token says %s", kid, k.alg, t.Method.Alg())
		}
		return k.key, nil
	})
	if err != nil {
		if errors.Is(err, ErrJWKSUnavailable) {
			return auth.Principal{}, err
		}
		v.log.DebugContext(ctx, "jwt rejected", "error", err)
		return auth.Principal{}, fmt.Errorf("%w: %w", auth.ErrUnauthenticated, err)
	}
	if err := v.lifetime(claims); err != nil {
		return auth.Principal{}, fmt.Errorf("%w: %w", auth.ErrUnauthenticated, err)
	}
	p, err := v.cfg.Principal(claims)
	if err != nil {
		return auth.Principal{}, fmt.Errorf("%w: %w", auth.ErrUnauthenticated, err)
	}
	return p, nil
}

// Principal maps the claims of a verified Namirasoft Account token (or of an
// ID token of the same issuer: the console's sign-in) to its principal: the
// account claim (a UUID), "sub" and the scope claim (DefaultScopes without
// it). It checks no signature, issuer or lifetime.
func (c Config) Principal(claims map[string]any) (auth.Principal, error) {
	acct, _ := claims[c.AccountClaim].(string)
	id, err := uuid.Parse(acct)
	if err != nil || acct == "" {
		return auth.Principal{}, fmt.Errorf("claim %q is not an account id", c.AccountClaim)
	}
	sub, _ := claims["sub"].(string)
	scopes, err := c.scopes(claims)
	if err != nil {
		return auth.Principal{}, err
	}
	return auth.Principal{AccountID: id.String(), Subject: sub, Scopes: scopes}, nil
}

// lifetime refuses tokens valid for longer than MaxLifetime: iat is required
// and exp - iat bounded, and exp may not lie further ahead than that either
// (an iat in the past would otherwise not bound it).
func (v *Verifier) lifetime(claims jwt.MapClaims) error {
	if v.cfg.MaxLifetime <= 0 {
		return nil
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return errors.New("token has no valid exp")
	}
	iat, err := claims.GetIssuedAt()
	if err != nil || iat == nil {
		return errors.New("token has no iat (required with JWT_MAX_LIFETIME)")
	}
	if d := exp.Sub(iat.Time); d > v.cfg.MaxLifetime {
		return fmt.Errorf("token lifetime %s exceeds %s", d, v.cfg.MaxLifetime)
	}
	if d := exp.Sub(v.keys.now()); d > v.cfg.MaxLifetime+v.cfg.Leeway {
		return fmt.Errorf("token expires in %s, more than %s", d.Round(time.Second), v.cfg.MaxLifetime)
	}
	return nil
}

// scopes maps the scope claim to the service's scopes: each of "send",
// "read" and "admin" (also written "email-sender:send", ...) grants that scope;
// other values are ignored. A token without the claim gets DefaultScopes.
func (c Config) scopes(claims map[string]any) ([]string, error) {
	raw, ok := claims[c.ScopeClaim]
	if !ok {
		return append([]string(nil), c.DefaultScopes...), nil
	}
	var vals []string
	switch s := raw.(type) {
	case string:
		vals = strings.Fields(s)
	case []any:
		for _, e := range s {
			str, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("claim %q: not a list of strings", c.ScopeClaim)
			}
			vals = append(vals, strings.Fields(str)...)
		}
	default:
		return nil, fmt.Errorf("claim %q: want a string or a list of strings", c.ScopeClaim)
	}
	return MapScopes(vals), nil
}

// MapScopes keeps the known scopes of vals, once each, without their optional
// "email-sender:" prefix.
func MapScopes(vals []string) []string {
	out := []string{}
	seen := map[string]bool{}
	for _, s := range vals {
		s = strings.TrimPrefix(s, "email-sender:")
		switch s {
		case auth.ScopeSend, auth.ScopeRead, auth.ScopeAdmin:
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	return out
}
