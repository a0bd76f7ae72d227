package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
)

// The console as `make run` prints it: the address works at once, and the
// printed API key signs in; the ingest actions (API keys) work through the
// dev stack's own ingest.
func TestMakeRunConsole(t *testing.T) {
	t.Parallel()
	devstack := filepath.Join(t.TempDir(), "devstack")
	b, err := exec.Command("go", "build", "-o", devstack, "github.com/namirasoft/email-sender/services/devstack").CombinedOutput()
	require.NoError(t, err, "go build: %s", b)

	db := pgtest.New(t)
	env := append(os.Environ(),
		"DATABASE_URL="+db.URL, "DEV_DATA_DIR="+t.TempDir(), fmt.Sprintf("DEV_NATS_PORT=%d", freePortNum(t)),
		"DEV_METRICS_ADDR=off", "INGEST_GRPC_ADDR="+freeAddr(t), "REPORT_GRPC_ADDR="+freeAddr(t),
		"INGEST_HTTP_ADDR="+freeAddr(t), "REPORT_HTTP_ADDR="+freeAddr(t), "INGEST_OPERATOR_ADDR=off", "WORKER_GRPC_ADDR=127.0.0.1:0",
	)
	env = withoutEnv(env, "NATS_URL", "MASTER_KEYS", "CONSOLE_DEV_LOOPBACK_HTTP", "CONSOLE_INGEST_ADDR")
	welcome := startDevstack(t, devstack, env)
	m := regexp.MustCompile(`The console \(sign in with the API key above\): (http://\S+/console/)`).FindStringSubmatch(welcome)
	require.NotNil(t, m, "no console address in:\n%s", welcome)
	console := m[1]
	k := regexp.MustCompile(`export KEY=(\S+)`).FindStringSubmatch(welcome)
	require.NotNil(t, k)

	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	u, err := url.Parse(console)
	require.NoError(t, err)
	origin := u.Scheme + "://" + u.Host
	// The welcome can come a moment before the HTTP listeners are up.
	var resp *http.Response
	require.Eventually(t, func() bool {
		req, err := http.NewRequest(http.MethodPost, origin+"/console/signin", strings.NewReader(url.Values{"api_key": {k[1]}}.Encode()))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", origin)
		resp, err = c.Do(req) // follows the redirect to Activity
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	require.Contains(t, string(body), "<h1>Activity</h1>")
	require.Equal(t, "/console/", resp.Request.URL.Path)

	resp, err = c.Get(origin + "/console/keys")
	require.NoError(t, err)
	body, _ = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	require.Contains(t, string(body), "<h1>API keys</h1>")
}
