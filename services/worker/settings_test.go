package worker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/services/worker/delivery"
)

// The worker's Config reaches the deliveries whole: every bound and the
// ambiguous policy.
func TestDeliverySettings(t *testing.T) {
	t.Parallel()
	cfg, err := Config{}.WithDefaults()
	require.NoError(t, err)
	require.Equal(t, delivery.Settings{MaxAttempts: 8, MaxAge: 24 * time.Hour, BackoffBase: 30 * time.Second, BackoffMax: time.Hour,
		AckWait: 30 * time.Second, SendTimeout: 2 * time.Minute, FailoverAfter: 3}, cfg.deliverySettings())
	cfg.AmbiguousPolicy = AmbiguousRetry
	require.True(t, cfg.deliverySettings().RetryAmbiguous)
}
