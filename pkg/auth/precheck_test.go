package auth_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/auth"
)

// Precheck refuses, on metadata alone, what can never authenticate.
func TestPrecheck(t *testing.T) {
	t.Parallel()
	key, _, _, err := auth.NewKey()
	require.NoError(t, err)
	jwt := "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
	for name, tt := range map[string]struct {
		md metadata.MD
		ok bool
	}{
		"api key":           {metadata.Pairs("authorization", "Bearer "+key), true},
		"jwt":               {metadata.Pairs("authorization", "bearer "+jwt), true},
		"none":              {metadata.MD{}, false},
		"not bearer":        {metadata.Pairs("authorization", "Basic "+key), false},
		"empty token":       {metadata.Pairs("authorization", "Bearer  "), false},
		"short key":         {metadata.Pairs("authorization", "Bearer es_nonsense"), false},
		"key with bad char": {metadata.Pairs("authorization", "Bearer "+key[:len(key)-1]+"1"), false},
		"two parts":         {metadata.Pairs("authorization", "Bearer a.b"), false},
		"huge jwt":          {metadata.Pairs("authorization", "Bearer "+strings.Repeat("a", 9<<10)+".b.c"), false},
		"jwt with spaces":   {metadata.Pairs("authorization", "Bearer a b.c.d"), false},
	} {
		_, err := auth.Precheck(tt.md)
		if tt.ok {
			require.NoError(t, err, name)
		} else {
			require.Equal(t, codes.Unauthenticated, status.Code(err), name)
		}
	}
}
