package report_test

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/client"
	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/queue"
	headless "github.com/namirasoft/email-sender/pkg/testkit/browser"
	"github.com/namirasoft/email-sender/pkg/testkit/oidcprovider"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest"
	"github.com/namirasoft/email-sender/services/report"
)

// chromiumStack is the console suite's system: the report (with its
// console) and ingest on one PostgreSQL schema and one NATS server, the test
// OpenID provider, and two accounts made as an operator makes them (A's id is
// its Namirasoft Account user's account claim), with messages sent through
// ingest's API.
type chromiumStack struct {
	*consoleBundle
	idp  *oidcprovider.Provider
	a, b ingest.BootstrapResult
	// apiA sends and reads as A through the API (pkg/client).
	apiA *client.Client
	// tracker is an allowed origin that counts the requests it gets: a
	// message body's image pointing here must never be loaded.
	tracker     *httptest.Server
	trackerHits atomic.Int64
	// msgs are A's messages by name.
	msgs map[string]string
	// hook is A's webhook endpoint, with one failed delivery.
	hook, delivery string
}

func (s *chromiumStack) acc(r ingest.BootstrapResult) account {
	return account{id: r.AccountID, key: r.APIKey}
}

func startChromiumStack(t *testing.T) *chromiumStack {
	t.Helper()
	s := &chromiumStack{msgs: map[string]string{}}
	accountA := uuid.NewString()
	s.idp = oidcprovider.Start(t, oidcprovider.Config{Users: []oidcprovider.User{{
		Subject: "owner-a", Email: "owner@a.example", Name: "Ada Owner", AccountID: accountA, Scopes: []string{"read", "send", "admin"},
	}}})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	base := "http://" + lis.Addr().String()
	s.idp.AddRedirectURI(base + "/console/auth/callback")
	s.consoleBundle = setupConsoleIngestOn(t, lis, func(cfg *report.Config, icfg *ingest.Config) {
		cfg.API.JWT = s.idp.JWTConfig()
		icfg.API.JWT = cfg.API.JWT
		cfg.Console.OIDCClientID = s.idp.ClientID
		cfg.Console.OIDCClientSecret = s.idp.ClientSecret
		cfg.Console.OIDCRedirectURL = base + "/console/auth/callback"
	})
	ctx := context.Background()
	s.a, err = ingest.Bootstrap(ctx, s.db.Pool, nil, ingest.BootstrapParams{AccountID: accountA, AccountName: "Acme", ProviderKind: "sandbox", Senders: []string{"a.example"}})
	require.NoError(t, err)
	s.b, err = ingest.Bootstrap(ctx, s.db.Pool, nil, ingest.BootstrapParams{AccountName: "Bravo", ProviderKind: "sandbox", Senders: []string{"b.example"}})
	require.NoError(t, err)
	s.apiA, err = client.New(ctx, s.ingestAddr, client.WithAPIKey(s.a.APIKey), client.WithInsecure(), client.WithReportTarget(s.conn.Target()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.apiA.Close() })
	s.tracker = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.trackerHits.Add(1)
		w.Header().Set("Content-Type", "image/gif")
		_, _ = w.Write([]byte("GIF89a"))
	}))
	t.Cleanup(s.tracker.Close)
	s.seed(t)
	return s
}

// send sends one message as A through ingest's API.
func (s *chromiumStack) send(t *testing.T, name string, m *emailsenderv1.EmailMessage, sendAt time.Time) string {
	t.Helper()
	if m.From == nil {
		m.From = &emailsenderv1.Address{Address: "news@a.example", Name: "Acme News"}
	}
	req := &emailsenderv1.SendEmailRequest{Message: m}
	if !sendAt.IsZero() {
		req.SendAt = timestamppb.New(sendAt)
	}
	resp, err := s.apiA.Send(context.Background(), req)
	require.NoError(t, err, name)
	if name != "" {
		s.msgs[name] = resp.GetMessageId()
	}
	return resp.GetMessageId()
}

func to(addrs ...string) []*emailsenderv1.Address {
	out := make([]*emailsenderv1.Address, len(addrs))
	for i, a := range addrs {
		out[i] = &emailsenderv1.Address{Address: a}
	}
	return out
}

// seed sends A's messages through ingest and moves some on with the events
// a worker would publish; B gets one message of its own.
func (s *chromiumStack) seed(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	bulk := &emailsenderv1.SendBatchRequest{}
	for i := range 52 {
		bulk.Messages = append(bulk.Messages, &emailsenderv1.SendEmailRequest{Message: &emailsenderv1.EmailMessage{
			From: &emailsenderv1.Address{Address: "news@a.example"}, To: to(fmt.Sprintf("reader-%02d@example.net", i)),
			Subject: fmt.Sprintf("Newsletter %02d", i), TextBody: "news", Tags: map[string]string{"campaign": "bulk"},
		}})
	}
	resp, err := s.apiA.SendBatch(ctx, bulk)
	require.NoError(t, err)
	for _, r := range resp.GetResults() {
		require.Zero(t, r.GetErrorCode(), r.GetErrorMessage())
	}
	s.send(t, "welcome", &emailsenderv1.EmailMessage{
		To: to("jane@example.com"), Cc: to("joe@example.com"), Subject: "Welcome, Jane",
		HtmlBody: `<h1 style="color:#0b5394">Welcome aboard, Jane</h1><p>Your account is ready.</p>` +
			`<img id="remote" src="` + s.tracker.URL + `/open.gif" alt="">` +
			`<img src="http://tracker.example/pixel.gif" alt="">` +
			`<script>parent.document.title = "pwned"</script>`,
		TextBody: "Welcome aboard, Jane. Your account is ready.",
		Headers:  []*emailsenderv1.Header{{Name: "X-Campaign", Value: "spring"}},
		Tags:     map[string]string{"campaign": "spring"},
	}, time.Time{})
	s.send(t, "invoice", &emailsenderv1.EmailMessage{To: to("ops@example.org"), Subject: "Your invoice", TextBody: "Invoice 42", Tags: map[string]string{"campaign": "billing"}}, time.Time{})
	s.send(t, "reset", &emailsenderv1.EmailMessage{To: to("bob@example.com"), Subject: "Password reset", TextBody: "Reset", Tags: map[string]string{"campaign": "security"}}, time.Time{})
	s.send(t, "digest", &emailsenderv1.EmailMessage{To: to("jane@example.com"), Subject: "Weekly digest", TextBody: "Digest"}, time.Now().Add(24*time.Hour))
	s.send(t, "later", &emailsenderv1.EmailMessage{To: to("kim@example.com"), Subject: "Reminder", TextBody: "Later"}, time.Now().Add(48*time.Hour))

	a := s.acc(s.a)
	now := time.Now()
	sent := event(a, s.msgs["welcome"], queue.EventSent, msgstatus.Sent, 1, now, "jane@example.com", "joe@example.com")
	sent.ProviderResponse = "250 2.0.0 Ok: queued as 4F1C2"
	invSent := event(a, s.msgs["invoice"], queue.EventSent, msgstatus.Sent, 1, now, "ops@example.org")
	invDelivered := event(a, s.msgs["invoice"], queue.EventDelivered, msgstatus.Delivered, 1, now.Add(time.Second), "ops@example.org")
	resetSent := event(a, s.msgs["reset"], queue.EventSent, msgstatus.Sent, 1, now, "bob@example.com")
	resetBounced := event(a, s.msgs["reset"], queue.EventBounced, msgstatus.Bounced, 1, now.Add(time.Second), "bob@example.com")
	resetBounced.ProviderResponse = "550 5.1.1 bob@example.com: user unknown"
	var ids []string
	for _, ev := range []*queuev1.DeliveryEvent{sent, invSent, invDelivered, resetSent, resetBounced} {
		s.publish(t, ctx, ev)
		ids = append(ids, ev.GetEventId())
	}
	s.wait(t, "applied", ids...)
	s.hook = s.newWebhook(t, a, "https://hooks.a.example/events")
	s.delivery = s.newDelivery(t, a, s.hook)

	apiB, err := client.New(ctx, s.ingestAddr, client.WithAPIKey(s.b.APIKey), client.WithInsecure())
	require.NoError(t, err)
	defer apiB.Close()
	_, err = apiB.Send(ctx, &emailsenderv1.SendEmailRequest{Message: &emailsenderv1.EmailMessage{
		From: &emailsenderv1.Address{Address: "hello@b.example"}, To: to("bert@example.com"), Subject: "Bravo's own", TextBody: "b",
	}})
	require.NoError(t, err)
}

// newBrowser starts the suite's Chromium: 1280x800, allowed to reach the
// console, the OpenID provider and the tracker (whose requests the test
// counts), nothing else.
func (s *chromiumStack) newBrowser(t *testing.T, more ...string) *headless.Browser {
	t.Helper()
	return headless.New(t, headless.WindowSize(1280, 800), headless.Allow(append([]string{s.base, s.idp.Issuer, s.tracker.URL}, more...)...))
}

// signIn signs br in with an API key through the form, signing out first
// when a session is open.
func (s *chromiumStack) signIn(t *testing.T, br *headless.Browser, key string) {
	t.Helper()
	br.Navigate(s.base + "/console/signin")
	if br.Exists(".signout button") {
		require.Equal(t, http.StatusOK, br.Status(chromedp.Click(chromedp.CSS(".signout button"), chromedp.NodeVisible)))
	}
	br.Fill("#api_key", key)
	require.Equal(t, http.StatusOK, br.Status(chromedp.Click(chromedp.CSS(`form[action="/console/signin"] button[type=submit]`), chromedp.NodeVisible)))
	require.Equal(t, s.base+"/console/", br.Location())
}

// subjects are the subjects of the Activity rows shown.
func subjects(br *headless.Browser) []string {
	return headless.Eval[[]string](br, `[...document.querySelectorAll('table.messages tbody tr td:nth-child(3) a')].map(a => a.textContent.trim())`)
}

// unlabelled lists the form controls of the page without an accessible
// name: no <label>, aria-label or aria-labelledby (inputs), no text or
// aria-label (buttons).
const unlabelled = `[...document.querySelectorAll('input, select, textarea, button')].filter(e => {
	if (e.type === 'hidden') return false;
	if (e.tagName === 'BUTTON' || ['submit', 'button', 'reset'].includes(e.type)) return !(e.textContent.trim() || e.value || e.getAttribute('aria-label'));
	return !((e.labels && e.labels.length) || e.getAttribute('aria-label') || e.getAttribute('aria-labelledby'));
}).map(e => e.outerHTML)`

// overflow lists, when the page is wider than the viewport (it scrolls
// sideways), the elements reaching past the viewport's right edge whose
// parent does not (the culprits); nothing when it fits.
const overflow = `(() => {
	if (document.documentElement.scrollWidth <= window.innerWidth) return [];
	const w = window.innerWidth, past = e => e.getBoundingClientRect().right > w + 0.5;
	return [...document.body.querySelectorAll('*')].filter(e => past(e) && (!(e.parentElement && past(e.parentElement)) || ['absolute', 'fixed'].includes(getComputedStyle(e).position)))
		.map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className && typeof e.className === 'string' ? '.' + e.className.trim().replace(/\s+/g, '.') : '') +
			' right=' + Math.round(e.getBoundingClientRect().right))
		.concat(['scrollWidth=' + document.documentElement.scrollWidth]);
})()`

// submitForm posts a form built in the page (a user editing the DOM, with
// the page's own CSRF token) and waits for the answer.
func submitForm(br *headless.Browser, action string, fields url.Values) int {
	js := `(() => { const f = document.createElement('form'); f.method = 'post'; f.action = ` + jsQuote(action) + `;
		const add = (n, v) => { const i = document.createElement('input'); i.type = 'hidden'; i.name = n; i.value = v; f.appendChild(i); };
		add('csrf', document.querySelector('input[name=csrf]').value);`
	for k, vs := range fields {
		for _, v := range vs {
			js += `add(` + jsQuote(k) + `, ` + jsQuote(v) + `);`
		}
	}
	js += `document.body.appendChild(f); f.submit(); return true; })()`
	return br.Status(chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](js)(ctx, t)
		return err
	}))
}

// jsQuote is s as a JavaScript string literal.
// setValue sets a field's value and fires its input event, as a paste does.
func setValue(br *headless.Browser, sel, value string) {
	headless.Eval[bool](br, fmt.Sprintf(`(() => { const e = document.querySelector(%s); e.value = %s;
		e.dispatchEvent(new Event('input', {bubbles: true})); return true; })()`, jsQuote(sel), jsQuote(value)))
}

func jsQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestConsoleChromium is the console in headless Chromium against the real
// report and ingest (PostgreSQL, NATS): sign-in both ways, Activity's
// filters, search and paging, a message with its sandboxed body, live
// events, a chart, a key revoked, a template edited with its live preview,
// saved and published, forged cross-site posts refused, account
// isolation, phone width and keyboard. One stack and one browser serve the
// subtests, in order (each signs in as it needs). Screenshots go to
// $BROWSER_SCREENSHOTS (results/screenshots in the README).
func TestConsoleChromium(t *testing.T) {
	start := time.Now()
	s := startChromiumStack(t)
	t.Logf("stack and data: %s", time.Since(start).Round(time.Millisecond))
	root := s.newBrowser(t)
	welcome := s.msgs["welcome"]

	t.Run("SignInWithAPIKey", func(t *testing.T) {
		br := root.For(t)
		require.Equal(t, http.StatusOK, br.NavigateStatus(s.base+"/console/"), "to the sign-in page")
		require.Equal(t, s.base+"/console/signin", br.Location())
		br.WaitVisible("#api_key")
		br.ScreenshotView("console-signin")
		// A wrong key: the form says so.
		br.Fill("#api_key", "es_"+strings.Repeat("a", 40))
		require.Equal(t, http.StatusUnauthorized, br.Status(chromedp.Click(chromedp.CSS(`form[action="/console/signin"] button`), chromedp.NodeVisible)))
		require.Contains(t, br.Text(".error"), "Invalid, revoked or expired API key")
		s.signIn(t, br, s.a.APIKey)
		require.Contains(t, br.Text(".who"), "API key · send, read, admin")
		require.Contains(t, subjects(br), "Welcome, Jane")
		require.NotContains(t, subjects(br), "Bravo's own")
	})

	t.Run("SignInWithNamirasoftAccount", func(t *testing.T) {
		br := root.For(t)
		br.Navigate(s.base + "/console/signin")
		if br.Exists(".signout button") {
			br.Status(chromedp.Click(chromedp.CSS(".signout button"), chromedp.NodeVisible))
		}
		br.Click(`a[href="/console/signin/oidc"]`)
		br.WaitVisible("#signin-owner-a") // the provider's page, another origin
		require.True(t, strings.HasPrefix(br.Location(), s.idp.Issuer), br.Location())
		require.Equal(t, http.StatusOK, br.Status(chromedp.Click(chromedp.CSS("#signin-owner-a"), chromedp.NodeVisible)))
		require.Equal(t, s.base+"/console/", br.Location())
		require.Contains(t, br.Text(".who"), "Namirasoft Account · read, send, admin")
		require.Contains(t, subjects(br), "Welcome, Jane", "the account of the user's account claim")
		require.EqualValues(t, 1, s.idp.Logins())
		// Its sealed ID token calls ingest: the keys page lists A's key.
		require.Equal(t, http.StatusOK, br.NavigateStatus(s.base+"/console/keys"))
		require.Contains(t, br.Text("main table"), "bootstrap")
	})

	t.Run("Activity", func(t *testing.T) {
		br := root.For(t)
		s.signIn(t, br, s.a.APIKey)
		br.ScreenshotView("console-activity")
		filter := func() {
			require.Equal(t, http.StatusOK, br.Status(chromedp.Click(chromedp.CSS("form.filters button[type=submit]"), chromedp.NodeVisible)))
		}

		br.Select("#f-status", "DELIVERED")
		filter()
		require.Equal(t, []string{"Your invoice"}, subjects(br))
		require.Equal(t, "DELIVERED", br.Value("#f-status"), "the filter shown back")
		br.Select("#f-status", "SCHEDULED")
		filter()
		require.ElementsMatch(t, []string{"Weekly digest", "Reminder"}, subjects(br))

		br.Navigate(s.base + "/console/")
		br.Fill("#f-recipient", "jane@example.com")
		filter()
		require.ElementsMatch(t, []string{"Welcome, Jane", "Weekly digest"}, subjects(br))
		require.Contains(t, br.Text("table.messages tbody"), "jane@example.com, joe@example.com", "the recipients column")

		br.Navigate(s.base + "/console/")
		br.Fill("#f-tag", "campaign=spring")
		filter()
		require.Equal(t, []string{"Welcome, Jane"}, subjects(br))

		// Cursor paging: 52 bulk messages, 50 a page.
		br.Navigate(s.base + "/console/")
		br.Fill("#f-tag", "campaign=bulk")
		filter()
		first := subjects(br)
		require.Len(t, first, 50)
		require.Equal(t, http.StatusOK, br.Status(chromedp.Click(chromedp.CSS(`a[rel="next"]`), chromedp.NodeVisible)))
		second := subjects(br)
		require.Len(t, second, 2)
		require.Equal(t, "campaign=bulk", br.Value("#f-tag"), "the filter kept across pages")
		require.False(t, br.Exists(`a[rel="next"]`), "the last page")
		all := append(slices.Clone(first), second...)
		slices.Sort(all)
		require.Len(t, slices.Compact(all), 52, "every message once")
	})

	t.Run("Message", func(t *testing.T) {
		br := root.For(t)
		s.signIn(t, br, s.a.APIKey)
		require.Equal(t, http.StatusOK, br.Status(chromedp.Click(chromedp.CSS(`a[href="/console/messages/`+welcome+`"]`), chromedp.NodeVisible)))
		require.Equal(t, "Welcome, Jane", br.Text("h1"))
		rcpts := br.Text("table tbody")
		require.Contains(t, rcpts, "jane@example.com")
		require.Contains(t, rcpts, "joe@example.com")
		require.Contains(t, rcpts, "cc")
		timeline := br.Text("ol.timeline")
		require.Contains(t, timeline, "ACCEPTED")
		require.Contains(t, timeline, "SENT")
		require.Contains(t, timeline, "250 2.0.0 Ok: queued as 4F1C2", "the provider's answer")
		require.Contains(t, br.Text("main"), "X-Campaign")
		// The body: a sandboxed iframe (no scripts, no same origin).
		require.True(t, headless.Eval[bool](br, `document.querySelector('iframe.body').getAttribute('sandbox') === ''`), "sandbox attribute")
		require.Equal(t, "no-referrer", br.Attribute("iframe.body", "referrerpolicy"))
		require.Contains(t, br.Attribute("iframe.body", "srcdoc"), "Welcome aboard, Jane")
		// It is drawn: the frame has a box, and its document loaded.
		require.Greater(t, headless.Eval[float64](br, `document.querySelector('iframe.body').getBoundingClientRect().height`), 50.0)
		// The timeline and the body in the picture.
		headless.Eval[bool](br, `(() => { window.scrollTo(0, document.querySelector('ol.timeline').getBoundingClientRect().top + window.scrollY - 300); return true; })()`)
		br.ScreenshotView("console-message")
		// Nothing remote was loaded: the tracker (an allowed origin) saw no
		// request, and the guard fails the test for the other.
		time.Sleep(300 * time.Millisecond)
		require.Zero(t, s.trackerHits.Load(), "the body's remote image was loaded")
		require.NotEqual(t, "pwned", br.Title(), "the body's script ran")
		for _, r := range br.Requests() {
			require.NotContains(t, r, "tracker", "requested: %s", r)
		}
	})

	t.Run("CancelScheduled", func(t *testing.T) {
		br := root.For(t)
		s.signIn(t, br, s.a.APIKey)
		id := s.send(t, "", &emailsenderv1.EmailMessage{To: to("sam@example.com"), Subject: "Cancel me", TextBody: "x"}, time.Now().Add(time.Hour))
		br.Navigate(s.base + "/console/messages/" + id)
		require.Equal(t, "scheduled", br.Text(".facts .status"))
		cancel := `form[action="/console/messages/` + id + `/cancel"] button`
		require.Equal(t, http.StatusOK, br.Status(chromedp.Click(chromedp.CSS(cancel), chromedp.NodeVisible)))
		require.Equal(t, []string{"Cancel this scheduled message?"}, br.Dialogs())
		require.Equal(t, s.base+"/console/messages/"+id, br.Location())
		require.Equal(t, "canceled", br.Text(".facts .status"))
		require.False(t, br.Exists(cancel), "no Cancel once canceled")
		got, err := s.apiA.GetMessage(context.Background(), &emailsenderv1.GetMessageRequest{MessageId: id})
		require.NoError(t, err)
		require.Equal(t, emailsenderv1.MessageStatus_CANCELED, got.GetMessage().GetStatus())
	})

	t.Run("LiveEvents", func(t *testing.T) {
		br := root.For(t)
		s.signIn(t, br, s.a.APIKey)
		br.WaitText(".live .live-state", "connected")
		id := s.send(t, "", &emailsenderv1.EmailMessage{To: to("live@example.com"), Subject: "Live one", TextBody: "live"}, time.Time{})
		// The new message's ACCEPTED event appears without a reload.
		br.WaitVisible(`#live a[href="/console/messages/` + id + `"]`)
		require.Contains(t, br.Text("#live li"), "ACCEPTED")
		require.Equal(t, s.base+"/console/", br.Location())

		// On the message page, its next event.
		br.Navigate(s.base + "/console/messages/" + id)
		br.WaitText(".live .live-state", "connected")
		ev := event(s.acc(s.a), id, queue.EventSent, msgstatus.Sent, 1, time.Now(), "live@example.com")
		s.publish(t, context.Background(), ev)
		br.WaitText(".live ol", "SENT")
	})

	t.Run("Dashboard", func(t *testing.T) {
		br := root.For(t)
		s.signIn(t, br, s.a.APIKey)
		br.Click(`nav a[href="/console/dashboard"]`)
		br.WaitVisible("#outcomes-figure svg")
		require.Greater(t, br.Count("#outcomes-figure svg rect"), 0)
		// What the API says (welcome is SENT, and the live one once
		// LiveEvents ran; invoice DELIVERED, reset BOUNCED).
		want := map[string]float64{}
		totals := br.Text("ul.totals")
		for _, st := range []emailsenderv1.MessageStatus_Value{emailsenderv1.MessageStatus_SENT, emailsenderv1.MessageStatus_DELIVERED,
			emailsenderv1.MessageStatus_BOUNCED, emailsenderv1.MessageStatus_COMPLAINED, emailsenderv1.MessageStatus_FAILED} {
			list, err := s.apiA.ListMessages(context.Background(), &emailsenderv1.ListMessagesRequest{Statuses: []emailsenderv1.MessageStatus_Value{st}})
			require.NoError(t, err)
			name := strings.ToLower(st.String())
			want[name] = float64(len(list.GetMessages()))
			require.Contains(t, totals, fmt.Sprintf("%d %s", len(list.GetMessages()), name))
		}
		require.Equal(t, 1.0, want["delivered"])
		require.Equal(t, 1.0, want["bounced"])
		require.GreaterOrEqual(t, want["sent"], 1.0)
		// The chart's data table: each series' column summed over the hours.
		br.Click("#outcomes-figure summary")
		br.WaitVisible("#outcomes-figure table")
		sums := headless.Eval[map[string]float64](br, `(() => {
			const t = document.querySelector('#outcomes-figure table');
			const names = [...t.querySelectorAll('thead th')].slice(1).map(th => th.textContent.trim());
			const out = {};
			names.forEach(n => out[n] = 0);
			t.querySelectorAll('tbody tr').forEach(tr => [...tr.querySelectorAll('td')].forEach((td, i) => out[names[i]] += Number(td.textContent)));
			return out; })()`)
		require.Equal(t, want, sums)
		require.Equal(t, 24, br.Count("#outcomes-figure table tbody tr"), "24 hours")
		br.Click("#outcomes-figure summary") // closed again for the screenshot
		br.ScreenshotView("console-dashboard")
	})

	t.Run("RevokeKey", func(t *testing.T) {
		br := root.For(t)
		s.signIn(t, br, s.a.APIKey)
		br.Click(`nav a[href="/console/keys"]`)
		br.WaitVisible("#key-name")
		br.Fill("#key-name", "chromium-ci")
		br.Click(`input[name=scope][value=send]`) // read only
		require.Equal(t, http.StatusCreated, br.Status(chromedp.Click(chromedp.CSS(`form[action="/console/keys"] button[type=submit]`), chromedp.NodeVisible)))
		secret := br.Value("#secret")
		require.True(t, strings.HasPrefix(secret, "es_"), secret)
		br.ScreenshotView("console-keys")
		// It works through the API.
		_, err := s.client.ListMessages(authed(account{key: secret}), &emailsenderv1.ListMessagesRequest{})
		require.NoError(t, err)
		// Shown once.
		br.Navigate(s.base + "/console/keys")
		require.NotContains(t, headless.Eval[string](br, `document.documentElement.outerHTML`), secret)
		revoke := `button[aria-label^="Revoke the key chromium-ci "]`
		require.Equal(t, http.StatusOK, br.Status(chromedp.Click(chromedp.CSS(revoke), chromedp.NodeVisible)))
		dialogs := br.Dialogs()
		require.Len(t, dialogs, 1, "a confirmation")
		require.Contains(t, dialogs[0], "Revoke the key chromium-ci")
		require.False(t, br.Exists(revoke))
		require.Contains(t, br.Text("main table"), "revoked")
		// The key no longer signs in, nor calls the API.
		br.Click(".signout button")
		br.WaitVisible("#api_key")
		br.Fill("#api_key", secret)
		require.Equal(t, http.StatusUnauthorized, br.Status(chromedp.Click(chromedp.CSS(`form[action="/console/signin"] button`), chromedp.NodeVisible)))
		require.Contains(t, br.Text(".error"), "Invalid, revoked or expired API key")
		_, err = s.client.ListMessages(authed(account{key: secret}), &emailsenderv1.ListMessagesRequest{})
		require.Equal(t, codes.Unauthenticated, status.Code(err))
	})

	t.Run("Templates", func(t *testing.T) {
		ctx := context.Background()
		created, err := s.apiA.CreateTemplate(ctx, &emailsenderv1.CreateTemplateRequest{Alias: "order-shipped", Name: "Order shipped",
			Content: &emailsenderv1.TemplateContent{Subject: "Your order {{order}} shipped", Html: "<p>Hi {{name}}, order {{order}} is on its way.</p>",
				Variables: []*emailsenderv1.TemplateVariable{{Name: "name", Type: "string", Required: true}, {Name: "order", Type: "string", Required: true}}}})
		require.NoError(t, err)
		id := created.GetTemplate().GetId()
		br := root.For(t)
		s.signIn(t, br, s.a.APIKey)
		br.Click(`nav a[href="/console/templates"]`)
		require.Contains(t, br.Text("main table"), "Order shipped")
		require.Equal(t, http.StatusOK, br.Status(chromedp.Click(chromedp.CSS(`a[href="/console/templates/`+id+`"]`), chromedp.NodeVisible)))
		// The preview of the stored content, with the sample data (each
		// variable's name).
		br.WaitText("#pv-subject", "Your order order shipped")
		require.True(t, headless.Eval[bool](br, `document.getElementById('pv-html').getAttribute('sandbox') === ''`), "sandbox attribute")
		// Edit: the preview follows (debounced), errors show line and column.
		br.Fill("#tpl-subject", "Order {{order}} is on its way, {{name}}")
		br.WaitText("#pv-subject", "Order order is on its way, name")
		br.Fill("#tpl-html", "<h1 style=\"color:#0b5394\">Hi {{name}}</h1>\n<p>{{#each items}}x{{/if}}</p>")
		require.Contains(t, br.WaitText("#pv-error", "line 2, column"), "html")
		// (chromedp's Clear empties a textarea once: later values are set as
		// a paste would, with an input event.)
		setValue(br, "#tpl-html", `<h1 style="color:#0b5394">Hi {{name}}</h1><p>Order {{order}} ships from {{warehouse}}.</p><img src="`+s.tracker.URL+`/t.gif" alt=""><script>parent.document.title = "pwned"</script>`)
		br.WaitText("#pv-missing", "warehouse")
		require.True(t, headless.Eval[bool](br, `document.getElementById('pv-error').hidden`))
		require.Contains(t, br.Attribute("#pv-html", "srcdoc"), `Hi name</h1>`)
		require.Contains(t, br.Attribute("#pv-html", "srcdoc"), "Content-Security-Policy")
		setValue(br, "#tpl-data", `{"name": "<b>Ann</b>", "order": "A-1042", "warehouse": "Leeds", "coupon": "X"}`)
		br.WaitText("#pv-unused", "coupon")
		require.Contains(t, br.Attribute("#pv-html", "srcdoc"), "Hi &lt;b&gt;Ann&lt;/b&gt;")
		require.Equal(t, "Order A-1042 is on its way, <b>Ann</b>", br.Text("#pv-subject"))
		require.Greater(t, headless.Eval[float64](br, `document.getElementById('pv-html').getBoundingClientRect().height`), 50.0)
		headless.Eval[bool](br, `(() => { window.scrollTo(0, document.getElementById('template-editor').getBoundingClientRect().top + window.scrollY - 20); return true; })()`)
		br.ScreenshotView("console-template")
		time.Sleep(300 * time.Millisecond)
		require.Zero(t, s.trackerHits.Load(), "the preview's remote image was loaded")
		require.NotEqual(t, "pwned", br.Title(), "the preview's script ran")
		// Save as draft (version 2), publish it.
		require.Equal(t, http.StatusOK, br.Status(chromedp.Click(chromedp.CSS(`#template-editor button[type=submit]`), chromedp.NodeVisible)))
		require.Contains(t, br.Text("main table"), "v2")
		require.Equal(t, http.StatusOK, br.Status(chromedp.Click(chromedp.CSS(`button[aria-label="Publish version 2"]`), chromedp.NodeVisible)))
		require.False(t, br.Exists(`button[aria-label="Publish version 2"]`))
		require.Contains(t, br.Text("main .facts"), "version 2")
		// A send with it: the Message page's timeline names the version.
		vars, err := structpb.NewStruct(map[string]any{"name": "Ann", "order": "A-1042", "warehouse": "Leeds"})
		require.NoError(t, err)
		sent, err := s.apiA.Send(ctx, &emailsenderv1.SendEmailRequest{Message: &emailsenderv1.EmailMessage{
			From: &emailsenderv1.Address{Address: "news@a.example"}, To: to("ann@example.com")},
			Template: &emailsenderv1.TemplateRef{Template: "order-shipped", Variables: vars}})
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			m, err := s.client.GetMessage(authed(s.acc(s.a)), &emailsenderv1.GetMessageRequest{MessageId: sent.GetMessageId()})
			return err == nil && len(m.GetEvents()) > 0
		}, 10*time.Second, 50*time.Millisecond)
		br.Navigate(s.base + "/console/messages/" + sent.GetMessageId())
		require.Contains(t, br.Text("ol.timeline"), "rendered from template order-shipped ("+id+") version 2")
	})

	t.Run("ForgedCrossSitePost", func(t *testing.T) {
		ctx := context.Background()
		// A key of A and a scheduled message, the targets.
		k, err := s.apiA.CreateAPIKey(ctx, &emailsenderv1.CreateApiKeyRequest{Name: "target", Scopes: []string{"read"}})
		require.NoError(t, err)
		later := s.msgs["later"]
		var forged atomic.Value
		evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write([]byte(forged.Load().(string)))
		}))
		t.Cleanup(evil.Close)
		// The same site (another port of 127.0.0.1: the session cookie goes
		// along) and another site (localhost: it does not).
		_, port, _ := net.SplitHostPort(evil.Listener.Addr().String())
		origins := []string{evil.URL, "http://localhost:" + port}
		br := root.For(t)
		for _, o := range origins {
			br.Allow(o)
		}
		s.signIn(t, br, s.a.APIKey)
		// The worst case: the attacker even knows the session's CSRF token.
		token := br.Value("input[name=csrf]")
		for _, o := range origins {
			for _, action := range []string{"/console/keys/" + k.GetKey().GetId() + "/revoke", "/console/messages/" + later + "/cancel"} {
				forged.Store(`<!doctype html><html lang="en"><head><title>Win a prize</title><link rel="icon" href="data:,"></head><body>
<form id="f" method="post" action="` + html.EscapeString(s.base+action) + `"><input type="hidden" name="csrf" value="` + html.EscapeString(token) + `"></form>
<script>addEventListener('load', () => document.getElementById('f').submit())</script></body></html>`)
				br.Navigate(o + "/")
				br.WaitText("main", "did not come from the console's own pages")
				require.Equal(t, s.base+action, br.Location(), o)
				require.True(t, strings.HasPrefix(br.Title(), "Forbidden"), br.Title())
			}
		}
		// Nothing happened: the key signs in, the message is still scheduled.
		_, err = s.client.ListMessages(authed(account{key: k.GetSecret()}), &emailsenderv1.ListMessagesRequest{})
		require.NoError(t, err, "the key was revoked")
		got, err := s.apiA.GetMessage(ctx, &emailsenderv1.GetMessageRequest{MessageId: later})
		require.NoError(t, err)
		require.Equal(t, emailsenderv1.MessageStatus_SCHEDULED, got.GetMessage().GetStatus())
		// And the victim is still signed in.
		require.Equal(t, http.StatusOK, br.NavigateStatus(s.base+"/console/"))
		require.Equal(t, s.base+"/console/", br.Location())
	})

	t.Run("Isolation", func(t *testing.T) {
		ctx := context.Background()
		hook, delivery := s.hook, s.delivery
		senders, err := s.apiA.ListSenders(ctx)
		require.NoError(t, err)
		require.NotEmpty(t, senders.GetSenders())
		senderA := senders.GetSenders()[0].GetId()
		_, err = s.apiA.AddSuppression(ctx, &emailsenderv1.AddSuppressionRequest{Address: "gone@a.example", Reason: "complaint"})
		require.NoError(t, err)
		digest := s.msgs["digest"]
		tplA, err := s.apiA.CreateTemplate(ctx, &emailsenderv1.CreateTemplateRequest{Alias: "a-private", Name: "A's private template",
			Content: &emailsenderv1.TemplateContent{Subject: "A-only subject", Html: "<p>A-only body</p>"}})
		require.NoError(t, err)
		tplID := tplA.GetTemplate().GetId()

		br := root.For(t)
		s.signIn(t, br, s.b.APIKey)
		secrets := []string{s.a.AccountID, welcome, digest, hook, delivery, s.a.ProviderID, s.a.APIKeyID, senderA,
			"Welcome, Jane", "jane@example.com", "hooks.a.example", "gone@a.example", "a.example", "Newsletter", "Welcome aboard",
			tplID, "a-private", "A's private template", "A-only"}
		check := func(what string, code int, codes ...int) {
			t.Helper()
			require.Contains(t, codes, code, "%s answered %d", what, code)
			body := headless.Eval[string](br, `document.body.innerText`)
			for _, sec := range secrets {
				require.NotContains(t, body, sec, "%s shows %s", what, sec)
			}
		}
		require.Contains(t, subjects(br), "Bravo's own", "B signed in")
		for _, p := range []string{"/console/messages/" + welcome, "/console/messages/" + digest, "/console/templates/" + tplID} {
			check(p, br.NavigateStatus(s.base+p), http.StatusNotFound)
		}
		check("A's delivery log", br.NavigateStatus(s.base+"/console/webhooks/"+hook+"/deliveries"), http.StatusNotFound, http.StatusOK)
		// Pages that list: B's own only, whatever the filter.
		for _, p := range []string{"/console/", "/console/?tag=campaign%3Dspring", "/console/?recipient=jane%40example.com",
			"/console/?provider=" + s.a.ProviderID, "/console/dashboard", "/console/keys", "/console/webhooks",
			"/console/senders", "/console/suppressions", "/console/providers", "/console/usage", "/console/account", "/console/templates"} {
			// The filter typed is shown back in its input, not in the text.
			check(p, br.NavigateStatus(s.base+p), http.StatusOK)
		}
		// Every action on A's ids, with B's own CSRF token.
		for _, a := range []struct {
			path   string
			fields url.Values
		}{
			{"/console/keys/" + s.a.APIKeyID + "/revoke", nil},
			{"/console/messages/" + digest + "/cancel", nil},
			{"/console/webhooks/" + hook + "/delete", nil},
			{"/console/webhooks/" + hook + "/deliveries/" + delivery + "/replay", nil},
			{"/console/providers/" + s.a.ProviderID + "/verify", nil},
			{"/console/senders/" + senderA + "/verify", url.Values{"code": {"123456"}}},
			{"/console/senders/" + senderA + "/remove", nil},
			{"/console/account/delete", url.Values{"confirm": {s.a.AccountID}}},
			{"/console/templates/" + tplID, url.Values{"subject": {"B was here"}, "html": {"<p>B</p>"}}},
			{"/console/templates/" + tplID + "/publish", url.Values{"version": {"1"}}},
		} {
			br.Navigate(s.base + "/console/")
			check(a.path, submitForm(br, s.base+a.path, a.fields), http.StatusNotFound, http.StatusForbidden, http.StatusBadRequest)
		}
		br.Navigate(s.base + "/console/suppressions")
		submitForm(br, s.base+"/console/suppressions/remove", url.Values{"address": {"gone@a.example"}})

		// A is untouched.
		tplGot, err := s.apiA.GetTemplate(ctx, tplID, 0)
		require.NoError(t, err)
		require.EqualValues(t, 1, tplGot.GetTemplate().GetLatestVersion(), "B added a version to A's template")
		require.Zero(t, tplGot.GetTemplate().GetPublishedVersion(), "B published A's template")
		keys, err := s.apiA.ListAPIKeys(ctx)
		require.NoError(t, err)
		for _, k := range keys.GetKeys() {
			if k.GetId() == s.a.APIKeyID {
				require.Nil(t, k.GetRevokedAt(), "A's key revoked")
			}
		}
		got, err := s.apiA.GetMessage(ctx, &emailsenderv1.GetMessageRequest{MessageId: digest})
		require.NoError(t, err)
		require.Equal(t, emailsenderv1.MessageStatus_SCHEDULED, got.GetMessage().GetStatus())
		require.True(t, s.webhookExists(t, hook))
		var state string
		require.NoError(t, s.db.Pool.QueryRow(ctx, `SELECT state FROM webhook_deliveries WHERE id = $1`, delivery).Scan(&state))
		require.Equal(t, "failed", state, "A's delivery replayed")
		senders, err = s.apiA.ListSenders(ctx)
		require.NoError(t, err)
		require.Len(t, senders.GetSenders(), 1)
		sup, err := s.apiA.ListSuppressions(ctx, &emailsenderv1.ListSuppressionsRequest{})
		require.NoError(t, err)
		require.Len(t, sup.GetSuppressions(), 1, "A's suppression removed")
		var n int
		require.NoError(t, s.db.Pool.QueryRow(ctx, `SELECT count(*) FROM accounts WHERE id = $1`, s.a.AccountID).Scan(&n))
		require.Equal(t, 1, n)
	})

	t.Run("PhoneAndKeyboard", func(t *testing.T) {
		br := root.For(t)
		// Keyboard: Tab to the key, type it, Enter.
		br.Navigate(s.base + "/console/signin")
		if br.Exists(".signout button") {
			br.Status(chromedp.Click(chromedp.CSS(".signout button"), chromedp.NodeVisible))
		}
		var order []string
		for range 10 {
			br.Keys(kb.Tab)
			id := headless.Eval[string](br, `document.activeElement.id || document.activeElement.tagName + ' ' + document.activeElement.textContent.trim()`)
			order = append(order, id)
			if id == "api_key" {
				break
			}
		}
		require.Equal(t, "api_key", order[len(order)-1], "Tab order %q", order)
		br.Keys(s.a.APIKey)
		require.Equal(t, http.StatusOK, br.Status(chromedp.KeyEvent(kb.Enter)))
		require.Equal(t, s.base+"/console/", br.Location())

		// Every control of every page has a label.
		pages := []string{"/console/", "/console/messages/" + welcome, "/console/dashboard", "/console/keys", "/console/providers",
			"/console/senders", "/console/suppressions", "/console/webhooks", "/console/webhooks/" + s.hook + "/deliveries", "/console/usage", "/console/account"}
		for _, p := range pages {
			require.Equal(t, http.StatusOK, br.NavigateStatus(s.base+p), p)
			require.Empty(t, headless.Eval[[]string](br, unlabelled), "%s: controls without a label", p)
		}

		// Phone width: no horizontal scroll of the page.
		br.Viewport(390, 844)
		for _, p := range pages {
			br.Navigate(s.base + p)
			require.Empty(t, headless.Eval[[]string](br, overflow), "%s at 390 px: the page scrolls sideways", p)
			if p == "/console/" {
				br.ScreenshotView("console-phone-activity")
			}
		}
		// The sign-in page too.
		br.Click(".signout button")
		br.WaitVisible("#api_key")
		require.Empty(t, headless.Eval[[]string](br, unlabelled), "sign-in: controls without a label")
		require.Empty(t, headless.Eval[[]string](br, overflow), "sign-in at 390 px")
		br.Viewport(1280, 800)
	})
	t.Logf("suite: %s", time.Since(start).Round(time.Millisecond))
}
