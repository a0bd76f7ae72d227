package client

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/credentials"
)

// TokenSource gives the bearer token of a call. Token is called for every
// call, so an implementation caches and refreshes its token itself.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// TokenSourceFunc adapts a function to TokenSource.
type TokenSourceFunc func(ctx context.Context) (string, error)

// Token calls f.
func (f TokenSourceFunc) Token(ctx context.Context) (string, error) { return f(ctx) }

type staticToken string

func (s staticToken) Token(context.Context) (string, error) { return string(s), nil }

// bearer puts "authorization: Bearer <token>" on every call.
type bearer struct {
	ts         TokenSource
	requireTLS bool
}

var _ credentials.PerRPCCredentials = (*bearer)(nil)

func (b *bearer) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	tok, err := b.ts.Token(ctx)
	if err != nil {
		// The token source's error, never the token.
		return nil, fmt.Errorf("token source: %w", err)
	}
	if tok == "" {
		return nil, errors.New("token source: empty token")
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

// RequireTransportSecurity is false only for WithInsecure, where the caller
// chose plaintext.
func (b *bearer) RequireTransportSecurity() bool { return b.requireTLS }
