package auth

import (
	"context"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// maxJWTBytes is the largest token shaped like a JWT that Precheck lets
// through (pkg/jwtauth refuses larger ones too).
const maxJWTBytes = 8 << 10

// BearerToken is the token of an "authorization: Bearer <token>" value, or
// an UNAUTHENTICATED status saying what is wrong with it.
func BearerToken(values []string) (string, error) {
	if len(values) == 0 {
		return "", status.Error(codes.Unauthenticated, "missing authorization metadata: send \"authorization: Bearer <api key or token>\"")
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "bearer") || token == "" {
		return "", status.Error(codes.Unauthenticated, "authorization must be \"Bearer <api key or token>\"")
	}
	return token, nil
}

// WellFormed reports whether token could be a credential at all: an API key
// as NewKey makes them, or three dot-separated base64url parts of at most
// 8 KiB (a JWT). It is cheap: a check before anything else is read.
func WellFormed(token string) bool {
	if strings.HasPrefix(token, keyPrefix) {
		return wellFormed(token)
	}
	if len(token) > maxJWTBytes || strings.Count(token, ".") != 2 {
		return false
	}
	for i := 0; i < len(token); i++ {
		c := token[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// Precheck is the check of a call's credentials that can be made on its
// metadata alone, before its request is read: the token is there and well
// formed (WellFormed). The interceptor (Authenticate) still authenticates it.
func Precheck(md metadata.MD) (token string, err error) {
	token, err = BearerToken(md.Get("authorization"))
	if err != nil {
		return "", err
	}
	if !WellFormed(token) {
		return "", status.Error(codes.Unauthenticated, "invalid, revoked or expired API key or token")
	}
	return token, nil
}

// Cached is what the key cache knows of token without a lookup.
type Cached int

// What the key cache knows.
const (
	CachedUnknown Cached = iota
	CachedValid
	CachedRefused
)

// Cached reports what the cache knows of token, without looking it up: it
// is cheap enough to run before a call's request is read.
func (s *KeyStore) Cached(token string) Cached {
	if !wellFormed(token) {
		return CachedRefused
	}
	if !s.cacheable() {
		return CachedUnknown
	}
	h := string(Hash(token))
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.valid[h]; ok && now.Before(c.until) {
		return CachedValid
	}
	if until, ok := s.refused[h]; ok && now.Before(until) {
		return CachedRefused
	}
	return CachedUnknown
}

// Identify authenticates the call of ctx (its incoming "authorization"
// metadata) with a; errors are gRPC statuses (UNAUTHENTICATED, or
// RESOURCE_EXHAUSTED when throttled, or UNAVAILABLE).
func Identify(ctx context.Context, a Authenticator) (Principal, error) {
	return principal(ctx, a)
}
