package auth_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/auth"
)

type staticAuth map[string]auth.Principal

func (s staticAuth) Authenticate(_ context.Context, token string) (auth.Principal, error) {
	p, ok := s[token]
	if !ok {
		return auth.Principal{}, auth.ErrUnauthenticated
	}
	return p, nil
}

func TestInterceptorScopes(t *testing.T) {
	t.Parallel()
	keys := staticAuth{
		"send":  {AccountID: "a", KeyID: "1", Scopes: []string{auth.ScopeSend}},
		"read":  {AccountID: "a", KeyID: "2", Scopes: []string{auth.ScopeRead}},
		"admin": {AccountID: "a", KeyID: "3", Scopes: []string{auth.ScopeAdmin}},
		"none":  {AccountID: "a", KeyID: "4", Scopes: []string{}},
	}
	scopes := map[string]string{"/svc/Send": auth.ScopeSend, "/svc/Read": auth.ScopeRead}
	ic := auth.Interceptor(keys, scopes)
	call := func(token, method string) codes.Code {
		ctx := context.Background()
		if token != "" {
			ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+token))
		}
		_, err := ic(ctx, nil, &grpc.UnaryServerInfo{FullMethod: method}, func(ctx context.Context, _ any) (any, error) {
			p, ok := auth.FromContext(ctx)
			require.True(t, ok)
			require.Equal(t, "a", p.AccountID)
			return nil, nil
		})
		return status.Code(err)
	}
	tests := []struct {
		token, method string
		want          codes.Code
	}{
		{"send", "/svc/Send", codes.OK},
		{"send", "/svc/Read", codes.PermissionDenied},
		{"read", "/svc/Read", codes.OK},
		{"read", "/svc/Send", codes.PermissionDenied},
		{"admin", "/svc/Send", codes.OK},
		{"admin", "/svc/Unlisted", codes.OK},
		{"send", "/svc/Unlisted", codes.PermissionDenied}, // unlisted methods need admin
		{"read", "/svc/Unlisted", codes.PermissionDenied},
		{"none", "/svc/Read", codes.PermissionDenied},
		{"bogus", "/svc/Read", codes.Unauthenticated},
		{"", "/svc/Read", codes.Unauthenticated},
		{"", "/grpc.health.v1.Health/Check", codes.OK},
	}
	for _, tt := range tests {
		if tt.token == "" && tt.want == codes.OK {
			// Public: the handler sees no principal.
			_, err := ic(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: tt.method}, func(context.Context, any) (any, error) { return nil, nil })
			require.NoError(t, err)
			continue
		}
		require.Equal(t, tt.want, call(tt.token, tt.method), "%s %s", tt.token, tt.method)
	}
	require.Equal(t, auth.ScopeAdmin, auth.RequiredScope(scopes, "/svc/New"))
}
