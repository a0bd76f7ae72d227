package jwtauth_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/jwtauth"
	"github.com/namirasoft/email-sender/pkg/testkit/jwttest"
)

func newVerifier(t *testing.T, iss *jwttest.Issuer, tune ...func(*jwtauth.Config)) *jwtauth.Verifier {
	t.Helper()
	cfg := iss.Config()
	for _, f := range tune {
		f(&cfg)
	}
	v, err := jwtauth.NewVerifier(cfg, nil)
	require.NoError(t, err)
	return v
}

func TestVerify(t *testing.T) {
	t.Parallel()
	iss := jwttest.New(t)
	iss.AddKey(t, "rogue", "RSA") // never published
	v := newVerifier(t, iss)
	acct := uuid.NewString()
	with := func(mut func(jwt.MapClaims)) jwt.MapClaims {
		c := iss.Claims(acct, "send read")
		mut(c)
		return c
	}
	tests := []struct {
		name       string
		token      string
		wantScopes []string
		wantErr    bool
	}{
		{"rs256", iss.Sign(t, jwttest.RSAKey, iss.Claims(acct, "send read")), []string{"send", "read"}, false},
		{"es256", iss.Sign(t, jwttest.ECKey, iss.Claims(acct, "admin")), []string{"admin"}, false},
		{"no scope claim gets the defaults", iss.Sign(t, jwttest.RSAKey, iss.Claims(acct, "")), []string{"send", "read"}, false},
		{"prefixed and unknown scopes", iss.Sign(t, jwttest.RSAKey, iss.Claims(acct, "email-sender:send profile")), []string{"send"}, false},
		{"scope array", iss.Sign(t, jwttest.RSAKey, with(func(c jwt.MapClaims) { c["scope"] = []string{"read"} })), []string{"read"}, false},
		{"leeway covers small skew", iss.Sign(t, jwttest.RSAKey, with(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-10 * time.Second).Unix() })), []string{"send", "read"}, false},
		{"expired", iss.Sign(t, jwttest.RSAKey, with(func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() })), nil, true},
		{"no exp", iss.Sign(t, jwttest.RSAKey, with(func(c jwt.MapClaims) { delete(c, "exp") })), nil, true},
		{"not yet valid", iss.Sign(t, jwttest.RSAKey, with(func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Hour).Unix() })), nil, true},
		{"issued in the future", iss.Sign(t, jwttest.RSAKey, with(func(c jwt.MapClaims) { c["iat"] = time.Now().Add(time.Hour).Unix() })), nil, true},
		{"lifetime over JWT_MAX_LIFETIME", iss.Sign(t, jwttest.RSAKey, with(func(c jwt.MapClaims) {
			c["iat"] = time.Now().Add(-time.Minute).Unix()
			c["exp"] = time.Now().Add(30 * 24 * time.Hour).Unix()
		})), nil, true},
		{"no iat", iss.Sign(t, jwttest.RSAKey, with(func(c jwt.MapClaims) { delete(c, "iat") })), nil, true},
		{"old iat, far exp", iss.Sign(t, jwttest.RSAKey, with(func(c jwt.MapClaims) {
			c["iat"] = time.Now().Add(-47 * time.Hour).Unix()
			c["exp"] = time.Now().Add(time.Hour).Unix()
		})), nil, true},
		{"lifetime within JWT_MAX_LIFETIME", iss.Sign(t, jwttest.RSAKey, with(func(c jwt.MapClaims) {
			c["iat"] = time.Now().Add(-23 * time.Hour).Unix()
			c["exp"] = time.Now().Add(time.Hour / 2).Unix()
		})), []string{"send", "read"}, false},
		{"wrong audience", iss.Sign(t, jwttest.RSAKey, with(func(c jwt.MapClaims) { c["aud"] = "someone-else" })), nil, true},
		{"wrong issuer", iss.Sign(t, jwttest.RSAKey, with(func(c jwt.MapClaims) { c["iss"] = "https://evil.test" })), nil, true},
		{"no account claim", iss.Sign(t, jwttest.RSAKey, with(func(c jwt.MapClaims) { delete(c, "account_id") })), nil, true},
		{"account not a uuid", iss.Sign(t, jwttest.RSAKey, with(func(c jwt.MapClaims) { c["account_id"] = "acme" })), nil, true},
		{"wrong key for a known kid", iss.SignAs(t, "rogue", jwttest.RSAKey, iss.Claims(acct, "send")), nil, true},
		{"rsa key named by an ec kid", iss.SignAs(t, jwttest.RSAKey, jwttest.ECKey, iss.Claims(acct, "send")), nil, true},
		{"unknown kid", iss.Sign(t, "rogue", iss.Claims(acct, "send")), nil, true},
		{"alg none", jwttest.None(t, jwttest.RSAKey, iss.Claims(acct, "admin")), nil, true},
		{"hs256 keyed with the rsa public key", iss.HS256WithPublicKey(t, jwttest.RSAKey, iss.Claims(acct, "admin")), nil, true},
		{"hs256 keyed with the ec public key", iss.HS256WithPublicKey(t, jwttest.ECKey, iss.Claims(acct, "admin")), nil, true},
		{"garbage", "a.b.c", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := v.Verify(context.Background(), tt.token)
			if tt.wantErr {
				require.Error(t, err)
				require.True(t, errors.Is(err, auth.ErrUnauthenticated), "got %v", err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, acct, p.AccountID)
			require.Equal(t, "notification-sender", p.Subject)
			require.Empty(t, p.KeyID)
			require.Equal(t, tt.wantScopes, p.Scopes)
		})
	}
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	iss := jwttest.New(t)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	cfg := iss.Config()
	cfg.JWKSMinRefresh = 30 * time.Second
	cfg.JWKSRefresh = time.Minute
	v, err := jwtauth.NewVerifier(cfg, nil, jwtauth.WithClock(clock))
	require.NoError(t, err)
	acct := uuid.NewString()
	ctx := context.Background()

	_, err = v.Verify(ctx, iss.Sign(t, jwttest.RSAKey, iss.Claims(acct, "send")))
	require.NoError(t, err)
	require.EqualValues(t, 1, iss.Fetches.Load())

	// Unknown kids within JWKSMinRefresh of the last fetch do not fetch again.
	iss.AddKey(t, "rsa-2", "RSA")
	iss.Publish("rsa-2")
	rotated := iss.Sign(t, "rsa-2", iss.Claims(acct, "send"))
	for range 5 {
		_, err = v.Verify(ctx, rotated)
		require.ErrorIs(t, err, auth.ErrUnauthenticated)
	}
	require.EqualValues(t, 1, iss.Fetches.Load())
	advance(31 * time.Second)

	// Once it may, the unknown kid makes the verifier fetch again although the
	// cached set is fresh (key rotation), and the token verifies.
	_, err = v.Verify(ctx, rotated)
	require.NoError(t, err)
	require.EqualValues(t, 2, iss.Fetches.Load())
	_, err = v.Verify(ctx, iss.Sign(t, jwttest.RSAKey, iss.Claims(acct, "send")))
	require.NoError(t, err)
	require.EqualValues(t, 2, iss.Fetches.Load())

	// A stale set answers at once and is refreshed in the background; a key
	// no longer published stops verifying after that refresh.
	iss.Unpublish(jwttest.RSAKey)
	advance(2 * time.Minute)
	old := iss.Sign(t, jwttest.RSAKey, iss.Claims(acct, "send"))
	_, err = v.Verify(ctx, old)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return iss.Fetches.Load() == 3 }, 5*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool {
		_, err := v.Verify(ctx, old)
		return errors.Is(err, auth.ErrUnauthenticated)
	}, 5*time.Second, 5*time.Millisecond)
}

func TestConcurrentUnknownKidFetchesOnce(t *testing.T) {
	t.Parallel()
	iss := jwttest.New(t)
	v := newVerifier(t, iss, func(c *jwtauth.Config) { c.JWKSMinRefresh = time.Hour })
	tok := iss.Sign(t, jwttest.ECKey, iss.Claims(uuid.NewString(), "send"))
	errs := make(chan error, 32)
	for range 32 {
		go func() { _, err := v.Verify(context.Background(), tok); errs <- err }()
	}
	for range 32 {
		require.NoError(t, <-errs)
	}
	require.EqualValues(t, 1, iss.Fetches.Load())
}

func TestJWKSUnavailable(t *testing.T) {
	t.Parallel()
	v, err := jwtauth.NewVerifier(jwtauth.Config{JWKSURL: "http://127.0.0.1:1/jwks", Issuer: "x"}, nil)
	require.NoError(t, err)
	iss := jwttest.New(t)
	_, err = v.Verify(context.Background(), iss.Sign(t, jwttest.RSAKey, iss.Claims(uuid.NewString(), "send")))
	require.ErrorIs(t, err, jwtauth.ErrJWKSUnavailable)
	require.NotErrorIs(t, err, auth.ErrUnauthenticated)
}

func TestParseJWKSSkipsUnusableKeys(t *testing.T) {
	t.Parallel()
	_, err := jwtauth.ParseJWKS([]byte(`{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"},{"kty":"RSA","kid":"small","n":"AQAB","e":"AQAB"}]}`))
	require.Error(t, err)
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, jwtauth.Config{}.Validate())
	require.Error(t, jwtauth.Config{JWKSURL: "http://x"}.WithDefaults().Validate())
	require.NoError(t, jwtauth.Config{JWKSURL: "http://x", Issuer: "i"}.WithDefaults().Validate())
}

type keyStub struct{}

func (keyStub) Authenticate(context.Context, string) (auth.Principal, error) {
	return auth.Principal{AccountID: "key-account", KeyID: "k1"}, nil
}

func TestAuthenticatorRoutes(t *testing.T) {
	t.Parallel()
	iss := jwttest.New(t)
	a := jwtauth.NewAuthenticator(keyStub{}, newVerifier(t, iss), nil)
	ctx := context.Background()
	p, err := a.Authenticate(ctx, "es_whatever")
	require.NoError(t, err)
	require.Equal(t, "k1", p.KeyID)
	acct := uuid.NewString()
	p, err = a.Authenticate(ctx, iss.Sign(t, jwttest.RSAKey, iss.Claims(acct, "read")))
	require.NoError(t, err)
	require.Equal(t, acct, p.AccountID)
	_, err = a.Authenticate(ctx, "opaque-token")
	require.ErrorIs(t, err, auth.ErrUnauthenticated)

	// Without a verifier tokens are refused.
	_, err = jwtauth.NewAuthenticator(keyStub{}, nil, nil).Authenticate(ctx, iss.Sign(t, jwttest.RSAKey, iss.Claims(acct, "read")))
	require.ErrorIs(t, err, auth.ErrUnauthenticated)
}

// A Config built in code gets exactly the defaults the environment gets: the
// default tags are their one source.
func TestConfigDefaultsAreTheTags(t *testing.T) {
	var fromEnv jwtauth.Config
	require.NoError(t, envconfig.LoadFrom(&fromEnv, func(string) (string, bool) { return "", false }))
	require.True(t, fromEnv.AutoProvision)
	fromEnv.AutoProvision = false // a bool built in code is never "unset"
	require.Equal(t, fromEnv, jwtauth.Config{}.WithDefaults())
}
