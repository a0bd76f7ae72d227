package report_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/queue"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/report"
)

// consoleBundle is a report service serving its console on a real HTTP
// listener, with a clock the test moves.
type consoleBundle struct {
	*testBundle
	base  string
	clock *fakeClock
	// ingestAddr is ingest's gRPC address (setupConsoleIngest).
	ingestAddr string
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func setupConsole(t testing.TB) *consoleBundle {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	clock := &fakeClock{t: time.Now()}
	cfg := report.Config{}
	cfg.Console.DevLoopbackHTTP = true // plain HTTP on loopback, as make run serves it
	cfg.Console.OperatorTokens = testOperatorTokens
	b := setupWith(t, setupOpts{cfg: cfg, deps: func(d *report.Deps) {
		d.HTTPListener = lis
		d.Console.Now = clock.now
	}})
	return &consoleBundle{testBundle: b, base: "http://" + lis.Addr().String(), clock: clock}
}

// browser is a cookie-keeping client that does not follow redirects and
// sends what a browser sends with a same-origin form post.
type browser struct {
	t      testing.TB
	c      *http.Client
	base   string
	origin string
}

func (b *consoleBundle) browser(t testing.TB) *browser {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &browser{t: t, base: b.base, origin: b.base, c: &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type answer struct {
	code     int
	body     string
	location string
	header   http.Header
}

func (br *browser) get(path string) answer {
	br.t.Helper()
	resp, err := br.c.Get(br.base + path)
	require.NoError(br.t, err)
	return read(br.t, resp)
}

// post posts form as a page of origin would (origin "" sends none).
func (br *browser) post(path string, form url.Values, origin string, hdr ...string) answer {
	br.t.Helper()
	req, err := http.NewRequest(http.MethodPost, br.base+path, strings.NewReader(form.Encode()))
	require.NoError(br.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := br.c.Do(req)
	require.NoError(br.t, err)
	return read(br.t, resp)
}

func read(t testing.TB, resp *http.Response) answer {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return answer{code: resp.StatusCode, body: string(b), location: resp.Header.Get("Location"), header: resp.Header}
}

func (br *browser) signIn(key string) {
	br.t.Helper()
	a := br.post("/console/signin", url.Values{"api_key": {key}}, br.origin)
	require.Equal(br.t, http.StatusSeeOther, a.code, a.body)
	require.Equal(br.t, "/console/", a.location)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

var nextRE = regexp.MustCompile(`href="(/console/\?[^"]+)" rel="next"`)

// csrf is the CSRF token of the signed-in session, from a page's form.
func (br *browser) csrf() string {
	br.t.Helper()
	a := br.get("/console/")
	require.Equal(br.t, http.StatusOK, a.code, a.body)
	m := csrfRE.FindStringSubmatch(a.body)
	require.NotNil(br.t, m, "no csrf field")
	return m[1]
}

func (b *consoleBundle) newWebhook(t *testing.T, a account, u string) string {
	t.Helper()
	id := uuid.NewString()
	_, err := b.db.Pool.Exec(context.Background(), `
		INSERT INTO webhook_endpoints (id, account_id, url, secret, created_at, updated_at) VALUES ($1, $2, $3, '\x00', now(), now())`, id, a.id, u)
	require.NoError(t, err)
	return id
}

// newDelivery stores a failed delivery to endpoint hook, with one attempt.
func (b *consoleBundle) newDelivery(t testing.TB, a account, hook string) string {
	t.Helper()
	id := uuid.NewString()
	ctx := context.Background()
	_, err := b.db.Pool.Exec(ctx, `
		INSERT INTO webhook_deliveries (id, endpoint_id, account_id, event_id, message_id, seq, event_type, recipient, payload, state, attempts, next_attempt_at, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, 1, 'message.delivered', 'x@example.com', '\x7b7d', 'failed', 8, now(), now(), now())`, id, hook, a.id, "ev-"+id, uuid.NewString())
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(ctx, `INSERT INTO webhook_attempts (delivery_id, account_id, at, status_code, latency_ms, response_snippet)
		VALUES ($1, $2, now(), 500, 12, 'oops')`, id, a.id)
	require.NoError(t, err)
	return id
}

func (b *consoleBundle) webhookExists(t *testing.T, id string) bool {
	t.Helper()
	var n int
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM webhook_endpoints WHERE id = $1`, id).Scan(&n))
	return n == 1
}

func TestConsoleSignInWithKey(t *testing.T) {
	b := setupConsole(t) // not parallel: each bundle holds PostgreSQL connections
	a := b.newAccount(t, auth.ScopeRead)
	id := b.newMessage(t, a, msgSpec{to: []string{"jane@example.com"}, tags: map[string]string{"campaign": "spring"}})
	br := b.browser(t)

	// Without a session a page sends to the sign-in page.
	got := br.get("/console/")
	require.Equal(t, http.StatusSeeOther, got.code)
	require.Equal(t, "/console/signin", got.location)
	got = br.get("/console/signin")
	require.Equal(t, http.StatusOK, got.code)
	require.Contains(t, got.body, `<label for="api_key">`)
	require.Equal(t, "nosniff", got.header.Get("X-Content-Type-Options"))
	// Not no-referrer: a browser then sends "Origin: null" with the page's
	// own form posts, which the origin check refuses (TestConsoleChromium).
	require.Equal(t, "same-origin", got.header.Get("Referrer-Policy"))
	require.Contains(t, got.header.Get("Content-Security-Policy"), "default-src 'none'")

	got = br.post("/console/signin", url.Values{"api_key": {"es_" + strings.Repeat("a", 40)}}, br.origin)
	require.Equal(t, http.StatusUnauthorized, got.code)
	require.Contains(t, got.body, "Invalid, revoked or expired API key")

	resp, err := br.c.Do(func() *http.Request {
		req, _ := http.NewRequest(http.MethodPost, br.base+"/console/signin", strings.NewReader(url.Values{"api_key": {a.key}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", br.origin)
		return req
	}())
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	ck := resp.Cookies()
	require.Len(t, ck, 1)
	require.Equal(t, "es_console", ck[0].Name, "plain HTTP on loopback with CONSOLE_DEV_LOOPBACK_HTTP")
	require.True(t, ck[0].HttpOnly)
	require.Equal(t, http.SameSiteLaxMode, ck[0].SameSite)
	require.Len(t, ck[0].Value, 43, "256-bit token")

	got = br.get("/console/")
	require.Equal(t, http.StatusOK, got.code, got.body)
	require.Contains(t, got.body, "/console/messages/"+id)
	require.Contains(t, got.body, "campaign=spring")
	require.Contains(t, got.body, "<td>jane@example.com</td>", "the recipients in the list")

	// The session row keeps the token's hash only, and the key's scopes.
	var (
		method string
		scopes []string
	)
	require.NoError(t, b.db.Pool.QueryRow(context.Background(),
		`SELECT method, scopes FROM console_sessions WHERE account_id = $1`, a.id).Scan(&method, &scopes))
	require.Equal(t, "api_key", method)
	require.Equal(t, []string{auth.ScopeRead}, scopes)
	var stored int
	require.NoError(t, b.db.Pool.QueryRow(context.Background(),
		`SELECT count(*) FROM console_sessions WHERE token_hash = $1::bytea`, []byte(ck[0].Value)).Scan(&stored))
	require.Zero(t, stored)

	// Filters go to ListMessages.
	got = br.get("/console/?recipient=jane%40example.com&tag=campaign%3Dspring&status=QUEUED")
	require.Contains(t, got.body, id)
	got = br.get("/console/?recipient=nobody%40example.com")
	require.NotContains(t, got.body, id)
	got = br.get("/console/?status=DELIVERED")
	require.NotContains(t, got.body, id)
	future := time.Now().UTC().Add(time.Hour).Format("2006-01-02T15:04")
	require.NotContains(t, br.get("/console/?after="+future).body, id)
	require.Contains(t, br.get("/console/?before="+future).body, id)
	require.Equal(t, http.StatusBadRequest, br.get("/console/?after=yesterday").code)
	require.NotContains(t, got.header.Get("Content-Security-Policy"), "unsafe-inline", "only the message page allows inline styles")

	// Anywhere but plain HTTP to loopback, the cookie is a Secure __Host- one.
	req, err := http.NewRequest(http.MethodPost, br.base+"/console/signin", strings.NewReader(url.Values{"api_key": {a.key}}.Encode()))
	require.NoError(t, err)
	req.Host = "console.example"
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://console.example")
	resp, err = br.c.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	ck = resp.Cookies()
	require.Len(t, ck, 1)
	require.Equal(t, "__Host-es_console", ck[0].Name)
	require.True(t, ck[0].Secure)
	require.Equal(t, "/", ck[0].Path)
}

func TestConsoleScopes(t *testing.T) {
	b := setupConsole(t) // not parallel: each bundle holds PostgreSQL connections
	a := b.newAccount(t, auth.ScopeRead)
	admin := account{id: a.id}
	// A second key of the same account, with admin.
	key, prefix, hash, err := auth.NewKey()
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(context.Background(), `INSERT INTO api_keys (id, account_id, name, prefix, hash, scopes) VALUES ($1, $2, 'admin', $3, $4, $5)`,
		uuid.NewString(), a.id, prefix, hash, []string{auth.ScopeAdmin})
	require.NoError(t, err)
	admin.key = key
	hook := b.newWebhook(t, a, "https://hooks.example/a")

	ro := b.browser(t)
	ro.signIn(a.key)
	got := ro.get("/console/")
	require.Equal(t, http.StatusOK, got.code)
	require.NotContains(t, got.body, "/console/webhooks", "a read-only session has no link to what it cannot use")
	require.NotContains(t, got.body, "/delete")
	got = ro.get("/console/webhooks")
	require.Equal(t, http.StatusForbidden, got.code)
	require.NotContains(t, got.body, "hooks.example")
	// The server refuses the action anyway, with a valid CSRF token and origin.
	got = ro.post("/console/webhooks/"+hook+"/delete", url.Values{"csrf": {ro.csrf()}}, ro.origin)
	require.Equal(t, http.StatusForbidden, got.code, got.body)
	require.True(t, b.webhookExists(t, hook))

	delivery := b.newDelivery(t, a, hook)
	require.Equal(t, http.StatusForbidden, ro.get("/console/webhooks/"+hook+"/deliveries").code)
	require.Equal(t, http.StatusForbidden, ro.post("/console/webhooks/"+hook+"/deliveries/"+delivery+"/replay", url.Values{"csrf": {ro.csrf()}}, ro.origin).code)

	ad := b.browser(t)
	ad.signIn(admin.key)
	got = ad.get("/console/webhooks/" + hook + "/deliveries")
	require.Equal(t, http.StatusOK, got.code, got.body)
	require.Contains(t, got.body, "message.delivered")
	require.Contains(t, got.body, "HTTP 500")
	got = ad.post("/console/webhooks/"+hook+"/deliveries/"+delivery+"/replay", url.Values{"csrf": {ad.csrf()}}, ad.origin)
	require.Equal(t, http.StatusSeeOther, got.code, got.body)
	var state string
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `SELECT state FROM webhook_deliveries WHERE id = $1`, delivery).Scan(&state))
	require.Equal(t, "pending", state, "replayed")
	got = ad.get("/console/webhooks")
	require.Equal(t, http.StatusOK, got.code, got.body)
	require.Contains(t, got.body, "https://hooks.example/a")
	require.Contains(t, got.body, `action="/console/webhooks/`+hook+`/delete"`)
	got = ad.post("/console/webhooks/"+hook+"/delete", url.Values{"csrf": {ad.csrf()}}, ad.origin)
	require.Equal(t, http.StatusSeeOther, got.code, got.body)
	require.False(t, b.webhookExists(t, hook))

	// A key that loses its scopes takes its sessions' with it; a revoked key
	// ends them.
	_, err = b.db.Pool.Exec(context.Background(), `UPDATE api_keys SET scopes = '{send}' WHERE hash = $1`, auth.Hash(a.key))
	require.NoError(t, err)
	require.Equal(t, http.StatusForbidden, ro.get("/console/").code)
	_, err = b.db.Pool.Exec(context.Background(), `UPDATE api_keys SET revoked_at = now() WHERE hash = $1`, auth.Hash(admin.key))
	require.NoError(t, err)
	require.Equal(t, "/console/signin", ad.get("/console/webhooks").location)
}

func TestConsoleCSRF(t *testing.T) {
	b := setupConsole(t) // not parallel: each bundle holds PostgreSQL connections
	a := b.newAccount(t, auth.ScopeAdmin)
	hook := b.newWebhook(t, a, "https://hooks.example/a")
	br := b.browser(t)
	br.signIn(a.key)
	token := br.csrf()

	del := "/console/webhooks/" + hook + "/delete"
	for name, tc := range map[string]struct {
		form   url.Values
		origin string
		hdr    []string
	}{
		"no origin":         {url.Values{"csrf": {token}}, "", nil},
		"other origin":      {url.Values{"csrf": {token}}, "https://evil.example", nil},
		"null origin":       {url.Values{"csrf": {token}}, "null", nil},
		"cross-site fetch":  {url.Values{"csrf": {token}}, br.origin, []string{"Sec-Fetch-Site", "cross-site"}},
		"missing token":     {url.Values{}, br.origin, nil},
		"wrong token":       {url.Values{"csrf": {token + "x"}}, br.origin, nil},
		"other session's":   {url.Values{"csrf": {strings.Repeat("A", 43)}}, br.origin, nil},
		"sign-in elsewhere": {url.Values{"api_key": {a.key}}, "https://evil.example", nil},
	} {
		path := del
		if name == "sign-in elsewhere" {
			path = "/console/signin"
		}
		got := br.post(path, tc.form, tc.origin, tc.hdr...)
		require.Equal(t, http.StatusForbidden, got.code, name)
	}
	require.True(t, b.webhookExists(t, hook))
	got := br.post(del, url.Values{"csrf": {token}}, br.origin, "Sec-Fetch-Site", "same-origin")
	require.Equal(t, http.StatusSeeOther, got.code, got.body)
	require.False(t, b.webhookExists(t, hook))
}

func TestConsoleSessionEnds(t *testing.T) {
	b := setupConsole(t) // not parallel: each bundle holds PostgreSQL connections
	a := b.newAccount(t, auth.ScopeRead)

	t.Run("sign out revokes the session on the server", func(t *testing.T) {
		br := b.browser(t)
		br.signIn(a.key)
		u, _ := url.Parse(b.base)
		stolen := br.c.Jar.Cookies(u)
		got := br.post("/console/signout", url.Values{"csrf": {br.csrf()}}, br.origin)
		require.Equal(t, http.StatusSeeOther, got.code)
		// The cookie kept elsewhere no longer works.
		other := b.browser(t)
		other.c.Jar.SetCookies(u, stolen)
		require.Equal(t, "/console/signin", other.get("/console/").location)
		require.Equal(t, http.StatusUnauthorized, other.get("/console/events").code)
	})

	t.Run("idle expiry", func(t *testing.T) {
		br := b.browser(t)
		br.signIn(a.key)
		b.clock.add(29 * time.Minute)
		require.Equal(t, http.StatusOK, br.get("/console/").code, "used within CONSOLE_SESSION_IDLE")
		b.clock.add(29 * time.Minute)
		require.Equal(t, http.StatusOK, br.get("/console/").code, "idle counts from the last use")
		b.clock.add(31 * time.Minute)
		require.Equal(t, "/console/signin", br.get("/console/").location)
	})

	t.Run("terminated account", func(t *testing.T) {
		c := b.newAccount(t, auth.ScopeRead)
		br := b.browser(t)
		br.signIn(c.key)
		_, err := b.db.Pool.Exec(context.Background(), `
			INSERT INTO account_states (account, state, changed_at, version) VALUES ($1, 'terminated', now(), nextval('account_states_version'))`, c.id)
		require.NoError(t, err)
		require.Equal(t, "/console/signin", br.get("/console/").location)
	})

	t.Run("absolute expiry", func(t *testing.T) {
		br := b.browser(t)
		br.signIn(a.key)
		for range 35 { // 11h40m of use every 20 minutes
			b.clock.add(20 * time.Minute)
			require.Equal(t, http.StatusOK, br.get("/console/").code)
		}
		b.clock.add(21 * time.Minute)
		require.Equal(t, "/console/signin", br.get("/console/").location, "CONSOLE_SESSION_MAX after sign-in")
	})
}

// TestConsoleIsolation signs in as account B and asks for everything of A by
// its ids.
func TestConsoleIsolation(t *testing.T) {
	b := setupConsole(t) // not parallel: each bundle holds PostgreSQL connections
	accA := b.newAccount(t, auth.ScopeAdmin)
	accB := b.newAccount(t, auth.ScopeAdmin)
	msgA := b.newMessage(t, accA, msgSpec{to: []string{"alice@a.example"}, tags: map[string]string{"secret": "a-tag"}})
	b.putContent(t, accA, msgA, &emailsenderv1.EmailMessage{Subject: "A", HtmlBody: "<p>A-body</p>", TextBody: "A-text"})
	hookA := b.newWebhook(t, accA, "https://hooks.a.example/")
	providerA := "00000000-0000-7000-8000-000000000001"

	br := b.browser(t)
	br.signIn(accB.key)
	token := br.csrf()
	secrets := []string{accA.id, msgA, hookA, "alice@a.example", "a-tag", "A-body", "A-text", "hooks.a.example"}
	// echoed: the filter B typed is shown back in its input.
	check := func(what string, got answer, echoed string, codes ...int) {
		t.Helper()
		require.Contains(t, codes, got.code, "%s: %d %s", what, got.code, got.body)
		body := got.body
		if echoed != "" {
			body = strings.ReplaceAll(body, `value="`+echoed+`"`, "")
		}
		for _, s := range secrets {
			require.NotContains(t, body, s, "%s shows %s", what, s)
		}
	}
	check("message", br.get("/console/messages/"+msgA), "", http.StatusNotFound)
	check("activity by recipient", br.get("/console/?recipient=alice%40a.example"), "alice@a.example", http.StatusOK)
	check("activity by tag", br.get("/console/?tag=secret%3Da-tag"), "secret=a-tag", http.StatusOK)
	check("activity by provider", br.get("/console/?provider="+providerA), providerA, http.StatusOK)
	check("activity", br.get("/console/"), "", http.StatusOK)
	check("webhooks", br.get("/console/webhooks"), "", http.StatusOK)
	delivA := b.newDelivery(t, accA, hookA)
	check("A's delivery log", br.get("/console/webhooks/"+hookA+"/deliveries"), "", http.StatusOK, http.StatusNotFound)
	check("replay A's delivery", br.post("/console/webhooks/"+hookA+"/deliveries/"+delivA+"/replay", url.Values{"csrf": {token}}, br.origin), "", http.StatusNotFound)
	check("dashboard", br.get("/console/dashboard"), "", http.StatusOK)
	// The live stream for A's message id: B's subjects only; nothing of A.
	b.publish(t, context.Background(), event(accA, msgA, queue.EventSent, msgstatus.Sent, 1, time.Now(), "alice@a.example"))
	sctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, b.base+"/console/events?message_id="+msgA, nil)
	require.NoError(t, err)
	req.Header.Set("Last-Event-ID", "") // from now
	if resp, err := br.c.Do(req); err == nil {
		body, _ := io.ReadAll(resp.Body) // until the timeout
		_ = resp.Body.Close()
		check("events", answer{code: resp.StatusCode, body: string(body)}, "", http.StatusOK)
	}
	check("delete A's webhook", br.post("/console/webhooks/"+hookA+"/delete", url.Values{"csrf": {token}}, br.origin), "", http.StatusNotFound)
	check("bad id", br.get("/console/messages/not-an-id"), "", http.StatusBadRequest, http.StatusNotFound)
	require.True(t, b.webhookExists(t, hookA))
	// A's session token does not sign B in as A, and B's CSRF token is B's.
	brA := b.browser(t)
	brA.signIn(accA.key)
	require.Equal(t, http.StatusForbidden, brA.post("/console/webhooks/"+hookA+"/delete", url.Values{"csrf": {token}}, brA.origin).code, "A's form with B's token")
	require.True(t, b.webhookExists(t, hookA))
	// Tenants and operators do not reach each other's pages (operator.go).
	checkOperatorIsolation(t, b, br, token, msgA, hookA)
}

func (b *consoleBundle) putContent(t testing.TB, a account, id string, m *emailsenderv1.EmailMessage) {
	t.Helper()
	job, err := proto.Marshal(&queuev1.SendJob{MessageId: id, AccountId: a.id, Message: m})
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(context.Background(), `INSERT INTO message_contents (message_id, account_id, content) VALUES ($1, $2, $3)`, id, a.id, job)
	require.NoError(t, err)
}

func TestConsoleMessagePage(t *testing.T) {
	b := setupConsole(t) // not parallel: each bundle holds PostgreSQL connections
	a := b.newAccount(t, auth.ScopeRead)
	id := b.newMessage(t, a, msgSpec{to: []string{"jane@example.com"}, cc: []string{"joe@example.com"}})
	b.putContent(t, a, id, &emailsenderv1.EmailMessage{
		Subject:  "Hello",
		HtmlBody: `<p style="color:red">Hi</p><img src="https://tracker.example/p.gif"><script>alert(1)</script>`,
		TextBody: "Hi",
		Headers:  []*emailsenderv1.Header{{Name: "X-Campaign", Value: "spring"}},
	})
	ev := event(a, id, queue.EventSent, msgstatus.Sent, 1, time.Now(), "jane@example.com")
	ev.ProviderResponse = "250 2.0.0 Ok: queued as 4F1C2"
	b.publish(t, context.Background(), ev)
	b.wait(t, "applied", ev.GetEventId())

	br := b.browser(t)
	br.signIn(a.key)
	got := br.get("/console/messages/" + id)
	require.Equal(t, http.StatusOK, got.code, got.body)
	require.Contains(t, got.body, "jane@example.com")
	require.Contains(t, got.body, "joe@example.com")
	require.Contains(t, got.body, "250 2.0.0 Ok: queued as 4F1C2", "the provider's answer in the timeline")
	require.Contains(t, got.body, "X-Campaign")
	// The HTML body: an attribute of a sandboxed iframe (no allow-scripts),
	// escaped, under a CSP that loads nothing remote.
	require.Regexp(t, `<iframe class="body" title="[^"]+" sandbox="" referrerpolicy="no-referrer" srcdoc="`, got.body)
	require.Contains(t, got.header.Get("Content-Security-Policy"), "style-src 'self' 'unsafe-inline'")
	require.Contains(t, got.header.Get("Content-Security-Policy"), "default-src 'none'")
	require.Contains(t, got.body, `&lt;meta http-equiv=&#34;Content-Security-Policy&#34; content=&#34;default-src &#39;none&#39;; img-src data:; style-src &#39;unsafe-inline&#39;&#34;&gt;`)
	require.NotContains(t, got.body, "<script>alert(1)</script>")
	require.NotContains(t, got.body, `<img src="https://tracker.example`)

	// Not retained any more: said so.
	_, err := b.db.Pool.Exec(context.Background(), `DELETE FROM message_contents WHERE message_id = $1`, id)
	require.NoError(t, err)
	got = br.get("/console/messages/" + id)
	require.Equal(t, http.StatusOK, got.code)
	require.Contains(t, got.body, "no longer retained")
}

func TestConsoleLiveEvents(t *testing.T) {
	b := setupConsole(t) // not parallel: each bundle holds PostgreSQL connections
	a := b.newAccount(t, auth.ScopeRead)
	other := b.newAccount(t, auth.ScopeRead)
	id := b.newMessage(t, a, msgSpec{})
	otherID := b.newMessage(t, other, msgSpec{})
	br := b.browser(t)
	br.signIn(a.key)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.base+"/console/events", nil)
	require.NoError(t, err)
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		resp, err := br.c.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
			lines <- "status " + resp.Status
			return
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// The watch starts at the stream's end: publish until the event shows.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for attempt := 1; ; attempt++ {
		select {
		case l, ok := <-lines:
			require.True(t, ok, "stream ended")
			require.NotContains(t, l, otherID)
			if strings.HasPrefix(l, "event: SENT") {
				return
			}
		case <-tick.C:
			b.publish(t, ctx, event(other, otherID, queue.EventSent, msgstatus.Sent, int32(attempt), time.Now()))
			b.publish(t, ctx, event(a, id, queue.EventSent, msgstatus.Sent, int32(attempt), time.Now()))
		case <-ctx.Done():
			t.Fatal("no live event")
		}
	}
}

func TestConsoleDashboard(t *testing.T) {
	b := setupConsole(t)
	a := b.newAccount(t, auth.ScopeRead)
	other := b.newAccount(t, auth.ScopeRead)
	for range 3 {
		b.newMessage(t, a, msgSpec{status: msgstatus.Delivered})
	}
	b.newMessage(t, a, msgSpec{status: msgstatus.Bounced})
	for range 7 {
		b.newMessage(t, other, msgSpec{status: msgstatus.Complained})
	}
	b.clock.add(time.Minute) // the console's clock started before the messages
	br := b.browser(t)
	br.signIn(a.key)
	got := br.get("/console/dashboard")
	require.Equal(t, http.StatusOK, got.code, got.body)
	require.Contains(t, got.body, `<span class="n">3</span> delivered`)
	require.Contains(t, got.body, `<span class="n">1</span> bounced`)
	require.Contains(t, got.body, `<span class="n">0</span> complained`, "another account's messages are not counted")
	require.Contains(t, got.body, "<svg")
	require.Contains(t, got.body, "Bounce rate of each hour")
	require.Contains(t, got.body, "pause 10%", "the reputation threshold on the chart")
	require.NotRegexp(t, `(src|href)="(https?:)?//`, got.body, "nothing remote")
}
