// Package jwttest is a stand-in for Namirasoft Account in tests: a local JWKS
// HTTP server over freshly generated RSA and P-256 keys, and real signed
// tokens, good and bad.
package jwttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/namirasoft/email-sender/pkg/jwtauth"
)

// Issuer signs tokens and serves the JWKS of its published keys.
type Issuer struct {
	// JWKSURL serves {"keys": [...]} of the published keys.
	JWKSURL string
	// Name is the iss of the tokens; Audience their aud.
	Name, Audience string
	// Fetches counts JWKS requests.
	Fetches atomic.Int64

	mu        sync.Mutex
	keys      map[string]any // kid -> *rsa.PrivateKey or *ecdsa.PrivateKey
	published []string
}

// Default key ids, published from the start.
const (
	RSAKey = "rsa-1"
	ECKey  = "ec-1"
)

// New starts the JWKS server, closed in t.Cleanup, with RSAKey and ECKey published.
func New(t testing.TB) *Issuer {
	t.Helper()
	i := &Issuer{Name: "https://account.namirasoft.test", Audience: "email-sender", keys: map[string]any{}}
	i.AddKey(t, RSAKey, "RSA")
	i.AddKey(t, ECKey, "EC")
	i.Publish(RSAKey, ECKey)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i.Fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(i.jwks())
	}))
	t.Cleanup(srv.Close)
	i.JWKSURL = srv.URL + "/.well-known/jwks.json"
	return i
}

// Config is a jwtauth configuration trusting this issuer (auto-provisioning on,
// refresh rate limit low enough for rotation tests).
func (i *Issuer) Config() jwtauth.Config {
	return jwtauth.Config{
		JWKSURL: i.JWKSURL, Issuer: i.Name, Audience: i.Audience,
		JWKSMinRefresh: 50 * time.Millisecond, AutoProvision: true,
	}
}

// AddKey generates a key ("RSA" 2048 bits or "EC" P-256) named kid, not
// published yet.
func (i *Issuer) AddKey(t testing.TB, kid, kty string) {
	t.Helper()
	var k any
	var err error
	switch kty {
	case "RSA":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "EC":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		err = fmt.Errorf("key type %q", kty)
	}
	if err != nil {
		t.Fatalf("jwttest: generate key: %v", err)
	}
	i.mu.Lock()
	i.keys[kid] = k
	i.mu.Unlock()
}

// Publish adds keys to the served JWKS.
func (i *Issuer) Publish(kids ...string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.published = append(i.published, kids...)
}

// Unpublish removes a key from the served JWKS (it can still sign).
func (i *Issuer) Unpublish(kid string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.published = slices.DeleteFunc(i.published, func(k string) bool { return k == kid })
}

// Claims are valid claims for account with scope ("" leaves the scope claim out).
func (i *Issuer) Claims(account, scope string) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"iss": i.Name, "aud": i.Audience, "sub": "notification-sender",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
		"account_id": account,
	}
	if scope != "" {
		c["scope"] = scope
	}
	return c
}

// Sign signs claims with the key kid, RS256 for RSA keys and ES256 for EC keys.
func (i *Issuer) Sign(t testing.TB, kid string, claims jwt.MapClaims) string {
	t.Helper()
	i.mu.Lock()
	k := i.keys[kid]
	i.mu.Unlock()
	var m jwt.SigningMethod
	switch k.(type) {
	case *rsa.PrivateKey:
		m = jwt.SigningMethodRS256
	case *ecdsa.PrivateKey:
		m = jwt.SigningMethodES256
	default:
		t.Fatalf("jwttest: no key %q", kid)
	}
	tok := jwt.NewWithClaims(m, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatalf("jwttest: sign: %v", err)
	}
	return s
}

// SignAs signs claims with the key signer but names kid in the header: a
// signature by a key other than the one the kid names.
func (i *Issuer) SignAs(t testing.TB, signer, kid string, claims jwt.MapClaims) string {
	t.Helper()
	i.mu.Lock()
	k := i.keys[signer]
	i.mu.Unlock()
	m := jwt.SigningMethod(jwt.SigningMethodRS256)
	if _, ok := k.(*ecdsa.PrivateKey); ok {
		m = jwt.SigningMethodES256
	}
	tok := jwt.NewWithClaims(m, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatalf("jwttest: sign: %v", err)
	}
	return s
}

// None is an unsigned token ("alg": "none") naming kid.
func None(t testing.TB, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodNone, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatalf("jwttest: none token: %v", err)
	}
	return s
}

// HS256WithPublicKey is the algorithm-confusion attack: an HS256 token whose
// HMAC secret is the public key of kid (PEM, as a naive verifier would load it).
func (i *Issuer) HS256WithPublicKey(t testing.TB, kid string, claims jwt.MapClaims) string {
	t.Helper()
	i.mu.Lock()
	k := i.keys[kid]
	i.mu.Unlock()
	var pub any
	switch k := k.(type) {
	case *rsa.PrivateKey:
		pub = &k.PublicKey
	case *ecdsa.PrivateKey:
		pub = &k.PublicKey
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatalf("jwttest: marshal public key: %v", err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(secret)
	if err != nil {
		t.Fatalf("jwttest: hs256: %v", err)
	}
	return s
}

func (i *Issuer) jwks() map[string]any {
	i.mu.Lock()
	defer i.mu.Unlock()
	b64 := base64.RawURLEncoding.EncodeToString
	var keys []map[string]string
	for _, kid := range i.published {
		switch k := i.keys[kid].(type) {
		case *rsa.PrivateKey:
			keys = append(keys, map[string]string{
				"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
				"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes()),
			})
		case *ecdsa.PrivateKey:
			pt, err := k.PublicKey.Bytes() // 0x04 || X || Y
			if err != nil {
				continue
			}
			keys = append(keys, map[string]string{
				"kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256",
				"x": b64(pt[1:33]), "y": b64(pt[33:]),
			})
		}
	}
	return map[string]any{"keys": keys}
}
