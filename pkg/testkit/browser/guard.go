package browser

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// guard is the browser's HTTP proxy: it forwards requests to the allowed
// origins and refuses (and records) every other. It also records the URLs of
// the page's network events, which name a refused request in full where the
// proxy only sees "CONNECT host:port".
type guard struct {
	url string

	mu        sync.Mutex
	allowed   map[string]bool // host:port
	forbidden []string
	all       []string
}

func newGuard(t testing.TB) *guard {
	g := &guard{allowed: map[string]bool{}}
	transport := &http.Transport{Proxy: nil, ForceAttemptHTTP2: false, MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second}
	forward := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL = r.In.URL
			r.Out.Host = r.In.Host
		},
		Transport: transport,
		// Server-Sent Events and other streams pass through at once.
		FlushInterval: -1,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect {
			g.connect(w, r)
			return
		}
		if !r.URL.IsAbs() {
			http.Error(w, "browser guard: this is a proxy", http.StatusBadRequest)
			return
		}
		if !g.permitted(r.URL.Scheme, r.URL.Host) {
			g.refuseProxied(r.URL.String(), r.URL.Host)
			http.Error(w, "browser guard: origin not allowed in this test", http.StatusForbidden)
			return
		}
		forward.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		transport.CloseIdleConnections()
	})
	g.url = srv.URL
	return g
}

// connect tunnels a CONNECT (TLS, WebSocket) to an allowed host:port.
func (g *guard) connect(w http.ResponseWriter, r *http.Request) {
	if !g.permitted("https", r.Host) {
		g.refuseProxied("CONNECT "+r.Host, r.Host)
		http.Error(w, "browser guard: origin not allowed in this test", http.StatusForbidden)
		return
	}
	upstream, err := net.DialTimeout("tcp", r.Host, 5*time.Second)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		upstream.Close()
		http.Error(w, "no hijacking", http.StatusInternalServerError)
		return
	}
	client, buf, err := hj.Hijack()
	if err != nil {
		upstream.Close()
		return
	}
	_, _ = client.Write([]byte("HTTP/1.1 200 Connection Established\r\n\r\n"))
	go func() {
		defer upstream.Close()
		defer client.Close()
		if n := buf.Reader.Buffered(); n > 0 {
			b, _ := buf.Reader.Peek(n)
			if _, err := upstream.Write(b); err != nil {
				return
			}
		}
		done := make(chan struct{}, 2)
		go func() { _, _ = io.Copy(upstream, client); done <- struct{}{} }()
		go func() { _, _ = io.Copy(client, upstream); done <- struct{}{} }()
		<-done
	}()
}

func (g *guard) allow(o string) error {
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return fmt.Errorf("allow %q: not an absolute URL", o)
	}
	g.mu.Lock()
	g.allowed[hostPort(u.Scheme, u.Host)] = true
	g.mu.Unlock()
	return nil
}

func (g *guard) permitted(scheme, host string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.allowed[hostPort(scheme, host)]
}

// chromiumServices are the hosts Chromium itself calls in the background
// whatever the flags (component and extension updates, account checks). The
// proxy refuses them like any other but does not count them against the
// test: no page asked for them. A page's own request to one of them is still
// caught by its network events (seen).
var chromiumServices = map[string]bool{
	"update.googleapis.com":                   true,
	"accounts.google.com":                     true,
	"clients2.google.com":                     true,
	"content-autofill.googleapis.com":         true,
	"optimizationguide-pa.googleapis.com":     true,
	"safebrowsingohttpgateway.googleapis.com": true,
	"clientservices.googleapis.com":           true,
	"edgedl.me.gvt1.com":                      true,
	"redirector.gvt1.com":                     true,
}

// refuseProxied records a request the proxy refused, unless Chromium made it
// on its own.
func (g *guard) refuseProxied(what, host string) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if chromiumServices[strings.ToLower(host)] {
		return
	}
	g.refuse(what)
}

func (g *guard) refuse(what string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !slices.Contains(g.forbidden, what) {
		g.forbidden = append(g.forbidden, what)
	}
}

// seen records a URL from the page's network events.
func (g *guard) seen(raw string) {
	u, err := url.Parse(raw)
	if err != nil {
		g.refuse(raw)
		return
	}
	switch u.Scheme {
	case "data", "blob", "about", "javascript":
		return
	}
	g.mu.Lock()
	g.all = append(g.all, raw)
	g.mu.Unlock()
	switch u.Scheme {
	case "http", "https", "ws", "wss":
		if g.permitted(u.Scheme, u.Host) {
			return
		}
	}
	g.refuse(raw)
}

func (g *guard) requests() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.all)
}

func (g *guard) take() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := g.forbidden
	g.forbidden = nil
	return out
}

// hostPort is host:port with the scheme's default port made explicit, in
// lower case.
func hostPort(scheme, host string) string {
	host = strings.ToLower(host)
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	switch scheme {
	case "https", "wss":
		return net.JoinHostPort(strings.Trim(host, "[]"), "443")
	default:
		return net.JoinHostPort(strings.Trim(host, "[]"), "80")
	}
}
