package report

import (
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func TestClean(t *testing.T) {
	t.Parallel()
	require.Equal(t, "ab", clean("a\x00b", 10))
	cut := clean("héllo", 2) // 'é' is two bytes: cut before it
	require.Equal(t, "h", cut)
	require.True(t, utf8.ValidString(cut))
}

func TestCursorRoundTrip(t *testing.T) {
	t.Parallel()
	id := uuid.Must(uuid.NewV7()).String()
	got, err := decodeCursor(encodeCursor(id))
	require.NoError(t, err)
	require.Equal(t, id, got)
	for _, bad := range []string{"", "!!", "AQ", encodeCursor(id)[:10]} {
		_, err := decodeCursor(bad)
		require.Error(t, err, bad)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, Config{}.WithDefaults().validate())
	cfg := Config{BatchSize: 100, MaxAckPending: 150}.WithDefaults()
	require.ErrorContains(t, cfg.validate(), "max ack pending")
	cfg = Config{ApplyTimeout: 30 * time.Second, AckWait: 30 * time.Second}.WithDefaults()
	require.ErrorContains(t, cfg.validate(), "apply timeout")
}
