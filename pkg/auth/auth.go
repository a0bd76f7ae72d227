// Package auth identifies the account behind a gRPC call from its bearer token
// (an API key, stored only as a SHA-256 hash) and checks the scope the method
// needs.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Scopes.
const (
	ScopeSend  = "send"
	ScopeRead  = "read"
	ScopeAdmin = "admin"
)

// Principal is who is calling.
type Principal struct {
	AccountID string
	// KeyID is the API key's id; empty for a Namirasoft Account token.
	KeyID string
	// Subject is a Namirasoft Account token's "sub" claim; empty for an API key.
	Subject string
	Scopes  []string
}

// Has reports whether p holds scope (admin holds every scope).
func (p Principal) Has(scope string) bool {
	for _, s := range p.Scopes {
		if s == scope || s == ScopeAdmin {
			return true
		}
	}
	return false
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the caller set by the interceptor.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

const keyPrefix = "es_"

var enc = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewKey makes a new API key. The key is shown to its owner once; only hash is
// stored; prefix identifies it in lists.
func NewKey() (key, prefix string, hash []byte, err error) {
	var b [25]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", nil, fmt.Errorf("random key: %w", err)
	}
	key = keyPrefix + strings.ToLower(enc.EncodeToString(b[:]))
	return key, key[:len(keyPrefix)+8], Hash(key), nil
}

// Hash is the stored form of a key.
func Hash(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

// ErrUnauthenticated means the token is missing, unknown, revoked or expired.
var ErrUnauthenticated = errors.New("unauthenticated")

// KeyStore looks API keys up in PostgreSQL, with a short cache so that a busy
// client costs one query per TTL rather than per call.
//
// Valid keys and refused tokens are cached apart: refused tokens (anyone can
// make up millions) go into a bounded negative cache that is emptied when
// full, which can never evict a valid key; valid keys are bounded by the keys
// that exist. A token that is not shaped like a key is refused without a
// query. A cached key is used no longer than its expires_at.
type KeyStore struct {
	pool *pgxpool.Pool
	ttl  time.Duration
	now  func() time.Time

	mu sync.Mutex
	// valid maps a key's hash to its principal.
	valid map[string]cachedKey
	// refused holds hashes of tokens that matched no usable key.
	refused map[string]time.Time
	// gen changes whenever the cache is emptied (revocation.go): a lookup that
	// started before is not cached.
	gen  uint64
	feed feedRef
}

// maxRefused bounds the negative cache.
const maxRefused = 100_000

type cachedKey struct {
	p Principal
	// until is the earlier of the cache TTL and the key's expiry.
	until time.Time
}

// NewKeyStore returns a store; ttl 0 disables caching (revocations then take
// effect on the next call).
func NewKeyStore(pool *pgxpool.Pool, ttl time.Duration) *KeyStore {
	return &KeyStore{pool: pool, ttl: ttl, now: time.Now, valid: map[string]cachedKey{}, refused: map[string]time.Time{}}
}

// keyLen is the length of a key made by NewKey: the prefix and 25 random
// bytes in unpadded base32.
var keyLen = len(keyPrefix) + enc.EncodedLen(25)

// wellFormed reports whether token could be a key made by NewKey.
func wellFormed(token string) bool {
	if len(token) != keyLen || !strings.HasPrefix(token, keyPrefix) {
		return false
	}
	for i := len(keyPrefix); i < len(token); i++ {
		if c := token[i]; !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// Authenticate returns the principal of an API key.
func (s *KeyStore) Authenticate(ctx context.Context, token string) (Principal, error) {
	if !wellFormed(token) {
		return Principal{}, ErrUnauthenticated
	}
	h := string(Hash(token))
	now := s.now()
	cache := s.cacheable()
	if cache {
		s.mu.Lock()
		c, ok := s.valid[h]
		refusedUntil, refused := s.refused[h]
		s.mu.Unlock()
		if ok && now.Before(c.until) {
			return c.p, nil
		}
		if refused && now.Before(refusedUntil) {
			return Principal{}, ErrUnauthenticated
		}
	}
	gen := s.generation()
	p, expires, err := s.lookup(ctx, []byte(h), now)
	if err != nil && !errors.Is(err, ErrUnauthenticated) {
		return Principal{}, err
	}
	if cache {
		s.mu.Lock()
		if s.gen == gen {
			if err != nil {
				if len(s.refused) >= maxRefused {
					clear(s.refused)
				}
				s.refused[h] = now.Add(s.ttl)
			} else {
				until := now.Add(s.ttl)
				if !expires.IsZero() && expires.Before(until) {
					until = expires
				}
				s.valid[h] = cachedKey{p: p, until: until}
				delete(s.refused, h)
			}
		}
		s.mu.Unlock()
	}
	return p, err
}

func (s *KeyStore) lookup(ctx context.Context, hash []byte, now time.Time) (Principal, time.Time, error) {
	var (
		p       Principal
		expires *time.Time
	)
	err := s.pool.QueryRow(ctx, `
		SELECT id::text, account_id::text, scopes, expires_at FROM api_keys
		WHERE hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)`,
		hash, now).Scan(&p.KeyID, &p.AccountID, &p.Scopes, &expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return Principal{}, time.Time{}, ErrUnauthenticated
	}
	if err != nil {
		return Principal{}, time.Time{}, fmt.Errorf("look up api key: %w", err)
	}
	if expires != nil {
		return p, *expires, nil
	}
	return p, time.Time{}, nil
}

// Authenticator turns a bearer token into a principal.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Principal, error)
}

// Interceptor returns a unary interceptor that authenticates every call except
// those of the health and reflection services, and checks the scope that
// scopes[fullMethod] names (methods not listed need ScopeAdmin). It is
// Authenticate followed by Authorize; services that run interceptors between
// the two (usage records) chain those instead.
func Interceptor(a Authenticator, scopes map[string]string) grpc.UnaryServerInterceptor {
	authn, authz := Authenticate(a), Authorize(scopes)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return authn(ctx, req, info, func(ctx context.Context, req any) (any, error) {
			return authz(ctx, req, info, handler)
		})
	}
}

// Authenticate returns a unary interceptor that identifies the caller of every
// call except those of the health and reflection services (UNAUTHENTICATED
// when it cannot) and puts the Principal in the handler's context.
func Authenticate(a Authenticator) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if IsPublic(info.FullMethod) {
			return handler(ctx, req)
		}
		p, err := principal(ctx, a)
		if err != nil {
			return nil, err
		}
		return handler(WithPrincipal(ctx, p), req)
	}
}

// Authorize returns a unary interceptor, chained after Authenticate, that
// checks the scope scopes[fullMethod] names; a method not listed needs
// ScopeAdmin, so a method added without a scope is closed by default.
func Authorize(scopes map[string]string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if IsPublic(info.FullMethod) {
			return handler(ctx, req)
		}
		p, ok := FromContext(ctx)
		if !ok {
			return nil, status.Error(codes.Unauthenticated, "no authenticated caller")
		}
		need := RequiredScope(scopes, info.FullMethod)
		if !p.Has(need) {
			return nil, status.Errorf(codes.PermissionDenied, "the credential lacks the %q scope", need)
		}
		return handler(ctx, req)
	}
}

// RequiredScope is the scope method needs under scopes: ScopeAdmin when it is
// not listed.
func RequiredScope(scopes map[string]string, method string) string {
	if need, ok := scopes[method]; ok {
		return need
	}
	return ScopeAdmin
}

func principal(ctx context.Context, a Authenticator) (Principal, error) {
	// The one key, not a copy of the whole metadata (FromIncomingContext).
	token, err := BearerToken(metadata.ValueFromIncomingContext(ctx, "authorization"))
	if err != nil {
		return Principal{}, err
	}
	p, err := a.Authenticate(ctx, token)
	if errors.Is(err, ErrUnauthenticated) {
		return Principal{}, status.Error(codes.Unauthenticated, "invalid, revoked or expired API key or token")
	}
	if errors.Is(err, ErrThrottled) {
		return Principal{}, status.Error(codes.ResourceExhausted, "too many failed authentications from this address; retry in a minute")
	}
	if err != nil {
		return Principal{}, status.Error(codes.Unavailable, "authentication backend unavailable")
	}
	return p, nil
}

// IsPublic reports whether method is served without credentials: the health
// and reflection services.
func IsPublic(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.") || strings.HasPrefix(method, "/grpc.reflection.")
}
