package chart_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/namirasoft/email-sender/pkg/testkit/browser"
	"github.com/namirasoft/email-sender/services/report/chart"
)

// TestChartsInChromium draws the charts in headless Chromium, the proof that
// the SVG renders (and scales to a phone's width), and saves screenshots.
func TestChartsInChromium(t *testing.T) {
	var page strings.Builder
	page.WriteString(`<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Charts</title><link rel="icon" href="data:,">
<style>body{font:14px system-ui,sans-serif;margin:1rem;color:#1f2328;background:#fff}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,560px),1fr));gap:1rem}
figure{margin:0;padding:.5rem;border:1px solid #d0d7de;border-radius:6px} figcaption{font-weight:600}
table{border-collapse:collapse} @media (max-width:600px){svg.chart text{font-size:18px}} td,th{padding:.1rem .5rem;text-align:right}</style></head><body><h1>Dashboard charts</h1><main>`)
	for _, c := range []chart.Chart{outcomes(), rates(), sent(), empty()} {
		if err := c.WriteHTML(&page); err != nil {
			t.Fatal(err)
		}
	}
	page.WriteString(`</main></body></html>`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
		_, _ = w.Write([]byte(page.String()))
	}))
	t.Cleanup(srv.Close)

	b := browser.New(t, browser.Allow(srv.URL), browser.WindowSize(1280, 1000))
	b.Navigate(srv.URL)
	b.WaitVisible("#outcomes-figure svg")
	if n := b.Count("#outcomes-figure svg rect"); n < 80 {
		t.Fatalf("%d bars drawn", n)
	}
	// The browser computes real boxes: the plot has a size and the bars
	// lie inside the chart.
	box := browser.Eval[map[string]float64](b, `(() => { const s = document.querySelector('#outcomes-figure svg').getBoundingClientRect();
		const r = document.querySelector('#outcomes-figure g.series rect').getBBox();
		return {w: s.width, h: s.height, bw: r.width, bh: r.height}; })()`)
	if box["w"] < 500 || box["h"] < 200 || box["bw"] <= 0 || box["bh"] <= 0 {
		t.Fatalf("boxes %v", box)
	}
	if got := browser.Eval[string](b, `document.getElementById('rates-title').textContent`); got != rates().Title {
		t.Fatalf("title %q", got)
	}
	b.Screenshot("chart-dashboard")

	// At a phone's width the charts shrink with the page.
	b.Viewport(390, 844)
	w := browser.Eval[float64](b, `document.querySelector('#rates-figure svg').getBoundingClientRect().width`)
	if w > 390 || w < 300 {
		t.Fatalf("at 390 px the chart is %v px wide", w)
	}
	b.Click("#rates-figure summary")
	b.WaitVisible("#rates-figure table")
	b.Screenshot("chart-phone")
}
