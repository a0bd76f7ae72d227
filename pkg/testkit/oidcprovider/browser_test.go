package oidcprovider_test

import (
	"html"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/namirasoft/email-sender/pkg/jwtauth"
	"github.com/namirasoft/email-sender/pkg/testkit/browser"
	"github.com/namirasoft/email-sender/pkg/testkit/oidcprovider"
)

// TestSignInInChromium is the sign-in a console test does: a relying party
// (x/oauth2 + go-oidc, PKCE S256) on one loopback origin, the provider on
// another, a user in headless Chromium pressing "Sign in as ...", and the ID
// token checked by go-oidc and by pkg/jwtauth. The browser reaches only
// these two origins.
func TestSignInInChromium(t *testing.T) {
	p := oidcprovider.Start(t, oidcprovider.Config{})
	var (
		conf     oauth2.Config
		verifier *oidc.IDTokenVerifier
	)
	jwt, err := jwtauth.NewVerifier(p.JWTConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		// A real console keeps state and verifier in a short-lived cookie.
		v := oauth2.GenerateVerifier()
		http.SetCookie(w, &http.Cookie{Name: "pkce", Value: v, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
		http.Redirect(w, r, conf.AuthCodeURL("st", oauth2.S256ChallengeOption(v)), http.StatusFound)
	})
	mux.HandleFunc("GET /callback", func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("pkce")
		if err != nil || r.URL.Query().Get("state") != "st" {
			http.Error(w, "bad state", http.StatusBadRequest)
			return
		}
		tok, err := conf.Exchange(r.Context(), r.URL.Query().Get("code"), oauth2.VerifierOption(c.Value))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		raw, _ := tok.Extra("id_token").(string)
		idt, err := verifier.Verify(r.Context(), raw)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		pr, err := jwt.Verify(r.Context(), raw)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><html lang="en"><head><title>Signed in</title><link rel="icon" href="data:,"></head><body><p id="who">` +
			html.EscapeString(idt.Subject+" "+pr.AccountID) + `</p></body></html>`))
	})
	rp := httptest.NewServer(mux)
	t.Cleanup(rp.Close)
	p.AddRedirectURI(rp.URL + "/callback")
	provider, err := oidc.NewProvider(t.Context(), p.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	verifier = provider.Verifier(&oidc.Config{ClientID: p.ClientID})
	conf = oauth2.Config{ClientID: p.ClientID, ClientSecret: p.ClientSecret, Endpoint: provider.Endpoint(),
		RedirectURL: rp.URL + "/callback", Scopes: []string{oidc.ScopeOpenID, "email", "profile"}}

	b := browser.New(t, browser.Allow(rp.URL, p.Issuer))
	b.Navigate(rp.URL + "/login")
	b.WaitVisible("#signin-user-1")
	b.Screenshot("oidc-sign-in")
	b.Click("#signin-user-1")
	if got := b.WaitText("#who", "user-1"); got != "user-1 "+oidcprovider.DefaultUser.AccountID {
		t.Fatalf("signed in as %q", got)
	}
	if p.Logins() != 1 || p.Tokens() != 1 {
		t.Fatalf("logins %d tokens %d", p.Logins(), p.Tokens())
	}
}
