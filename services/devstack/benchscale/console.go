package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/services/report"
)

// The console phase: the report's web console (services/report/console) on
// the report's HTTP listener, signed in through its sign-in forms as a
// browser is, each page fetched with net/http and timed to its first
// response byte (httptrace's GotFirstResponseByte) and to its last.
//
// Only the pages the report serves from its own database are measured:
// Activity (every filter), Message, Dashboard, and the operator view. The
// Webhooks page is left out: the harness's keys have the read scope only,
// which does not reach WebhookService. The pages that call ingest (keys, senders, suppressions, usage,
// providers, templates) need an ingest service (CONSOLE_INGEST_ADDR), which
// the harness does not start.

// consolePhase is the name -only selects the console phase by (each page is
// named consolePhase + "-" + its name, so -only console-activity selects
// the Activity pages).
const consolePhase = "console"

// consoleConfig is the report's configuration with the console on over
// plain HTTP on loopback (CONSOLE_DEV_LOOPBACK_HTTP) and an operator token
// of the harness (OPERATOR_TOKEN_SHA256).
func consoleConfig(s *reportService) (report.Config, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return report.Config{}, err
	}
	s.operatorToken = "bench-scale-operator-" + hex.EncodeToString(b[:])
	h := sha256.Sum256([]byte(s.operatorToken))
	cfg := report.Config{HTTPAddr: "off"}
	cfg.Console.DevLoopbackHTTP = true
	cfg.Console.OperatorTokens = "bench-scale:" + hex.EncodeToString(h[:])
	return cfg, nil
}

// consolePage is one page of the console asked for again and again.
type consolePage struct {
	name string
	// paths are cycled through, call i uses paths[i % len].
	paths []string
	// account is "big", "small" or "operator".
	account string
	br      *consoleBrowser
}

// ConsoleResult is one console page measured for one account (the
// operator view: for the operator session).
type ConsoleResult struct {
	Page    string `json:"page"`
	Path    string `json:"path"`
	Account string `json:"account"`
	Calls   int    `json:"calls"`
	// FirstByte: from sending the request to the first byte of the
	// response; Total: to its last byte.
	FirstByteP50ms float64 `json:"first_byte_p50_ms"`
	FirstByteP95ms float64 `json:"first_byte_p95_ms"`
	FirstByteMaxMs float64 `json:"first_byte_max_ms"`
	TotalP50ms     float64 `json:"total_p50_ms"`
	TotalP95ms     float64 `json:"total_p95_ms"`
	// Bytes of the last answer's body.
	Bytes int  `json:"bytes"`
	Met   bool `json:"met"`
}

// consoleBrowser is a cookie-keeping client that does not follow redirects
// and sends what a browser sends with a same-origin form post.
type consoleBrowser struct {
	c    *http.Client
	base string
}

func newConsoleBrowser(base string) (*consoleBrowser, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, err
	}
	return &consoleBrowser{base: base, c: &http.Client{
		Jar: jar, Timeout: time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// signIn posts a sign-in form (path, field=secret) from the console's own
// origin and expects the redirect to want.
func (br *consoleBrowser) signIn(ctx context.Context, path, field, secret, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, br.base+path, strings.NewReader(url.Values{field: {secret}}.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", br.base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := br.c.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
		return fmt.Errorf("sign-in at %s: %s, location %q: %s", path, resp.Status, resp.Header.Get("Location"), shorten(string(body), 300))
	}
	return nil
}

// get fetches a page as a browser navigating to it and returns the time to
// its first response byte, to its end, and its size.
func (br *consoleBrowser) get(ctx context.Context, path string) (firstByte, total time.Duration, n int, err error) {
	var start, first time.Time
	trace := &httptrace.ClientTrace{GotFirstResponseByte: func() { first = time.Now() }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, br.base+path, nil)
	if err != nil {
		return 0, 0, 0, err
	}
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	start = time.Now()
	resp, err := br.c.Do(req)
	if err != nil {
		return 0, 0, 0, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	end := time.Now()
	if err != nil {
		return 0, 0, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, 0, fmt.Errorf("GET %s: %s (location %q): %s", path, resp.Status, resp.Header.Get("Location"), shorten(string(body), 300))
	}
	return first.Sub(start), end.Sub(start), len(body), nil
}

// consolePages signs in as each account (its API key, the sign-in form) and
// as the operator, and returns the pages to measure.
func consolePages(ctx context.Context, svc *reportService, accounts []*benchAccount, ref time.Time) ([]consolePage, error) {
	const day = 24 * time.Hour
	minute := func(t time.Time) string { return t.UTC().Format("2006-01-02T15:04") }
	var out []consolePage
	for _, a := range accounts {
		br, err := newConsoleBrowser(svc.httpBase)
		if err != nil {
			return nil, err
		}
		if err := br.signIn(ctx, "/console/signin", "api_key", a.key, "/console/"); err != nil {
			return nil, fmt.Errorf("the %s account: %w", a.label, err)
		}
		activity := func(q url.Values) []string { return []string{"/console/?" + q.Encode()} }
		msgs := make([]string, len(a.sampled))
		for i, id := range a.sampled {
			msgs[i] = "/console/messages/" + id
		}
		pages := []consolePage{
			{name: "activity", paths: []string{"/console/"}},
			{name: "activity-status", paths: activity(url.Values{"status": {msgstatus.Bounced.String()}})},
			{name: "activity-recipient", paths: activity(url.Values{"recipient": {a.typical}})},
			{name: "activity-recipient-top", paths: activity(url.Values{"recipient": {topRecipient}})},
			{name: "activity-tag", paths: activity(url.Values{"tag": {campaignTagKey + "=" + rareCampaign()}})},
			{name: "activity-tag-common", paths: activity(url.Values{"tag": {commonTagKey + "=" + commonTagValue}})},
			{name: "activity-subject-common", paths: activity(url.Values{"subject": {"on its way"}})},
			{name: "activity-subject-none", paths: activity(url.Values{"subject": {"no such subject"}})},
			{name: "activity-deep", paths: activity(url.Values{"page": {a.deepToken}})},
			{name: "activity-range-recent", paths: activity(url.Values{"after": {minute(ref.Add(-day))}, "before": {minute(ref)}})},
			{name: "activity-range-old", paths: activity(url.Values{"after": {minute(ref.Add(-45 * day))}, "before": {minute(ref.Add(-44 * day))}})},
			{name: "message", paths: msgs},
			{name: "dashboard", paths: []string{"/console/dashboard"}},
		}
		for i := range pages {
			pages[i].name = consolePhase + "-" + pages[i].name
			pages[i].account, pages[i].br = a.label, br
		}
		out = append(out, pages...)
	}
	op, err := newConsoleBrowser(svc.httpBase)
	if err != nil {
		return nil, err
	}
	if err := op.signIn(ctx, "/console/operator/signin", "operator_token", svc.operatorToken, "/console/operator/"); err != nil {
		return nil, fmt.Errorf("the operator: %w", err)
	}
	out = append(out, consolePage{name: consolePhase + "-operator", paths: []string{"/console/operator/"}, account: "operator", br: op})
	return out, nil
}

// selected: whether -only selects a name (every name when it is empty).
func selected(name, only string) bool {
	if only == "" {
		return true
	}
	for _, w := range strings.Split(only, ",") {
		if w = strings.TrimSpace(w); w != "" && strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// measureConsole makes o.warmup unmeasured fetches of the page, then
// o.calls measured ones, one at a time.
func measureConsole(ctx context.Context, p consolePage, o options) (ConsoleResult, error) {
	res := ConsoleResult{Page: p.name, Path: p.paths[0], Account: p.account, Calls: o.calls}
	if len(p.paths) > 1 {
		res.Path = fmt.Sprintf("%d pages like %s", len(p.paths), p.paths[0])
	}
	for i := range o.warmup {
		if _, _, _, err := p.br.get(ctx, p.paths[i%len(p.paths)]); err != nil {
			return res, err
		}
	}
	firsts := make([]time.Duration, 0, o.calls)
	totals := make([]time.Duration, 0, o.calls)
	for i := range o.calls {
		f, t, n, err := p.br.get(ctx, p.paths[(o.warmup+i)%len(p.paths)])
		if err != nil {
			return res, err
		}
		firsts, totals = append(firsts, f), append(totals, t)
		res.Bytes = n
	}
	slices.Sort(firsts)
	slices.Sort(totals)
	res.FirstByteP50ms, res.FirstByteP95ms = ms(percentile(firsts, 0.50)), ms(percentile(firsts, 0.95))
	res.FirstByteMaxMs = ms(firsts[len(firsts)-1])
	res.TotalP50ms, res.TotalP95ms = ms(percentile(totals, 0.50)), ms(percentile(totals, 0.95))
	res.Met = res.FirstByteP95ms < ms(o.consoleTarget)
	return res, nil
}

// consoleMarkdown is the console's table: first-byte p50/p95 per page for
// each account, and the total p95.
func (r *Results) consoleMarkdown(b *strings.Builder) {
	if len(r.Console) == 0 {
		return
	}
	fmt.Fprintf(b, "\n**Console** (services/report/console on the report's HTTP listener, signed in through its sign-in form with each account's API key, and with an operator token for the operator view): each page %d times one after another with net/http after a warm-up; time to the first response byte (httptrace GotFirstResponseByte) p50/p95 and to the last byte p95, in ms; target first byte p95 < %.0f ms. ",
		r.Console[0].Calls, r.ConsoleTargetMS)
	b.WriteString("Not measured: the pages that call ingest (API keys, senders, suppressions, usage, providers, templates), since the harness starts no ingest.\n\n")
	type pair struct{ big, small *ConsoleResult }
	var order []string
	byName := map[string]*pair{}
	for i := range r.Console {
		c := &r.Console[i]
		pr := byName[c.Page]
		if pr == nil {
			pr = &pair{}
			byName[c.Page] = pr
			order = append(order, c.Page)
		}
		if c.Account == "small" {
			pr.small = c
		} else {
			pr.big = c
		}
	}
	b.WriteString("| page | path | big first byte p50 | big first byte p95 | small first byte p50 | small first byte p95 | big total p95 | small total p95 | target | |\n|---|---|---:|---:|---:|---:|---:|---:|---|---|\n")
	allMet := true
	for _, name := range order {
		pr := byName[name]
		cell := func(c *ConsoleResult, f func(*ConsoleResult) float64) string {
			if c == nil {
				return "–"
			}
			return fmt.Sprintf("%.2f", f(c))
		}
		met, path, label := true, "", name
		for _, c := range []*ConsoleResult{pr.big, pr.small} {
			if c != nil {
				met = met && c.Met
				if path == "" {
					path = c.Path
				}
			}
		}
		if pr.big != nil && pr.big.Account == "operator" {
			label += " (operator session, in the big columns)"
		}
		allMet = allMet && met
		verdict := "met"
		if !met {
			verdict = "**missed**"
		}
		fmt.Fprintf(b, "| %s | `%s` | %s | %s | %s | %s | %s | %s | < %.0f ms | %s |\n", label, shorten(path, 70),
			cell(pr.big, func(c *ConsoleResult) float64 { return c.FirstByteP50ms }), cell(pr.big, func(c *ConsoleResult) float64 { return c.FirstByteP95ms }),
			cell(pr.small, func(c *ConsoleResult) float64 { return c.FirstByteP50ms }), cell(pr.small, func(c *ConsoleResult) float64 { return c.FirstByteP95ms }),
			cell(pr.big, func(c *ConsoleResult) float64 { return c.TotalP95ms }), cell(pr.small, func(c *ConsoleResult) float64 { return c.TotalP95ms }),
			r.ConsoleTargetMS, verdict)
	}
	if allMet {
		fmt.Fprintf(b, "\nEvery console page met first byte p95 < %.0f ms.\n", r.ConsoleTargetMS)
	} else {
		fmt.Fprintf(b, "\nSome console pages missed first byte p95 < %.0f ms.\n", r.ConsoleTargetMS)
	}
}

// runConsole measures the console's pages -only selects (all of them when it
// is empty) and adds them to res.
func runConsole(ctx context.Context, svc *reportService, accounts []*benchAccount, ref time.Time, o options, res *Results, log interface {
	Info(msg string, args ...any)
}) error {
	pages, err := consolePages(ctx, svc, accounts, ref)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	for _, p := range pages {
		if !selected(p.name, o.only) {
			continue
		}
		m, err := measureConsole(ctx, p, o)
		if err != nil {
			return fmt.Errorf("console page %s (%s): %w", p.name, p.account, err)
		}
		log.Info("measured", "page", p.name, "account", p.account, "first_byte_p50_ms", m.FirstByteP50ms,
			"first_byte_p95_ms", m.FirstByteP95ms, "total_p95_ms", m.TotalP95ms, "bytes", m.Bytes)
		res.Console = append(res.Console, m)
	}
	return nil
}
