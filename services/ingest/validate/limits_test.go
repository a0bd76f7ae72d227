package validate

import (
	"reflect"
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

// unset notices any zero limit: SendEmail then fills the defaults, which it
// skips (reflection) for the configured limits of a server.
func TestLimitsUnsetNoticesEveryField(t *testing.T) {
	t.Parallel()
	full := Limits{}.WithDefaults()
	require.False(t, full.unset())
	v := reflect.ValueOf(&full).Elem()
	for i := range v.NumField() {
		l := full
		reflect.ValueOf(&l).Elem().Field(i).SetZero()
		require.True(t, l.unset(), "%s zero", v.Type().Field(i).Name)
	}
}
