package oidcprovider_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/namirasoft/email-sender/pkg/jwtauth"
	"github.com/namirasoft/email-sender/pkg/testkit/oidcprovider"
)

const redirect = "http://127.0.0.1:1/auth/callback" // never dialled: the test reads the redirect

// flow is a relying party (x/oauth2 + go-oidc) and a user agent that follows
// the provider's redirects up to the client's redirect URI.
type flow struct {
	t        *testing.T
	p        *oidcprovider.Provider
	provider *oidc.Provider
	conf     oauth2.Config
	agent    *http.Client
}

func newFlow(t *testing.T, p *oidcprovider.Provider) *flow {
	t.Helper()
	provider, err := oidc.NewProvider(t.Context(), p.Issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	return &flow{
		t: t, p: p, provider: provider,
		conf: oauth2.Config{
			ClientID: p.ClientID, ClientSecret: p.ClientSecret, Endpoint: provider.Endpoint(),
			RedirectURL: redirect, Scopes: []string{oidc.ScopeOpenID, "profile", "email"},
		},
		agent: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
}

// authorize walks the authorization request to the redirect back to the
// client and returns that redirect's query (code and state, or error). On
// the sign-in page it signs in as user ("": follow the page's redirect, for
// AutoApprove).
func (f *flow) authorize(authURL string, user string) url.Values {
	f.t.Helper()
	next := authURL
	for range 10 {
		resp, err := f.agent.Get(next)
		if err != nil {
			f.t.Fatalf("GET %s: %v", next, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			return url.Values{"status": {resp.Status}}
		}
		loc, err := resp.Location()
		if err != nil {
			f.t.Fatal(err)
		}
		if strings.HasPrefix(loc.String(), redirect) {
			return loc.Query()
		}
		if loc.Path == "/login" && user != "" {
			// The sign-in page: the user presses "Sign in as ...".
			form := url.Values{"id": {loc.Query().Get("authRequestID")}, "sub": {user}}
			resp, err := f.agent.PostForm(f.p.Issuer+"/login", form)
			if err != nil {
				f.t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusFound {
				f.t.Fatalf("sign-in: %s", resp.Status)
			}
			loc, _ = resp.Location()
		}
		next = loc.String()
	}
	f.t.Fatal("too many redirects")
	return nil
}

func TestCodeFlowWithPKCE(t *testing.T) {
	p := oidcprovider.Start(t, oidcprovider.Config{RedirectURIs: []string{redirect}})
	f := newFlow(t, p)
	ctx := t.Context()

	verifier := oauth2.GenerateVerifier()
	q := f.authorize(f.conf.AuthCodeURL("state-1", oauth2.S256ChallengeOption(verifier), oidc.Nonce("nonce-1")), oidcprovider.DefaultUser.Subject)
	if q.Get("state") != "state-1" || q.Get("code") == "" {
		t.Fatalf("redirect back: %v", q)
	}
	tok, err := f.conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := f.provider.Verifier(&oidc.Config{ClientID: p.ClientID}).Verify(ctx, raw)
	if err != nil {
		t.Fatalf("go-oidc verify: %v", err)
	}
	var claims struct {
		Account string `json:"account_id"`
		Email   string `json:"email"`
		Nonce   string `json:"nonce"`
	}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if idt.Subject != "user-1" || claims.Account != oidcprovider.DefaultUser.AccountID || claims.Email != "owner@example.test" || claims.Nonce != "nonce-1" {
		t.Fatalf("ID token: sub %q %+v", idt.Subject, claims)
	}
	if !contains(idt.Audience, "email-sender") || !contains(idt.Audience, p.ClientID) {
		t.Fatalf("aud %v", idt.Audience)
	}

	// The API's JWT path accepts the same token.
	v, err := jwtauth.NewVerifier(p.JWTConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	pr, err := v.Verify(ctx, raw)
	if err != nil {
		t.Fatalf("jwtauth: %v", err)
	}
	if pr.AccountID != oidcprovider.DefaultUser.AccountID || pr.Subject != "user-1" {
		t.Fatalf("principal %+v", pr)
	}

	// The userinfo endpoint answers the access token.
	info, err := f.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil || info.Email != "owner@example.test" {
		t.Fatalf("userinfo %+v %v", info, err)
	}

	// A code works once.
	if _, err := f.conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier)); err == nil {
		t.Fatal("a code was exchanged twice")
	}
	if p.Logins() != 1 || p.Tokens() != 1 {
		t.Fatalf("logins %d tokens %d", p.Logins(), p.Tokens())
	}
}

func TestCodeFlowRefusals(t *testing.T) {
	p := oidcprovider.Start(t, oidcprovider.Config{RedirectURIs: []string{redirect}})
	f := newFlow(t, p)
	ctx := t.Context()
	user := oidcprovider.DefaultUser.Subject

	t.Run("wrong code_verifier", func(t *testing.T) {
		verifier := oauth2.GenerateVerifier()
		q := f.authorize(f.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), user)
		_, err := f.conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier()))
		if err == nil || !strings.Contains(err.Error(), "invalid_grant") {
			t.Fatalf("wrong verifier: %v", err)
		}
	})
	t.Run("no code_verifier", func(t *testing.T) {
		q := f.authorize(f.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), user)
		if _, err := f.conf.Exchange(ctx, q.Get("code")); err == nil {
			t.Fatal("exchanged without the verifier")
		}
	})
	t.Run("no PKCE", func(t *testing.T) {
		q := f.authorize(f.conf.AuthCodeURL("s"), user)
		if q.Get("code") != "" || q.Get("error") != "invalid_request" {
			t.Fatalf("without PKCE: %v", q)
		}
	})
	t.Run("plain PKCE", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		q := f.authorize(f.conf.AuthCodeURL("s", oauth2.SetAuthURLParam("code_challenge", v), oauth2.SetAuthURLParam("code_challenge_method", "plain")), user)
		if q.Get("code") != "" {
			t.Fatalf("plain PKCE: %v", q)
		}
	})
	t.Run("unregistered redirect_uri", func(t *testing.T) {
		c := f.conf
		c.RedirectURL = "http://127.0.0.1:1/elsewhere"
		q := f.authorize(c.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), user)
		if q.Get("code") != "" || !strings.HasPrefix(q.Get("status"), "400") {
			t.Fatalf("unregistered redirect: %v", q)
		}
	})
	t.Run("other redirect_uri at the token endpoint", func(t *testing.T) {
		p.AddRedirectURI("http://127.0.0.1:1/other")
		verifier := oauth2.GenerateVerifier()
		q := f.authorize(f.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), user)
		c := f.conf
		c.RedirectURL = "http://127.0.0.1:1/other"
		if _, err := c.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier)); err == nil {
			t.Fatal("exchanged with another redirect_uri")
		}
	})
	t.Run("wrong client secret", func(t *testing.T) {
		verifier := oauth2.GenerateVerifier()
		q := f.authorize(f.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), user)
		c := f.conf
		c.ClientSecret = "nope"
		if _, err := c.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier)); err == nil {
			t.Fatal("exchanged with a wrong secret")
		}
	})
	if p.Refused() < 2 {
		t.Fatalf("refused %d", p.Refused())
	}
}

func TestScopesAndAccountClaim(t *testing.T) {
	ro := oidcprovider.User{Subject: "ro", Email: "ro@example.test", Name: "Read Only", AccountID: "0b8f3c9a-7d2e-4f61-a5b4-2c9e8d7f6a50", Scopes: []string{"read"}}
	p := oidcprovider.Start(t, oidcprovider.Config{
		RedirectURIs: []string{redirect}, Audience: "console-api", AccountClaim: "https://namirasoft.com/account",
		Users: []oidcprovider.User{oidcprovider.DefaultUser, ro}, AutoApprove: false,
	})
	f := newFlow(t, p)
	verifier := oauth2.GenerateVerifier()
	q := f.authorize(f.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), "ro")
	tok, err := f.conf.Exchange(t.Context(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	cfg := p.JWTConfig()
	if cfg.Audience != "console-api" || cfg.AccountClaim != "https://namirasoft.com/account" {
		t.Fatalf("jwt config %+v", cfg)
	}
	v, err := jwtauth.NewVerifier(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	pr, err := v.Verify(t.Context(), tok.Extra("id_token").(string))
	if err != nil {
		t.Fatal(err)
	}
	if pr.AccountID != ro.AccountID || len(pr.Scopes) != 1 || pr.Scopes[0] != "read" {
		t.Fatalf("principal %+v", pr)
	}
	// The default verifier (audience email-sender) refuses it.
	other := cfg
	other.Audience = "email-sender"
	v2, _ := jwtauth.NewVerifier(other, nil)
	if _, err := v2.Verify(context.Background(), tok.Extra("id_token").(string)); err == nil {
		t.Fatal("a token for another audience was accepted")
	}
}

func TestAutoApprove(t *testing.T) {
	p := oidcprovider.Start(t, oidcprovider.Config{RedirectURIs: []string{redirect}, AutoApprove: true})
	f := newFlow(t, p)
	verifier := oauth2.GenerateVerifier()
	q := f.authorize(f.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)), "")
	if _, err := f.conf.Exchange(t.Context(), q.Get("code"), oauth2.VerifierOption(verifier)); err != nil {
		t.Fatal(err)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
