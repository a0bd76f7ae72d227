// Package oidcprovider starts an OpenID Connect provider for tests, in
// process on a loopback port: a stand-in for Namirasoft Account's sign-in.
// The protocol is zitadel/oidc's op package (an implementation nobody on this
// project wrote); this package only gives it an in-memory storage, one
// confidential client and a sign-in page with test users.
//
// It is strict where a console's sign-in must be: the authorization code flow
// only, PKCE with S256 required on every authorization request (and the
// code_verifier checked at the token endpoint), the redirect URI compared
// exactly with the registered ones (at the authorization and the token
// endpoint), the client secret checked, a code usable once.
//
// The ID token is signed with RS256 by a key published in the provider's
// JWKS; it carries the configured audience next to the client id and the
// user's account id in the configured account claim, so that pkg/jwtauth
// with Provider.JWTConfig accepts it, exactly as the API does a Namirasoft
// Account token.
//
// zitadel/oidc logs refused requests with slog's default logger (its
// WithLogger option has no effect); they show in a failing test's output.
package oidcprovider

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"html/template"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/namirasoft/email-sender/pkg/jwtauth"
)

// User is a test user who can sign in.
type User struct {
	// Subject is the sub claim.
	Subject string
	Email   string
	Name    string
	// AccountID is the account claim's value (a UUID).
	AccountID string
	// Scopes, when set, become the ID token's scope claim (space separated,
	// e.g. "read"); unset, pkg/jwtauth grants its default scopes.
	Scopes []string
}

// Config configures Start. The zero value works: every field has a default.
type Config struct {
	// ClientID is the console's client id (default "email-sender-console").
	ClientID string
	// ClientSecret (default: random). The client is confidential.
	ClientSecret string
	// RedirectURIs are the registered redirect URIs, compared exactly. They
	// can also be added after Start (the console's address is often known
	// only then): Provider.AddRedirectURI.
	RedirectURIs []string
	// Audience is put into the ID token's aud next to the client id
	// (default "email-sender", pkg/jwtauth's default JWT_AUDIENCE).
	Audience string
	// AccountClaim names the claim holding the account id (default
	// "account_id", pkg/jwtauth's default JWT_ACCOUNT_CLAIM).
	AccountClaim string
	// Users can sign in; default one user, DefaultUser.
	Users []User
	// AutoApprove signs the first user in at once, with no sign-in page.
	AutoApprove bool
	// IDTokenLifetime (default 10 minutes).
	IDTokenLifetime time.Duration
}

// DefaultUser is the user of a Config without Users.
var DefaultUser = User{
	Subject:   "user-1",
	Email:     "owner@example.test",
	Name:      "Test Owner",
	AccountID: "6f1d1a3e-58c4-4c1e-9d43-6c7f3f6e2a11",
}

// Provider is a running OpenID provider.
type Provider struct {
	// Issuer is the provider's URL: the iss of its tokens, with the
	// discovery document at Issuer + "/.well-known/openid-configuration".
	Issuer string
	// ClientID and ClientSecret are the console's credentials.
	ClientID, ClientSecret string
	// Audience and AccountClaim as configured (defaults applied).
	Audience, AccountClaim string

	store   *storage
	logins  atomic.Int64
	tokens  atomic.Int64
	refused atomic.Int64
}

// Start starts the provider on a loopback port, closed in t.Cleanup.
func Start(t testing.TB, cfg Config) *Provider {
	t.Helper()
	if cfg.ClientID == "" {
		cfg.ClientID = "email-sender-console"
	}
	if cfg.ClientSecret == "" {
		cfg.ClientSecret = randomHex(16)
	}
	if cfg.Audience == "" {
		cfg.Audience = "email-sender"
	}
	if cfg.AccountClaim == "" {
		cfg.AccountClaim = "account_id"
	}
	if len(cfg.Users) == 0 {
		cfg.Users = []User{DefaultUser}
	}
	if cfg.IDTokenLifetime == 0 {
		cfg.IDTokenLifetime = 10 * time.Minute
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("oidcprovider: listen: %v", err)
	}
	issuer := "http://" + ln.Addr().String()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("oidcprovider: key: %v", err)
	}
	p := &Provider{
		Issuer: issuer, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret,
		Audience: cfg.Audience, AccountClaim: cfg.AccountClaim,
	}
	p.store = newStorage(cfg, issuer, key, p)

	var cryptoKey [32]byte
	_, _ = rand.Read(cryptoKey[:])
	provider, err := op.NewOpenIDProvider(issuer, &op.Config{
		CryptoKey:      cryptoKey,
		CodeMethodS256: true,
		AuthMethodPost: true,
	}, p.store,
		op.WithAllowInsecure(), // http on loopback
	)
	if err != nil {
		t.Fatalf("oidcprovider: %v", err)
	}
	callback := op.AuthCallbackURL(provider)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("authRequestID")
		req, ok := p.store.request(id)
		if !ok {
			http.Error(w, "unknown or finished authorization request", http.StatusBadRequest)
			return
		}
		if cfg.AutoApprove {
			p.store.approve(id, cfg.Users[0].Subject)
			p.logins.Add(1)
			http.Redirect(w, r, callback(op.ContextWithIssuer(r.Context(), issuer), id), http.StatusFound)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		// No form-action: Chromium applies it to the redirects after the
		// POST too, and the last one goes to the client's origin.
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		_ = loginPage.Execute(w, map[string]any{"ID": id, "Client": req.clientID, "Scopes": strings.Join(req.scopes, " "), "Users": cfg.Users})
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		id, sub := r.FormValue("id"), r.FormValue("sub")
		if !p.store.approve(id, sub) {
			http.Error(w, "unknown request or user", http.StatusBadRequest)
			return
		}
		p.logins.Add(1)
		http.Redirect(w, r, callback(op.ContextWithIssuer(r.Context(), issuer), id), http.StatusFound)
	})
	mux.Handle("/", provider)
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return p
}

// AddRedirectURI registers one more redirect URI of the client.
func (p *Provider) AddRedirectURI(uri string) { p.store.addRedirectURI(uri) }

// JWTConfig is a pkg/jwtauth configuration (the API's JWT_* settings) that
// trusts this provider's ID tokens.
func (p *Provider) JWTConfig() jwtauth.Config {
	return jwtauth.Config{
		JWKSURL:      p.Issuer + "/keys",
		Issuer:       p.Issuer,
		Audience:     p.Audience,
		AccountClaim: p.AccountClaim,
	}.WithDefaults()
}

// Logins counts completed sign-ins (the user approved); Tokens the codes
// exchanged for tokens; Refused the authorization requests refused by this
// package's own checks (no PKCE S256).
func (p *Provider) Logins() int64  { return p.logins.Load() }
func (p *Provider) Tokens() int64  { return p.tokens.Load() }
func (p *Provider) Refused() int64 { return p.refused.Load() }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in – test OpenID provider</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px system-ui,sans-serif;margin:2rem auto;max-width:28rem;color:#111}
button{display:block;width:100%;margin:.5rem 0;padding:.75rem;font:inherit;background:#0b5394;color:#fff;border:0;border-radius:.25rem;cursor:pointer}
small{color:#444}</style></head>
<body><main>
<h1>Sign in</h1>
<p><small>Test OpenID provider. Client <code>{{.Client}}</code> asks for <code>{{.Scopes}}</code>.</small></p>
{{range .Users}}<form method="post" action="/login">
<input type="hidden" name="id" value="{{$.ID}}"><input type="hidden" name="sub" value="{{.Subject}}">
<button type="submit" id="signin-{{.Subject}}" data-email="{{.Email}}">Sign in as {{.Name}} ({{.Email}})</button>
</form>{{end}}
</main></body></html>`))
