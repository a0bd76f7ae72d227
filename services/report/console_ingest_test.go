package report_test

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/secretbox"
	"github.com/namirasoft/email-sender/services/ingest"
	"github.com/namirasoft/email-sender/services/ingest/send"
	"github.com/namirasoft/email-sender/services/report"
)

// setupConsoleIngest is setupConsole with a real ingest service on the same
// database and NATS, which the console calls for the actions that belong
// there.
func setupConsoleIngest(t *testing.T) *consoleBundle {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return setupConsoleIngestOn(t, lis, nil)
}

// setupConsoleIngestOn serves the console on lis; adjust, when set, changes
// both configurations (the API's JWT settings are shared).
func setupConsoleIngestOn(t *testing.T, lis net.Listener, adjust func(*report.Config, *ingest.Config), ingestDeps ...func(*ingest.Deps)) *consoleBundle {
	t.Helper()
	ingestLis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	key, err := secretbox.NewMasterKey()
	require.NoError(t, err)
	cfg := report.Config{MasterKeys: "k1:" + key}
	cfg.Console.DevLoopbackHTTP = true
	cfg.Console.IngestAddr = ingestLis.Addr().String()
	cfg.Console.IngestPlaintext = true
	icfg := ingest.Config{ShutdownGrace: 5 * time.Second, HTTPAddr: "off", MasterKeys: "k1:" + key, Send: send.Config{LookupCacheTTL: -1}}
	if adjust != nil {
		adjust(&cfg, &icfg)
	}
	b := setupWith(t, setupOpts{cfg: cfg, deps: func(d *report.Deps) {
		d.HTTPListener = lis
		ideps := ingest.Deps{Pool: d.Pool, JetStream: d.JetStream, Listener: ingestLis, Auth: auth.NewKeyStore(d.Pool, 0)}
		for _, f := range ingestDeps {
			f(&ideps)
		}
		svc, err := ingest.New(icfg, ideps)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- svc.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				t.Error("ingest did not stop")
			}
		})
	}})
	return &consoleBundle{testBundle: b, base: "http://" + lis.Addr().String(), ingestAddr: ingestLis.Addr().String()}
}

func TestConsoleIngestScopesAgree(t *testing.T) {
	all := ingest.MethodScopes()
	for m, s := range report.ConsoleIngestScopes() {
		require.Equal(t, auth.RequiredScope(all, m), s, m)
	}
}

var secretRE = regexp.MustCompile(`id="secret" class="secret" readonly value="(es_[a-z2-7]+)"`)

func TestConsoleIngest(t *testing.T) {
	b := setupConsoleIngest(t)
	ctx := context.Background()
	acc := b.newAccount(t, auth.ScopeSend, auth.ScopeRead, auth.ScopeAdmin)
	ro := b.newAccount(t, auth.ScopeRead)
	scheduled := func(a account) string {
		id := b.newMessage(t, a, msgSpec{status: msgstatus.Scheduled})
		_, err := b.db.Pool.Exec(ctx, `INSERT INTO outbox (message_id, account_id, subject, not_before) VALUES ($1, $2, 'jobs.x', now() + interval '1 day')`, id, a.id)
		require.NoError(t, err)
		return id
	}

	// Cancel: the button only where the session may use it; ingest refuses
	// anyway.
	roMsg := scheduled(ro)
	rb := b.browser(t)
	rb.signIn(ro.key)
	got := rb.get("/console/messages/" + roMsg)
	require.Equal(t, http.StatusOK, got.code)
	require.NotContains(t, got.body, "/cancel")
	require.NotContains(t, got.body, "/console/keys")
	got = rb.post("/console/messages/"+roMsg+"/cancel", url.Values{"csrf": {rb.csrf()}}, rb.origin)
	require.Equal(t, http.StatusForbidden, got.code, got.body)
	require.Equal(t, http.StatusForbidden, rb.get("/console/keys").code)

	msg := scheduled(acc)
	br := b.browser(t)
	br.signIn(acc.key)
	got = br.get("/console/messages/" + msg)
	require.Contains(t, got.body, `action="/console/messages/`+msg+`/cancel"`)
	// Another account's message: ingest answers 404.
	got = br.post("/console/messages/"+roMsg+"/cancel", url.Values{"csrf": {br.csrf()}}, br.origin)
	require.Equal(t, http.StatusNotFound, got.code, got.body)
	got = br.post("/console/messages/"+msg+"/cancel", url.Values{"csrf": {br.csrf()}}, br.origin)
	require.Equal(t, http.StatusSeeOther, got.code, got.body)
	got = br.get("/console/messages/" + msg)
	require.Contains(t, got.body, "CANCELED")
	require.NotContains(t, got.body, "/cancel\"")

	// API keys: the secret shown once, revoke.
	got = br.get("/console/keys")
	require.Equal(t, http.StatusOK, got.code, got.body)
	got = br.post("/console/keys", url.Values{"csrf": {br.csrf()}, "name": {"ci"}, "scope": {"read"}}, br.origin)
	require.Equal(t, http.StatusCreated, got.code, got.body)
	require.Equal(t, "no-store", got.header.Get("Cache-Control"))
	m := secretRE.FindStringSubmatch(got.body)
	require.NotNil(t, m, got.body)
	secret := m[1]
	got = br.get("/console/keys")
	require.NotContains(t, got.body, secret, "shown once")
	// The new key signs in, read-only.
	nb := b.browser(t)
	nb.signIn(secret)
	require.Equal(t, http.StatusOK, nb.get("/console/").code)
	var keyID string
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT id::text FROM api_keys WHERE hash = $1`, auth.Hash(secret)).Scan(&keyID))
	require.Contains(t, got.body, `action="/console/keys/`+keyID+`/revoke"`)
	got = br.post("/console/keys/"+keyID+"/revoke", url.Values{"csrf": {br.csrf()}}, br.origin)
	require.Equal(t, http.StatusSeeOther, got.code, got.body)
	// Revoking the key ended its console session.
	require.Equal(t, "/console/signin", nb.get("/console/").location)

	// The credential is kept sealed: the row holds no key.
	var sealed []byte
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT credential FROM console_sessions WHERE account_id = $1 LIMIT 1`, acc.id).Scan(&sealed))
	require.NotEmpty(t, sealed)
	require.NotContains(t, string(sealed), acc.key)
}

func TestConsoleAccountPages(t *testing.T) {
	b := setupConsoleIngest(t)
	ctx := context.Background()
	acc := b.newAccount(t, auth.ScopeAdmin)
	ro := b.newAccount(t, auth.ScopeRead, auth.ScopeSend)

	rb := b.browser(t)
	rb.signIn(ro.key)
	got := rb.get("/console/")
	for _, p := range []string{"/console/senders", "/console/suppressions", "/console/usage", "/console/account", "/console/providers"} {
		require.NotContains(t, got.body, `href="`+p+`"`)
		require.Equal(t, http.StatusForbidden, rb.get(p).code, p)
	}
	token := rb.csrf()
	for _, p := range []string{"/console/suppressions", "/console/suppressions/remove", "/console/senders", "/console/account/delete", "/console/providers/" + uuid.NewString() + "/verify"} {
		require.Equal(t, http.StatusForbidden, rb.post(p, url.Values{"csrf": {token}, "address": {"x@example.com"}, "confirm": {ro.id}}, rb.origin).code, p)
	}

	br := b.browser(t)
	br.signIn(acc.key)
	got = br.get("/console/")
	for _, p := range []string{"/console/senders", "/console/suppressions", "/console/usage", "/console/account", "/console/providers"} {
		require.Contains(t, got.body, `href="`+p+`"`)
		require.Equal(t, http.StatusOK, br.get(p).code, p)
	}
	token = br.csrf()

	// Suppressions: add with a reason, remove.
	got = br.post("/console/suppressions", url.Values{"csrf": {token}, "address": {"Gone@Example.com"}, "reason": {"complaint"}}, br.origin)
	require.Equal(t, http.StatusSeeOther, got.code, got.body)
	got = br.get("/console/suppressions")
	require.Contains(t, got.body, "gone@example.com")
	require.Contains(t, got.body, "<td>complaint</td>")
	// Search: by any part of the address, any case.
	got = br.post("/console/suppressions", url.Values{"csrf": {token}, "address": {"kept@other.example"}, "reason": {"manual"}}, br.origin)
	require.Equal(t, http.StatusSeeOther, got.code, got.body)
	got = br.get("/console/suppressions?q=EXAMPLE.COM")
	require.Contains(t, got.body, "gone@example.com")
	require.NotContains(t, got.body, "kept@other.example")
	require.Contains(t, br.get("/console/suppressions?q=nothing-like-it").body, "No suppressed address contains")
	got = br.post("/console/suppressions/remove", url.Values{"csrf": {token}, "address": {"gone@example.com"}}, br.origin)
	require.Equal(t, http.StatusSeeOther, got.code, got.body)
	require.NotContains(t, br.get("/console/suppressions").body, "gone@example.com")

	// Providers: health, last verification, verify.
	prov := uuid.NewString()
	_, err := b.db.Pool.Exec(ctx, `INSERT INTO provider_configs (id, account_id, name, kind) VALUES ($1, $2, 'sandbox one', 'sandbox')`, prov, acc.id)
	require.NoError(t, err)
	got = br.get("/console/providers")
	require.Contains(t, got.body, "sandbox one")
	require.Contains(t, got.body, `action="/console/providers/`+prov+`/verify"`)
	got = br.post("/console/providers/"+prov+"/verify", url.Values{"csrf": {token}}, br.origin)
	require.Equal(t, http.StatusOK, got.code, got.body)
	require.Contains(t, got.body, "Verification")
	// Another account's provider configuration: 404 from ingest.
	otherProv := uuid.NewString()
	_, err = b.db.Pool.Exec(ctx, `INSERT INTO provider_configs (id, account_id, name, kind) VALUES ($1, $2, 'theirs', 'sandbox')`, otherProv, ro.id)
	require.NoError(t, err)
	got = br.post("/console/providers/"+otherProv+"/verify", url.Values{"csrf": {token}}, br.origin)
	require.Equal(t, http.StatusNotFound, got.code, got.body)
	require.NotContains(t, got.body, "theirs")

	// Account deletion behind the typed account id.
	got = br.post("/console/account/delete", url.Values{"csrf": {token}, "confirm": {"yes"}}, br.origin)
	require.Equal(t, http.StatusBadRequest, got.code)
	var n int
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT count(*) FROM api_keys WHERE account_id = $1 AND revoked_at IS NULL`, acc.id).Scan(&n))
	require.Equal(t, 1, n, "nothing deleted without the confirmation")
	// A second session of the account, signed in with Namirasoft Account
	// (no key to revoke), ends with it too.
	other := b.browser(t)
	other.signIn(acc.key)
	_, err = b.db.Pool.Exec(ctx, `UPDATE console_sessions SET method = 'oidc', key_id = NULL, subject = 's' WHERE account_id = $1`, acc.id)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, other.get("/console/").code)
	got = br.post("/console/account/delete", url.Values{"csrf": {token}, "confirm": {acc.id}}, br.origin)
	require.Equal(t, http.StatusOK, got.code, got.body)
	require.Contains(t, got.body, "Account deleted")
	require.Equal(t, "/console/signin", br.get("/console/").location)
	require.Equal(t, "/console/signin", other.get("/console/").location)
	// The other account is untouched.
	require.Equal(t, http.StatusOK, rb.get("/console/").code)
}
