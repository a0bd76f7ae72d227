package worker

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/envconfig"
)

// The per-kind variables are named for the registry's kinds and override the
// worker-wide ones for their kind only.
func TestKindConfig(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"WORKER_CONCURRENCY": "10", "WORKER_SMTP_CONCURRENCY": "3", "WORKER_SANDBOX_CONCURRENCY": "7",
		"WORKER_PROVIDER_RATE": "5", "WORKER_SES_PROVIDER_RATE": "14", "WORKER_GMAIL_PROVIDER_RATE": "0.5",
	}
	var c Config
	require.NoError(t, envconfig.LoadFrom(&c, func(k string) (string, bool) { v, ok := env[k]; return v, ok }))
	for kind, want := range map[string]int{"smtp": 3, "sandbox": 7, "ses": 10, "gmail": 10} {
		require.Equal(t, want, c.kindConcurrency(kind), kind)
	}
	for kind, want := range map[string]float64{"smtp": 5, "sandbox": 5, "ses": 14, "gmail": 0.5} {
		require.Equal(t, want, c.kindProviderRate(kind), kind)
	}
	require.Empty(t, c.Providers, "unset: every kind the worker has a sender for")
	require.Positive(t, c.AccountRate, "WORKER_ACCOUNT_RATE limits each account by default")
	require.NoError(t, c.validate())

	var names []string
	for _, v := range envconfig.Describe(&c) {
		names = append(names, v.Name)
	}
	for _, name := range []string{"WORKER_SMTP_CONCURRENCY", "WORKER_SES_CONCURRENCY", "WORKER_GMAIL_CONCURRENCY", "WORKER_SANDBOX_CONCURRENCY",
		"WORKER_SMTP_PROVIDER_RATE", "WORKER_SES_PROVIDER_RATE", "WORKER_GMAIL_PROVIDER_RATE", "WORKER_SANDBOX_PROVIDER_RATE"} {
		require.Contains(t, names, name)
	}

	env["WORKER_SES_CONCURRENCY"] = "many"
	require.Error(t, envconfig.LoadFrom(&c, func(k string) (string, bool) { v, ok := env[k]; return v, ok }))
	require.ErrorContains(t, Config{Providers: []string{"carrier-pigeon"}, AmbiguousPolicy: AmbiguousFail}.validate(), "carrier-pigeon")
}
