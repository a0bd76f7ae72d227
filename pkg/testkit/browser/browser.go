// Package browser drives a headless Chromium for end-to-end tests of the web
// console: Debian's chromium package (scripts/browser.sh installs it), started
// by chromedp with a fresh profile per test, and helpers that fail the test on
// error (navigate, wait, click, fill, read text, screenshot).
//
// Every request the browser makes is checked against the origins the test
// allowed: the browser's only proxy is a guard in the test process (with
// "<-loopback>", so loopback addresses go through it too), which forwards the
// allowed origins and refuses everything else, and the page's network events
// are watched as well. A request to any other host fails the test at its end,
// as does an uncaught JavaScript exception: the console makes no third-party
// request and runs no broken script.
//
// Screenshots go to $BROWSER_SCREENSHOTS (relative to the repository root)
// when it is set, otherwise to the test's temporary directory.
//
// A browser start costs about a second: one browser can serve a sequence of
// subtests (Browser.For), each checked at its own end. JavaScript dialogs
// (confirm before a destructive action) are accepted and recorded (Dialogs).
package browser

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Env names the environment variables the package reads.
const (
	// EnvPath overrides the browser binary (default /usr/bin/chromium).
	EnvPath = "CHROMIUM_PATH"
	// EnvScreenshots is the directory screenshots are written to, relative
	// to the repository root unless absolute (e.g. results/screenshots).
	EnvScreenshots = "BROWSER_SCREENSHOTS"
)

// DefaultPath is Debian's chromium.
const DefaultPath = "/usr/bin/chromium"

// Browser is one headless Chromium with one tab, closed in t.Cleanup.
type Browser struct {
	t       testing.TB
	ctx     context.Context
	timeout time.Duration
	guard   *guard
	shots   string
	s       *state
}

// state is what a Browser and its views (For) share.
type state struct {
	mu sync.Mutex
	// log is the test the browser's events are logged to (the innermost
	// view's); nil once the browser's own test has ended.
	log      testing.TB
	jsErrors []string
	dialogs  []string
}

type config struct {
	origins       []string
	timeout       time.Duration
	width, height int
	path          string
}

// Option configures New.
type Option func(*config)

// Allow lets the browser reach these origins ("http://127.0.0.1:1234"; a
// URL's path is ignored). Origins can be added later with Browser.Allow.
func Allow(origins ...string) Option {
	return func(c *config) { c.origins = append(c.origins, origins...) }
}

// Timeout bounds each helper's action (default 15s).
func Timeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WindowSize sets the window (default 1280x900).
func WindowSize(width, height int) Option {
	return func(c *config) { c.width, c.height = width, height }
}

// Path returns the browser binary: $CHROMIUM_PATH or /usr/bin/chromium.
func Path() string {
	if p := os.Getenv(EnvPath); p != "" {
		return p
	}
	return DefaultPath
}

// New starts a headless Chromium with a fresh profile, closed in t.Cleanup.
// The test is skipped when the browser is missing and -short is set, and
// fails otherwise (run scripts/browser.sh install).
func New(t testing.TB, opts ...Option) *Browser {
	t.Helper()
	cfg := config{timeout: 15 * time.Second, width: 1280, height: 900, path: Path()}
	for _, o := range opts {
		o(&cfg)
	}
	if _, err := exec.LookPath(cfg.path); err != nil {
		if testing.Short() {
			t.Skipf("browser: %s is missing (scripts/browser.sh install)", cfg.path)
		}
		t.Fatalf("browser: %s is missing: run scripts/browser.sh install", cfg.path)
	}
	g := newGuard(t)
	for _, o := range cfg.origins {
		if err := g.allow(o); err != nil {
			t.Fatalf("browser: %v", err)
		}
	}
	b := &Browser{t: t, timeout: cfg.timeout, guard: g, s: &state{log: t}}

	allocOpts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(cfg.path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(cfg.width, cfg.height),
		// The network is closed: anything Chromium does on its own (updates,
		// sync, QUIC probes) would be refused, so none of it is started.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,OptimizationGuideModelDownloading,MediaRouter,NetworkTimeServiceQuerying,AutofillServerCommunication,CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions,PrivacySandboxSettings4"),
		chromedp.Flag("disable-client-side-phishing-detection", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("safebrowsing-disable-auto-update", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		// Every request, loopback included, goes through the guard.
		chromedp.ProxyServer(g.url),
		chromedp.Flag("proxy-bypass-list", "<-loopback>"),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), allocOpts...)
	ctx, cancel := chromedp.NewContext(allocCtx,
		chromedp.WithListener(b.listen),
		chromedp.WithErrorf(func(format string, args ...any) { b.logf("chromedp: "+format, args...) }),
	)
	b.ctx = ctx
	t.Cleanup(func() {
		b.s.mu.Lock()
		b.s.log = nil
		b.s.mu.Unlock()
		cancel()
		cancelAlloc()
	})
	// The first Run starts the browser and binds it to ctx (no timeout:
	// later actions derive their own).
	start := time.Now()
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("browser: start %s: %v", cfg.path, err)
	}
	b.logf("browser: started in %s", time.Since(start).Round(time.Millisecond))
	// Runs before the browser is closed (cleanups run last-in first-out),
	// and before the screenshot directory, if temporary, is removed.
	_, _ = b.screenshotDir()
	t.Cleanup(b.check)
	return b
}

// For returns the browser for t, a subtest of the test that started it (or
// of one of its subtests): the same Chromium, tab and cookies, with helpers
// that fail t. At t's end, requests to origins not allowed and uncaught
// JavaScript exceptions since fail t, as they fail New's test at its end, and
// a screenshot is saved when t failed. Subtests sharing a browser must not
// run in parallel.
func (b *Browser) For(t testing.TB) *Browser {
	v := &Browser{t: t, ctx: b.ctx, timeout: b.timeout, guard: b.guard, s: b.s}
	b.s.mu.Lock()
	prev := b.s.log
	b.s.log = t
	b.s.mu.Unlock()
	// The directory of a failure's screenshot exists until check has run
	// (a TempDir made later would be removed before it).
	_, _ = v.screenshotDir()
	t.Cleanup(func() {
		v.check()
		b.s.mu.Lock()
		if b.s.log == t {
			b.s.log = prev
		}
		b.s.mu.Unlock()
	})
	return v
}

// Context is the tab's context, for chromedp actions the helpers lack. Derive
// a timeout from it; never use a timeout context for the first Run of a
// child context.
func (b *Browser) Context() context.Context { return b.ctx }

// Allow lets the browser reach one more origin.
func (b *Browser) Allow(origin string) {
	b.t.Helper()
	if err := b.guard.allow(origin); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

// Do runs chromedp actions with the timeout, failing the test on error.
func (b *Browser) Do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, b.timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fatal(err)
	}
}

// run runs one valued action with the timeout, failing the test on error.
func run[T any](b *Browser, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, b.timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.fatal(err)
	}
	return v
}

func (b *Browser) fatal(err error) {
	b.t.Helper()
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w (after %s)", err, b.timeout)
	}
	// The page as it was is saved by check, at the test's end.
	loc, _ := chromedp.Run(b.ctx, chromedp.Location())
	b.t.Fatalf("browser (at %s): %v", loc, err)
}

// Navigate loads url and waits for its load event. The URL's origin must be
// allowed.
func (b *Browser) Navigate(url string) {
	b.t.Helper()
	b.Do(chromedp.Navigate(url))
}

// Status runs actions that load a page (a click on a link or a submit
// button, a navigation) and returns the HTTP status of the document loaded.
func (b *Browser) Status(actions ...chromedp.Action[chromedp.Void]) int {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, b.timeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, actions...)
	if err != nil {
		b.fatal(err)
	}
	return int(resp.Status)
}

// NavigateStatus loads url and returns the HTTP status of its document (after
// redirects: the last response's).
func (b *Browser) NavigateStatus(url string) int {
	b.t.Helper()
	return b.Status(chromedp.Navigate(url))
}

// Keys types keys on the focused element as real key events (kb.Tab,
// kb.Enter and the like for special keys).
func (b *Browser) Keys(keys string) {
	b.t.Helper()
	b.Do(chromedp.KeyEvent(keys))
}

// Location is the tab's current URL.
func (b *Browser) Location() string {
	b.t.Helper()
	return run(b, chromedp.Location())
}

// Title is the document's title.
func (b *Browser) Title() string {
	b.t.Helper()
	return run(b, chromedp.Title())
}

// WaitVisible waits until an element matching the CSS selector is visible.
func (b *Browser) WaitVisible(sel string) {
	b.t.Helper()
	b.Do(chromedp.WaitVisible(chromedp.CSS(sel)))
}

// WaitGone waits until no element matches the CSS selector.
func (b *Browser) WaitGone(sel string) {
	b.t.Helper()
	b.Do(chromedp.WaitNotPresent(chromedp.CSS(sel)))
}

// WaitText waits until the first element matching sel has text containing
// want, and returns that text.
func (b *Browser) WaitText(sel, want string) string {
	b.t.Helper()
	deadline := time.Now().Add(b.timeout)
	var last string
	for {
		ctx, cancel := context.WithTimeout(b.ctx, time.Until(deadline))
		txt, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
		cancel()
		if err == nil {
			last = txt
			if strings.Contains(txt, want) {
				return txt
			}
		}
		if time.Now().After(deadline) {
			b.fatal(fmt.Errorf("%s: text %q never contained %q", sel, last, want))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Exists reports whether an element matches the CSS selector now (no wait).
func (b *Browser) Exists(sel string) bool {
	b.t.Helper()
	return run(b, chromedp.Evaluate[bool](fmt.Sprintf("document.querySelector(%s) !== null", jsString(sel))))
}

// Count is the number of elements matching the CSS selector now.
func (b *Browser) Count(sel string) int {
	b.t.Helper()
	return run(b, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%s).length", jsString(sel))))
}

// Click waits for the element to be visible and clicks it (a real mouse
// event at its centre).
func (b *Browser) Click(sel string) {
	b.t.Helper()
	b.Do(chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// Fill replaces an input's or textarea's value by typing value into it.
func (b *Browser) Fill(sel, value string) {
	b.t.Helper()
	b.Do(
		chromedp.WaitVisible(chromedp.CSS(sel)),
		chromedp.Clear(chromedp.CSS(sel)),
		chromedp.SendKeys(chromedp.CSS(sel), value),
	)
}

// Select sets a <select>'s value and fires its input and change events.
func (b *Browser) Select(sel, value string) {
	b.t.Helper()
	b.WaitVisible(sel)
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%s); e.value = %s;
		e.dispatchEvent(new Event('input', {bubbles: true})); e.dispatchEvent(new Event('change', {bubbles: true}));
		return e.value; })()`, jsString(sel), jsString(value))
	if got := run(b, chromedp.Evaluate[string](js)); got != value {
		b.fatal(fmt.Errorf("%s: no option %q", sel, value))
	}
}

// Submit submits the form the element belongs to.
func (b *Browser) Submit(sel string) {
	b.t.Helper()
	b.Do(chromedp.Submit(chromedp.CSS(sel), chromedp.NodeVisible))
}

// Text is the visible text of the first element matching the CSS selector
// (waiting for it to be visible).
func (b *Browser) Text(sel string) string {
	b.t.Helper()
	return run(b, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
}

// Value is the value of an input, textarea or select.
func (b *Browser) Value(sel string) string {
	b.t.Helper()
	return run(b, chromedp.Value(chromedp.CSS(sel), chromedp.NodeReady))
}

// Attribute is the value of an attribute of the first element matching sel
// ("" when absent).
func (b *Browser) Attribute(sel, name string) string {
	b.t.Helper()
	return run(b, chromedp.AttributeValue(chromedp.CSS(sel), name, chromedp.NodeReady)).Value
}

// Eval evaluates a JavaScript expression and decodes its JSON value.
func Eval[T any](b *Browser, expr string) T {
	b.t.Helper()
	return run(b, chromedp.Evaluate[T](expr))
}

// Viewport emulates a screen width x height CSS pixels (e.g. 390x844, a phone).
func (b *Browser) Viewport(width, height int) {
	b.t.Helper()
	b.Do(chromedp.EmulateViewport(int64(width), int64(height)))
}

// Screenshot saves a PNG of the whole page as NAME.png and returns its path.
// The directory is $BROWSER_SCREENSHOTS (relative to the repository root)
// when set, otherwise the test's temporary directory. It never fails the
// test: a screenshot is evidence, not a check.
func (b *Browser) Screenshot(name string) string {
	b.t.Helper()
	return b.screenshot(name, chromedp.FullScreenshot(100))
}

// ScreenshotView is Screenshot of the viewport only (what the user sees
// without scrolling): its size is bounded by the window's, as is the PNG's
// (README images).
func (b *Browser) ScreenshotView(name string) string {
	b.t.Helper()
	return b.screenshot(name, chromedp.CaptureScreenshot())
}

func (b *Browser) screenshot(name string, capture chromedp.Action[[]byte]) string {
	b.t.Helper()
	dir, err := b.screenshotDir()
	if err != nil {
		b.t.Errorf("browser: screenshot %s: %v", name, err)
		return ""
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.timeout)
	defer cancel()
	png, err := chromedp.Run(ctx, capture)
	if err != nil {
		b.t.Logf("browser: screenshot %s: %v", name, err)
		return ""
	}
	path := filepath.Join(dir, fileName(name)+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Errorf("browser: screenshot %s: %v", name, err)
		return ""
	}
	b.t.Logf("browser: screenshot %s", path)
	return path
}

func (b *Browser) screenshotDir() (string, error) {
	if b.shots != "" {
		return b.shots, nil
	}
	dir := os.Getenv(EnvScreenshots)
	if dir == "" {
		b.shots = b.t.TempDir()
		return b.shots, nil
	}
	if !filepath.IsAbs(dir) {
		root, err := repoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	b.shots = dir
	return dir, nil
}

// repoRoot is the nearest directory above the working directory holding
// go.work (a test runs in its package's directory).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.work above the working directory: set " + EnvScreenshots + " to an absolute path")
		}
		dir = parent
	}
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func fileName(name string) string {
	n := strings.Trim(unsafeName.ReplaceAllString(name, "-"), "-.")
	if n == "" {
		n = "screenshot"
	}
	return n
}

// Requests are the URLs the page asked for, in order (from its network
// events; the guard refused those not allowed).
func (b *Browser) Requests() []string { return b.guard.requests() }

// TakeForbidden returns the requests to origins that were not allowed, and
// forgets them, so the test does not fail for them (tests of the guard
// itself). Normally a forbidden request fails the test at its end.
func (b *Browser) TakeForbidden() []string { return b.guard.take() }

// TakeJSErrors returns the uncaught JavaScript exceptions so far and forgets
// them. Normally an uncaught exception fails the test at its end.
func (b *Browser) TakeJSErrors() []string {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	out := b.s.jsErrors
	b.s.jsErrors = nil
	return out
}

// Dialogs returns the messages of the JavaScript dialogs (alert, confirm,
// prompt) opened so far, and forgets them. Every dialog is accepted.
func (b *Browser) Dialogs() []string {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	out := b.s.dialogs
	b.s.dialogs = nil
	return out
}

// acceptDialog answers an open dialog: OK.
var acceptDialog = chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
	_, err := cdp.Call(ctx, t, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
	return err
})

// listen runs on chromedp's reading goroutine: quick, no commands.
func (b *Browser) listen(ev any) {
	switch e := ev.(type) {
	case *network.EventRequestWillBeSent:
		b.guard.seen(e.Request.URL)
	case *network.EventWebSocketCreated:
		b.guard.seen(e.URL)
	case *runtime.EventExceptionThrown:
		msg := e.ExceptionDetails.Text
		if e.ExceptionDetails.Exception != nil && e.ExceptionDetails.Exception.Description != "" {
			msg = e.ExceptionDetails.Exception.Description
		}
		msg = fmt.Sprintf("%s (%s:%d)", msg, e.ExceptionDetails.URL, e.ExceptionDetails.LineNumber+1)
		b.s.mu.Lock()
		b.s.jsErrors = append(b.s.jsErrors, msg)
		b.s.mu.Unlock()
		b.logf("browser: uncaught exception: %s", msg)
	case *page.EventJavascriptDialogOpening:
		b.s.mu.Lock()
		b.s.dialogs = append(b.s.dialogs, e.Message)
		b.s.mu.Unlock()
		b.logf("browser: %s dialog %q accepted", e.Type, e.Message)
		// The page waits for the answer (and so may the action that opened
		// the dialog): answered from another goroutine.
		go func() {
			if err := chromedp.Do(b.ctx, acceptDialog); err != nil && b.ctx.Err() == nil {
				b.logf("browser: accept dialog: %v", err)
			}
		}()
	case *runtime.EventConsoleAPICalled:
		parts := make([]string, 0, len(e.Args))
		for _, a := range e.Args {
			if a.Value != nil {
				parts = append(parts, string(a.Value))
			} else {
				parts = append(parts, a.Description)
			}
		}
		b.logf("browser: console.%s: %s", e.Type, strings.Join(parts, " "))
	}
}

// logf logs to the innermost running test using the browser (t.Logf after
// a test's end panics).
func (b *Browser) logf(format string, args ...any) {
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	if b.s.log != nil {
		b.s.log.Logf(format, args...)
	}
}

// check fails the test for forbidden requests and uncaught exceptions.
func (b *Browser) check() {
	if bad := b.guard.take(); len(bad) > 0 {
		b.t.Errorf("browser: %d request(s) to origins the test did not allow (the console must make no third-party request):\n  %s",
			len(bad), strings.Join(bad, "\n  "))
	}
	if errs := b.TakeJSErrors(); len(errs) > 0 {
		b.t.Errorf("browser: %d uncaught JavaScript exception(s):\n  %s", len(errs), strings.Join(errs, "\n  "))
	}
	if b.t.Failed() {
		b.Screenshot("failed-" + b.t.Name())
	}
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}
