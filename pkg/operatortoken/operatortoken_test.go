package operatortoken_test

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/operatortoken"
)

func TestParseAndMatch(t *testing.T) {
	h := sha256.Sum256([]byte("s3cret"))
	tokens, err := operatortoken.Parse(" alice:" + hex.EncodeToString(h[:]) + ", ,")
	require.NoError(t, err)
	require.Len(t, tokens, 1)
	require.Equal(t, "alice", operatortoken.Match(tokens, "s3cret"))
	require.Empty(t, operatortoken.Match(tokens, "other"))
	require.Empty(t, operatortoken.Match(tokens, ""))
	for _, bad := range []string{"alice", ":" + hex.EncodeToString(h[:]), "alice:abcd", "alice:zz"} {
		_, err := operatortoken.Parse(bad)
		require.Error(t, err, bad)
	}
}
