package report_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/services/ingest"
	"github.com/namirasoft/email-sender/services/report"
)

// The operator tokens of the console tests: alice's secret is
// testOperatorSecret.
const testOperatorSecret = "op-secret-alice-0123456789"

var testOperatorTokens = func() string {
	h := sha256.Sum256([]byte(testOperatorSecret))
	return "alice:" + hex.EncodeToString(h[:])
}()

func (br *browser) signInOperator(secret string) answer {
	br.t.Helper()
	return br.post("/console/operator/signin", url.Values{"operator_token": {secret}}, br.origin)
}

var operatorCSRFRE = regexp.MustCompile(`action="/console/operator/signout"[^>]*>\s*<input type="hidden" name="csrf" value="([^"]+)"`)

func (br *browser) operatorCSRF() string {
	br.t.Helper()
	a := br.get("/console/operator/")
	require.Equal(br.t, http.StatusOK, a.code, a.body)
	m := operatorCSRFRE.FindStringSubmatch(a.body)
	require.NotNil(br.t, m, a.body)
	return m[1]
}

// checkOperatorIsolation: the tenant session of br (CSRF token) reaches no
// operator page or action, and an operator session reaches no tenant page or
// action (msgA and hookA are a tenant's).
func checkOperatorIsolation(t *testing.T, b *consoleBundle, br *browser, token, msgA, hookA string) {
	t.Helper()
	require.Equal(t, "/console/operator/signin", br.get("/console/operator/").location, "a tenant session on the operator view")
	require.Equal(t, "/console/operator/signin", br.get("/console/operator/trace?message_id="+msgA).location, "a tenant session on the trace links")
	a := br.post("/console/operator/accounts/suspend", url.Values{"csrf": {token}, "account": {uuid.NewString()}, "reason": {"x"}}, br.origin)
	require.Equal(t, http.StatusUnauthorized, a.code, "a tenant session suspends")
	require.Equal(t, http.StatusUnauthorized, br.signInOperator("es_not-an-operator-token").code, "an API key is no operator token")

	op := b.browser(t)
	require.Equal(t, "/console/operator/", op.signInOperator(testOperatorSecret).location)
	opToken := op.operatorCSRF()
	for _, path := range []string{"/console/", "/console/dashboard", "/console/messages/" + msgA, "/console/webhooks",
		"/console/webhooks/" + hookA + "/deliveries", "/console/keys", "/console/providers", "/console/account"} {
		got := op.get(path)
		require.Equal(t, http.StatusSeeOther, got.code, "an operator session on %s: %s", path, got.body)
		require.Equal(t, "/console/signin", got.location, path)
	}
	for _, path := range []string{"/console/webhooks/" + hookA + "/delete", "/console/messages/" + msgA + "/cancel", "/console/account/delete", "/console/keys"} {
		got := op.post(path, url.Values{"csrf": {opToken}}, op.origin)
		require.Equal(t, http.StatusUnauthorized, got.code, "an operator session posts %s", path)
	}
	require.True(t, b.webhookExists(t, hookA))
	resp, err := op.c.Get(b.base + "/console/events")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "an operator session on the event stream")
}

func TestConsoleOperatorSignIn(t *testing.T) {
	b := setupConsole(t)
	br := b.browser(t)
	require.Equal(t, "/console/operator/signin", br.get("/console/operator/").location)
	require.Equal(t, http.StatusOK, br.get("/console/operator/signin").code)
	require.Equal(t, http.StatusUnauthorized, br.signInOperator("wrong").code)
	require.Equal(t, http.StatusForbidden, br.post("/console/operator/signin", url.Values{"operator_token": {testOperatorSecret}}, "https://evil.example").code, "cross-site")
	require.Equal(t, "/console/operator/", br.signInOperator(testOperatorSecret).location)
	a := br.get("/console/operator/")
	require.Equal(t, http.StatusOK, a.code, a.body)
	require.Contains(t, a.body, "operator alice")
	require.Contains(t, a.body, "EMAIL_EVENTS")
	require.Contains(t, a.body, "report", "the report's consumer")
	token := br.operatorCSRF()
	require.Equal(t, http.StatusForbidden, br.post("/console/operator/signout", url.Values{"csrf": {"forged"}}, br.origin).code)
	// Without ingest's OperatorService the console offers no suspend.
	require.NotContains(t, a.body, `action="/console/operator/accounts/suspend"`)
	require.Equal(t, http.StatusBadRequest, br.post("/console/operator/accounts/suspend", url.Values{"csrf": {token}, "account": {uuid.NewString()}, "reason": {"x"}}, br.origin).code)

	// Idle expiry as a tenant's.
	b.clock.add(31 * time.Minute)
	require.Equal(t, "/console/operator/signin", br.get("/console/operator/").location, "idle")
	require.Equal(t, "/console/operator/", br.signInOperator(testOperatorSecret).location)
	token = br.operatorCSRF()
	require.Equal(t, http.StatusSeeOther, br.post("/console/operator/signout", url.Values{"csrf": {token}}, br.origin).code)
	require.Equal(t, "/console/operator/signin", br.get("/console/operator/").location, "signed out")
}

// TestConsoleOperatorView: the parts of the view show what the tables hold.
func TestConsoleOperatorView(t *testing.T) {
	b := setupConsole(t)
	ctx := context.Background()
	accA := b.newAccount(t, auth.ScopeAdmin)
	accB := b.newAccount(t, auth.ScopeAdmin)
	// A sends three messages, B one; one of A's failed over.
	var msgs []string
	for range 3 {
		msgs = append(msgs, b.newMessage(t, accA, msgSpec{to: []string{"x@a.example"}}))
	}
	b.newMessage(t, accB, msgSpec{to: []string{"y@b.example"}})
	b.publish(t, ctx, event(accA, msgs[0], queue.EventFailover, msgstatus.Retrying, 1, time.Now(), "x@a.example"))
	provider := uuid.NewString()
	_, err := b.db.Pool.Exec(ctx, `INSERT INTO provider_configs (id, account_id, name, kind, healthy, health_note) VALUES ($1, $2, 'smtp-main', 'smtp', false, 'auth refused')`, provider, accB.id)
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(ctx, `INSERT INTO provider_pauses (account_id, provider_id, reason, actor, changed_at, version) VALUES ($1, $2, 'bounce rate 9%', 'reputation', now(), 1)`, accB.id, provider)
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(ctx, `INSERT INTO account_states (account, state, reason, actor, changed_at, version) VALUES ($1, 'suspended', 'spam complaints', 'operator:bob', now(), 1)`, accB.id)
	require.NoError(t, err)

	br := b.browser(t)
	require.Equal(t, "/console/operator/", br.signInOperator(testOperatorSecret).location)
	var a answer
	require.Eventually(t, func() bool {
		a = br.get("/console/operator/")
		return strings.Contains(a.body, "1 messages moved to a fallback")
	}, 10*time.Second, 100*time.Millisecond, "the failover is applied")
	require.Equal(t, http.StatusOK, a.code)
	for _, want := range []string{
		"1 unhealthy, 1 paused", "smtp-main", "auth refused", "bounce rate 9%", // provider health and pauses
		msgs[0],                           // the failover
		"spam complaints", "operator:bob", // the suspended account
		"4 messages created in the last 24 hours", accA.id, "75.0%", "25.0%", // the share
	} {
		require.Contains(t, a.body, want)
	}
	require.NotContains(t, a.body, "traces</a>", "no CONSOLE_TRACE_URL_TEMPLATE")
}

// TestConsoleOperatorSuspend suspends and resumes an account from the
// console through ingest's OperatorService, with the operator's own token:
// ingest audits the operator by name.
func TestConsoleOperatorSuspend(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	opLis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b := setupConsoleIngestOn(t, lis, func(cfg *report.Config, icfg *ingest.Config) {
		cfg.Console.OperatorTokens = testOperatorTokens
		cfg.Console.OperatorAddr = opLis.Addr().String()
		cfg.Console.TraceURLTemplate = "http://traces.example/search?message={message_id}"
		icfg.OperatorTokens = testOperatorTokens
	}, func(d *ingest.Deps) { d.OperatorListener = opLis })
	acc := b.newAccount(t, auth.ScopeAdmin)
	moved := b.newMessage(t, acc, msgSpec{to: []string{"x@a.example"}})
	b.publish(t, context.Background(), event(acc, moved, queue.EventFailover, msgstatus.Retrying, 1, time.Now(), "x@a.example"))

	br := b.browser(t)
	require.Equal(t, "/console/operator/", br.signInOperator(testOperatorSecret).location)
	token := br.operatorCSRF()
	require.Eventually(t, func() bool {
		return strings.Contains(br.get("/console/operator/").body, `href="http://traces.example/search?message=`+moved+`"`)
	}, 10*time.Second, 100*time.Millisecond, "the failover's trace link")
	require.Equal(t, "http://traces.example/search?message="+moved, br.get("/console/operator/trace?message_id="+moved).location, "a message's traces")
	require.Equal(t, http.StatusBadRequest, br.get("/console/operator/trace?message_id=javascript:alert(1)").code)
	a := br.post("/console/operator/accounts/suspend", url.Values{"csrf": {token}, "account": {acc.id}, "reason": {"spam complaints"}}, br.origin)
	require.Equal(t, http.StatusSeeOther, a.code, a.body)
	page := br.get("/console/operator/")
	require.Contains(t, page.body, "spam complaints")
	require.Contains(t, page.body, "operator:alice")
	var actor, action string
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `SELECT actor, action FROM operator_audit WHERE account = $1 ORDER BY at DESC LIMIT 1`, acc.id).Scan(&actor, &action))
	require.Equal(t, "operator:alice", actor)
	require.Equal(t, "suspend", action)
	// The suspended account's own console session is refused by ingest's
	// actions but the operator resumes it.
	a = br.post("/console/operator/accounts/resume", url.Values{"csrf": {token}, "account": {acc.id}, "reason": {"cleared"}}, br.origin)
	require.Equal(t, http.StatusSeeOther, a.code, a.body)
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `SELECT actor, action FROM operator_audit WHERE account = $1 ORDER BY at DESC LIMIT 1`, acc.id).Scan(&actor, &action))
	require.Equal(t, "resume", action)
	require.NotContains(t, br.get("/console/operator/").body, "spam complaints")
	// A forged form is refused before ingest is asked.
	require.Equal(t, http.StatusForbidden, br.post("/console/operator/accounts/suspend", url.Values{"csrf": {"forged"}, "account": {acc.id}, "reason": {"x"}}, br.origin).code)
	require.Equal(t, http.StatusForbidden, br.post("/console/operator/accounts/suspend", url.Values{"csrf": {token}, "account": {acc.id}, "reason": {"x"}}, "https://evil.example").code)
}
