package browser_test

import (
	"bytes"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp/kb"

	"github.com/namirasoft/email-sender/pkg/testkit/browser"
)

const page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Harness</title>
<link rel="icon" href="data:,">
<style>body{font:16px sans-serif;margin:2rem} #out{color:#0b5}</style></head>
<body>
<h1>Harness self-test</h1>
<form id="f" onsubmit="event.preventDefault(); document.getElementById('out').textContent = 'hello ' + document.getElementById('name').value;">
  <label for="name">Name</label> <input id="name" name="name" value="old">
  <button id="go" type="submit">Greet</button>
</form>
<p id="out">nobody yet</p>
<button id="leak" type="button" onclick="const i = new Image(); i.src = 'http://remote.example/pixel.png'; document.body.append(i); fetch('/ping');">Leak</button>
<button id="frame" type="button" onclick="const f = document.createElement('iframe'); f.sandbox = ''; f.srcdoc = '<img src=&quot;https://cdn.example/x.png&quot;>'; document.body.append(f);">Frame</button>
<button id="boom" type="button" onclick="undefinedFunction()">Boom</button>
<button id="ask" type="button" onclick="document.getElementById('out').textContent = confirm('Sure?') ? 'yes' : 'no'">Ask</button>
<button id="listen" type="button" onclick="const es = new EventSource('/events'); es.onmessage = (e) => { document.getElementById('live').textContent += e.data + ' '; };">Listen</button>
<p id="live"></p>
</body></html>`

// second releases the second event of /events.
var second = make(chan struct{}, 1)

func server(t *testing.T) *httptest.Server {
	t.Helper()
	var pings int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write([]byte(page))
		case "/events":
			// Server-Sent Events: two events a while apart, each flushed;
			// the page must see the first before the second is sent.
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Cache-Control", "no-store")
			f := w.(http.Flusher)
			_, _ = w.Write([]byte("data: first\n\n"))
			f.Flush()
			select {
			case <-second:
			case <-r.Context().Done():
				return
			}
			_, _ = w.Write([]byte("data: second\n\n"))
			f.Flush()
			<-r.Context().Done()
		case "/ping":
			pings++
			w.WriteHeader(http.StatusNoContent)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestBrowserClickFillReadScreenshot(t *testing.T) {
	srv := server(t)
	b := browser.New(t, browser.Allow(srv.URL))
	b.Navigate(srv.URL + "/")
	if got := b.Title(); got != "Harness" {
		t.Fatalf("title %q", got)
	}
	b.WaitVisible("#go")
	if got := b.Text("#out"); got != "nobody yet" {
		t.Fatalf("text before %q", got)
	}
	b.Fill("#name", "Ada")
	if got := b.Value("#name"); got != "Ada" {
		t.Fatalf("value after fill %q", got)
	}
	b.Click("#go")
	if got := b.WaitText("#out", "hello"); got != "hello Ada" {
		t.Fatalf("text after click %q", got)
	}
	if n := b.Count("button"); n != 6 {
		t.Fatalf("%d buttons", n)
	}
	if !b.Exists("#leak") || b.Exists("#missing") {
		t.Fatal("Exists")
	}
	if got := browser.Eval[int](b, "1 + 2"); got != 3 {
		t.Fatalf("eval %d", got)
	}
	path := b.Screenshot("harness self-test")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if w := img.Bounds().Dx(); w < 1000 {
		t.Fatalf("screenshot %d px wide", w)
	}
	if !strings.HasSuffix(path, "harness-self-test.png") {
		t.Fatalf("screenshot path %s", path)
	}
	b.Viewport(390, 844)
	if w := browser.Eval[int](b, "window.innerWidth"); w != 390 {
		t.Fatalf("phone viewport %d wide", w)
	}
	if reqs := b.Requests(); !slices.Contains(reqs, srv.URL+"/") {
		t.Fatalf("requests %v", reqs)
	}
}

// TestBrowserServerSentEvents checks that a live stream passes the guard
// event by event (the console's activity page).
func TestBrowserServerSentEvents(t *testing.T) {
	srv := server(t)
	b := browser.New(t, browser.Allow(srv.URL))
	b.Navigate(srv.URL + "/")
	b.Click("#listen")
	if got := b.WaitText("#live", "first"); strings.Contains(got, "second") {
		t.Fatalf("live %q", got)
	}
	second <- struct{}{}
	b.WaitText("#live", "second")
}

func TestBrowserGuardCatchesRemoteRequests(t *testing.T) {
	srv := server(t)
	b := browser.New(t, browser.Allow(srv.URL))
	b.Navigate(srv.URL + "/")
	b.Click("#leak")
	b.Click("#frame")
	// Wait for both: the image by the page's network events or the proxy,
	// the sandboxed frame's (another renderer) by the proxy.
	var got []string
	for range 100 {
		got = append(got, b.TakeForbidden()...)
		if contains(got, "remote.example") && contains(got, "cdn.example") {
			break
		}
		b.Do()
		sleep()
	}
	if !contains(got, "http://remote.example/pixel.png") {
		t.Errorf("the remote image was not caught: %v", got)
	}
	if !contains(got, "cdn.example") {
		t.Errorf("the sandboxed frame's remote image was not caught: %v", got)
	}
	for _, u := range got {
		if strings.Contains(u, "/ping") {
			t.Errorf("a same-origin request was refused: %s", u)
		}
	}
	t.Logf("caught: %v", got)
}

func TestBrowserReportsUncaughtExceptions(t *testing.T) {
	srv := server(t)
	b := browser.New(t, browser.Allow(srv.URL))
	b.Navigate(srv.URL + "/")
	b.Click("#boom")
	var errs []string
	for range 100 {
		if errs = b.TakeJSErrors(); len(errs) > 0 {
			break
		}
		sleep()
	}
	if len(errs) != 1 || !strings.Contains(errs[0], "undefinedFunction") {
		t.Fatalf("exceptions %v", errs)
	}
}

// TestBrowserSubtests shares one browser across subtests, each checked and
// failing on its own: statuses of loaded pages, a confirm dialog accepted,
// typing with real key events.
func TestBrowserSubtests(t *testing.T) {
	srv := server(t)
	b := browser.New(t, browser.Allow(srv.URL))
	t.Run("status", func(t *testing.T) {
		b := b.For(t)
		if code := b.NavigateStatus(srv.URL + "/"); code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
		if code := b.NavigateStatus(srv.URL + "/missing"); code != http.StatusNotFound {
			t.Fatalf("status of a missing page %d", code)
		}
	})
	t.Run("dialog", func(t *testing.T) {
		b := b.For(t)
		b.Navigate(srv.URL + "/")
		b.Click("#ask")
		b.WaitText("#out", "yes")
		if d := b.Dialogs(); len(d) != 1 || d[0] != "Sure?" {
			t.Fatalf("dialogs %q", d)
		}
	})
	t.Run("keys", func(t *testing.T) {
		b := b.For(t)
		b.Navigate(srv.URL + "/")
		browser.Eval[bool](b, `(() => { const e = document.getElementById('name'); e.value = ''; e.focus(); return true; })()`)
		b.Keys("Bo" + kb.Enter)
		if got := b.WaitText("#out", "hello"); got != "hello Bo" {
			t.Fatalf("text after typing %q", got)
		}
	})
}

func contains(list []string, sub string) bool {
	return slices.ContainsFunc(list, func(s string) bool { return strings.Contains(s, sub) })
}
