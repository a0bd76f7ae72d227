package validate

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/envconfig"
)

// The defaults of limits built in code are the env tags' (WithDefaults names
// every field).
func TestLimitsDefaultsAreTheTags(t *testing.T) {
	t.Parallel()
	var fromEnv Limits
	require.NoError(t, envconfig.LoadFrom(&fromEnv, func(string) (string, bool) { return "", false }))
	require.Equal(t, fromEnv, Limits{}.WithDefaults())
	require.NoError(t, fromEnv.Validate())
	require.Equal(t, 10<<20, fromEnv.MaxMessageBytes)
	require.Equal(t, 30*24*time.Hour, fromEnv.MaxScheduleAhead)
}

func TestLimitsValidateNamesTheVariable(t *testing.T) {
	t.Parallel()
	l := Limits{}.WithDefaults()
	l.MaxAttachmentBytes = l.MaxMessageBytes + 1
	require.ErrorContains(t, l.Validate(), "MAX_ATTACHMENT_BYTES")
	require.ErrorContains(t, Limits{}.Validate(), "MAX_MESSAGE_BYTES")
}
