package apigate_test

import (
	"testing"

	"github.com/namirasoft/email-sender/pkg/apigate"
	"github.com/namirasoft/email-sender/pkg/envconfig"
)

// A process started without any setting is limited: a per-account call rate,
// a daily quota and a throttle on failed authentication per address.
func TestSecureDefaults(t *testing.T) {
	var c apigate.Config
	if err := envconfig.LoadFrom(&c, func(string) (string, bool) { return "", false }); err != nil {
		t.Fatal(err)
	}
	if c.Limits.RateDefault <= 0 {
		t.Errorf("RATE_LIMIT_DEFAULT defaults to %d: unlimited", c.Limits.RateDefault)
	}
	if c.Limits.DailyQuotaDefault <= 0 {
		t.Errorf("DAILY_QUOTA_DEFAULT defaults to %d: unlimited", c.Limits.DailyQuotaDefault)
	}
	if c.Throttle.PerMinute <= 0 || c.Throttle.Burst <= 0 {
		t.Errorf("failed authentication is not throttled by default: %+v", c.Throttle)
	}
	if c.JWT.MaxLifetime <= 0 {
		t.Errorf("JWT_MAX_LIFETIME defaults to %s", c.JWT.MaxLifetime)
	}
}
