package jwtauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"sync"
	"time"
)

// ErrUnknownKey means the token's kid is not in the key set, even after a
// refresh (or a refresh was not allowed yet).
var ErrUnknownKey = errors.New("unknown signing key")

// ErrJWKSUnavailable means the key set could never be fetched.
var ErrJWKSUnavailable = errors.New("jwks unavailable")

// publicKey is one usable key of the set: its algorithm is fixed by its type.
type publicKey struct {
	alg string // "RS256" or "ES256"
	key crypto.PublicKey
}

// KeySet is a cached JWKS fetched from a URL.
type KeySet struct {
	url        string
	client     *http.Client
	refresh    time.Duration
	minRefresh time.Duration
	now        func() time.Time
	log        *slog.Logger

	mu          sync.Mutex
	keys        map[string]publicKey
	fetched     time.Time     // last successful fetch
	lastAttempt time.Time     // last fetch started
	inflight    chan struct{} // closed when the running fetch ends; nil when none runs
}

// NewKeySet returns a key set that fetches url with client (http.DefaultClient
// with a 5 s timeout when nil). Nothing is fetched until the first Key.
func NewKeySet(url string, client *http.Client, refresh, minRefresh time.Duration, log *slog.Logger) *KeySet {
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &KeySet{url: url, client: client, refresh: refresh, minRefresh: minRefresh, now: time.Now, log: log}
}

// Key returns the key named kid. A stale set, or a kid it does not know, makes
// it fetch the set again, unless the last fetch started less than minRefresh
// ago. Concurrent callers share one fetch.
func (s *KeySet) Key(ctx context.Context, kid string) (publicKey, error) {
	for tries := 0; ; tries++ {
		s.mu.Lock()
		now := s.now()
		k, known := s.keys[kid]
		fresh := !s.fetched.IsZero() && now.Sub(s.fetched) < s.refresh
		if known && fresh {
			s.mu.Unlock()
			return k, nil
		}
		mayFetch := s.lastAttempt.IsZero() || now.Sub(s.lastAttempt) >= s.minRefresh
		if known {
			// A stale set: answer from it and refresh in the background, so a
			// slow or unreachable JWKS endpoint does not stall calls.
			if mayFetch && s.inflight == nil {
				s.inflight = make(chan struct{})
				s.lastAttempt = now
				go s.fetch(ctx, s.inflight)
			}
			s.mu.Unlock()
			return k, nil
		}
		if tries > 0 || (!mayFetch && s.inflight == nil) {
			// Nothing more to learn: answer from what we have.
			haveKeys := s.keys != nil
			s.mu.Unlock()
			switch {
			case !haveKeys:
				return publicKey{}, ErrJWKSUnavailable
			default:
				return publicKey{}, ErrUnknownKey
			}
		}
		wait := s.inflight
		if wait == nil {
			wait = make(chan struct{})
			s.inflight = wait
			s.lastAttempt = now
			go s.fetch(ctx, wait)
		}
		s.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return publicKey{}, ctx.Err()
		}
	}
}

// fetch loads the set and closes done. The fetch outlives the caller's
// cancellation: other callers may be waiting for it.
func (s *KeySet) fetch(ctx context.Context, done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	keys, err := s.load(ctx)
	s.mu.Lock()
	if err != nil {
		s.log.WarnContext(ctx, "jwks fetch", "url", s.url, "error", err)
	} else {
		s.keys, s.fetched = keys, s.now()
	}
	s.inflight = nil
	s.mu.Unlock()
	close(done)
}

const maxJWKSBytes = 1 << 20

func (s *KeySet) load(ctx context.Context) (map[string]publicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get jwks: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get jwks: status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read jwks: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return nil, errors.New("jwks larger than 1 MiB")
	}
	return ParseJWKS(body)
}

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// ParseJWKS returns the usable signature keys of a JWKS document by kid: RSA
// keys of at least 2048 bits (RS256) and P-256 EC keys (ES256). Keys without a
// kid, for encryption, of other types or for other algorithms are skipped; a
// set with no usable key is an error.
func ParseJWKS(doc []byte) (map[string]publicKey, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		return nil, fmt.Errorf("parse jwks: %w", err)
	}
	out := map[string]publicKey{}
	for _, k := range set.Keys {
		if k.Kid == "" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		pk, err := k.publicKey()
		if err != nil {
			continue
		}
		out[k.Kid] = pk
	}
	if len(out) == 0 {
		return nil, errors.New("parse jwks: no usable RS256 or ES256 key")
	}
	return out, nil
}

func (k jwk) publicKey() (publicKey, error) {
	switch k.Kty {
	case "RSA":
		if k.Alg != "" && k.Alg != "RS256" {
			return publicKey{}, fmt.Errorf("rsa key for %q", k.Alg)
		}
		n, err := b64int(k.N)
		if err != nil {
			return publicKey{}, err
		}
		e, err := b64int(k.E)
		if err != nil {
			return publicKey{}, err
		}
		if n.BitLen() < 2048 || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 || e.Bit(0) == 0 {
			return publicKey{}, errors.New("weak or malformed rsa key")
		}
		return publicKey{alg: "RS256", key: &rsa.PublicKey{N: n, E: int(e.Int64())}}, nil
	case "EC":
		if k.Crv != "P-256" || (k.Alg != "" && k.Alg != "ES256") {
			return publicKey{}, fmt.Errorf("ec key %s for %q", k.Crv, k.Alg)
		}
		x, err := b64bytes(k.X)
		if err != nil {
			return publicKey{}, err
		}
		y, err := b64bytes(k.Y)
		if err != nil {
			return publicKey{}, err
		}
		if len(x) != 32 || len(y) != 32 {
			return publicKey{}, errors.New("malformed p-256 coordinates")
		}
		// The uncompressed point encoding; ParseUncompressedPublicKey checks
		// that the point is on the curve.
		pt := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pt)
		if err != nil {
			return publicKey{}, err
		}
		return publicKey{alg: "ES256", key: pub}, nil
	default:
		return publicKey{}, fmt.Errorf("key type %q", k.Kty)
	}
}

func b64bytes(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("empty key parameter")
	}
	return base64.RawURLEncoding.DecodeString(s)
}

func b64int(s string) (*big.Int, error) {
	b, err := b64bytes(s)
	if err != nil {
		return nil, err
	}
	return new(big.Int).SetBytes(b), nil
}
