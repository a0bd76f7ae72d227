package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// Mistakes in calling watch and webhooks are usage errors (exit 1), found
// before anything connects.
func TestWatchAndWebhooksUsage(t *testing.T) {
	env := map[string]string{"EMAILSENDER_ADDR": "127.0.0.1:1", "EMAILSENDER_API_KEY": "es_x", "HOME": t.TempDir()}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"watch", "extra"}, "takes no arguments"},
		{[]string{"watch", "--cursor", "c", "--from-start"}, "exclude each other"},
		{[]string{"watch", "--limit", "-1"}, "negative"},
		{[]string{"webhooks"}, "usage: emailsender webhooks"},
		{[]string{"webhooks", "fly"}, "unknown subcommand"},
		{[]string{"webhooks", "create"}, "--url is required"},
		{[]string{"webhooks", "delete"}, "usage: emailsender webhooks delete ID"},
		{[]string{"webhooks", "update", "w1"}, "nothing to change"},
		{[]string{"webhooks", "update", "w1", "--enable", "--disable"}, "exclude each other"},
		{[]string{"webhooks", "update", "w1", "--clear-filter", "--tag", "a=b"}, "--clear-filter excludes"},
		{[]string{"webhooks", "replay", "w1"}, "give --delivery"},
		{[]string{"webhooks", "replay", "w1", "--delivery", "d", "--since", "1h"}, "excludes --since"},
		{[]string{"webhooks", "deliveries", "w1", "--limit", "0"}, "at least 1"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Run(context.Background(), tc.args, Env{Getenv: func(k string) string { return env[k] }, Stdout: &stdout, Stderr: &stderr})
			if code != ExitUsage || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr.String(), ExitUsage, tc.want)
			}
		})
	}
}
