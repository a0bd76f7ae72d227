package send_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/services/ingest/send"
)

// The defaults of a config built in code are the env tags' (WithDefaults
// names every field with one).
func TestConfigDefaultsAreTheTags(t *testing.T) {
	t.Parallel()
	var fromEnv send.Config
	require.NoError(t, envconfig.LoadFrom(&fromEnv, func(string) (string, bool) { return "", false }))
	require.Equal(t, fromEnv, send.Config{}.WithDefaults())
	require.NoError(t, fromEnv.Validate())
}

func TestLookupCacheTTLNegativeDisables(t *testing.T) {
	t.Parallel()
	require.Equal(t, time.Minute, send.Config{}.WithDefaults().LookupCacheTTL)
	require.Equal(t, -time.Nanosecond, send.Config{LookupCacheTTL: -1}.WithDefaults().LookupCacheTTL)
}
