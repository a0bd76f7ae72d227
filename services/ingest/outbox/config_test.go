package outbox_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/services/ingest/outbox"
)

func noEnv(string) (string, bool) { return "", false }

// The defaults of a config built in code are the env tags' (WithDefaults
// names every field).
func TestConfigDefaultsAreTheTags(t *testing.T) {
	t.Parallel()
	var relay outbox.RelayConfig
	require.NoError(t, envconfig.LoadFrom(&relay, noEnv))
	require.Equal(t, relay, outbox.RelayConfig{}.WithDefaults())
	require.NoError(t, relay.Validate())

	var del outbox.DeleterConfig
	require.NoError(t, envconfig.LoadFrom(&del, noEnv))
	require.Equal(t, del, outbox.DeleterConfig{}.WithDefaults())
	require.NoError(t, del.Validate())
}

func TestRelayGraceZeroIsDefaultNegativeIsNone(t *testing.T) {
	t.Parallel()
	require.Equal(t, 5*time.Second, outbox.RelayConfig{}.WithDefaults().Grace)
	require.Equal(t, -time.Nanosecond, outbox.RelayConfig{Grace: -1}.WithDefaults().Grace, "a negative grace (none) is kept")
	require.Equal(t, time.Hour, outbox.RelayConfig{Grace: time.Hour}.WithDefaults().Grace)
}

func TestConfigValidateNamesTheVariable(t *testing.T) {
	t.Parallel()
	require.ErrorContains(t, outbox.RelayConfig{}.Validate(), "OUTBOX_INTERVAL")
	require.ErrorContains(t, outbox.DeleterConfig{Interval: time.Second, Batch: 1}.Validate(), "OUTBOX_DELETE_QUEUE")
}
