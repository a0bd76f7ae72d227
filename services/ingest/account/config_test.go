package account_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/services/ingest/account"
)

// The defaults of a config built in code are the env tags' (WithDefaults
// names every field with one).
func TestConfigDefaultsAreTheTags(t *testing.T) {
	t.Parallel()
	var fromEnv account.Config
	require.NoError(t, envconfig.LoadFrom(&fromEnv, func(string) (string, bool) { return "", false }))
	require.Equal(t, fromEnv, account.Config{}.WithDefaults())
	require.NoError(t, fromEnv.Validate())
}

func TestConfigValidateNamesTheVariable(t *testing.T) {
	t.Parallel()
	require.ErrorContains(t, account.Config{}.Validate(), "SENDER_CODE_TTL")
	c := account.Config{VerificationFrom: "not an address"}.WithDefaults()
	require.ErrorContains(t, c.Validate(), "VERIFICATION_FROM")
	c.VerificationFrom = "verify@example.com"
	require.NoError(t, c.Validate())
}
