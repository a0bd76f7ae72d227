package console

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/jackc/pgx/v5"
	"golang.org/x/oauth2"

	"github.com/namirasoft/email-sender/pkg/auth"
)

type signInData struct {
	OIDC bool
	// Next is where to go after signing in (a console path).
	Next string
}

func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	if sess, err := c.session(r); err == nil {
		c.redirectAfterSignIn(w, r, sess)
		return
	}
	c.render(w, r, http.StatusOK, "signin", page{Title: "Sign in", Data: signInData{OIDC: c.cfg.OIDCClientID != ""}})
}

func (c *Console) redirectAfterSignIn(w http.ResponseWriter, r *http.Request, _ *Session) {
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

// signInKey signs in with an API key, verified as the API verifies it; the
// key's scopes are the session's.
func (c *Console) signInKey(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimSpace(r.PostFormValue("api_key"))
	data := signInData{OIDC: c.cfg.OIDCClientID != ""}
	if !strings.HasPrefix(key, "es_") {
		c.render(w, r, http.StatusUnauthorized, "signin", page{Title: "Sign in", Data: data, Error: "That is not an API key (they start with es_)."})
		return
	}
	p, err := c.deps.Keys.Authenticate(r.Context(), key)
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		c.render(w, r, http.StatusUnauthorized, "signin", page{Title: "Sign in", Data: data, Error: "Invalid, revoked or expired API key."})
		return
	case errors.Is(err, auth.ErrThrottled):
		c.render(w, r, http.StatusTooManyRequests, "signin", page{Title: "Sign in", Data: data, Error: "Too many failed sign-ins; retry in a minute."})
		return
	case err != nil:
		c.log.ErrorContext(r.Context(), "console sign-in", "error", err)
		c.fail(w, r, nil, http.StatusServiceUnavailable, "Sign-in is unavailable; try again.")
		return
	}
	c.startSession(w, r, p, MethodAPIKey, key)
}

func (c *Console) startSession(w http.ResponseWriter, r *http.Request, p auth.Principal, method, credential string) {
	sess, err := c.sessions.create(r.Context(), p, method, credential)
	if err != nil {
		c.log.ErrorContext(r.Context(), "console session", "error", err)
		c.fail(w, r, nil, http.StatusServiceUnavailable, "Sign-in is unavailable; try again.")
		return
	}
	c.log.InfoContext(r.Context(), "console sign-in", "account", p.AccountID, "method", method, "key", p.KeyID, "subject", p.Subject)
	c.setSessionCookie(w, r, sess)
	c.redirectAfterSignIn(w, r, sess)
}

func (c *Console) signOut(w http.ResponseWriter, r *http.Request, sess *Session) {
	if err := c.sessions.revoke(r.Context(), sess.token); err != nil {
		c.log.ErrorContext(r.Context(), "console sign-out", "error", err)
		c.fail(w, r, sess, http.StatusServiceUnavailable, "Signing out failed; try again.")
		return
	}
	c.clearSessionCookie(w, r)
	http.Redirect(w, r, "/console/signin", http.StatusSeeOther)
}

// oidcClient is the OpenID provider (discovered on first use) and the
// console's OAuth client at it.
type oidcClient struct {
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier
}

// loginTTL bounds an OpenID Connect sign-in from redirect to callback.
const loginTTL = 10 * time.Minute

func (c *Console) oidcClient(ctx context.Context) (*oidcClient, error) {
	c.oidcMu.Lock()
	defer c.oidcMu.Unlock()
	if c.oidc != nil {
		return c.oidc, nil
	}
	prov, err := oidc.NewProvider(oidc.ClientContext(ctx, c.deps.HTTPClient), c.deps.JWT.Issuer)
	if err != nil {
		return nil, fmt.Errorf("openid provider %s: %w", c.deps.JWT.Issuer, err)
	}
	c.oidc = &oidcClient{
		oauth: oauth2.Config{
			ClientID: c.cfg.OIDCClientID, ClientSecret: c.cfg.OIDCClientSecret, RedirectURL: c.cfg.OIDCRedirectURL,
			Endpoint: prov.Endpoint(), Scopes: []string{oidc.ScopeOpenID},
		},
		verifier: prov.Verifier(&oidc.Config{ClientID: c.cfg.OIDCClientID, Now: c.now}),
	}
	return c.oidc, nil
}

// signInOIDC starts the authorization code flow with PKCE (S256), a state
// bound to this browser by a cookie, and a nonce.
func (c *Console) signInOIDC(w http.ResponseWriter, r *http.Request) {
	if c.cfg.OIDCClientID == "" {
		c.fail(w, r, nil, http.StatusNotFound, "Sign-in with Namirasoft Account is not configured here.")
		return
	}
	oc, err := c.oidcClient(r.Context())
	if err != nil {
		c.log.ErrorContext(r.Context(), "console oidc", "error", err)
		c.fail(w, r, nil, http.StatusServiceUnavailable, "Namirasoft Account cannot be reached; try again or sign in with an API key.")
		return
	}
	state, err := newToken()
	if err != nil {
		c.fail(w, r, nil, http.StatusInternalServerError, "Try again.")
		return
	}
	nonce, err := newToken()
	if err != nil {
		c.fail(w, r, nil, http.StatusInternalServerError, "Try again.")
		return
	}
	verifier := oauth2.GenerateVerifier()
	now := c.now()
	if _, err := c.deps.Pool.Exec(r.Context(), `
		WITH gone AS (DELETE FROM console_oidc_logins WHERE expires_at <= $5)
		INSERT INTO console_oidc_logins (state_hash, verifier, nonce, expires_at) VALUES ($1, $2, $3, $4)`,
		tokenHash(state), verifier, nonce, now.Add(loginTTL), now); err != nil {
		c.log.ErrorContext(r.Context(), "console oidc login", "error", err)
		c.fail(w, r, nil, http.StatusServiceUnavailable, "Sign-in is unavailable; try again.")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: loginCookie, Value: state, Path: "/console/auth/", MaxAge: int(loginTTL / time.Second),
		HttpOnly: true, Secure: c.secureRequest(r), SameSite: http.SameSiteLaxMode,
	})
	http.Redirect(w, r, oc.oauth.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), http.StatusFound)
}

// oidcCallback finishes the flow: the state must be this browser's and
// unused, the code is exchanged with the PKCE verifier, the ID token must be
// the issuer's, for this client and JWT_AUDIENCE, with the nonce; its
// account and scope claims make the session as they make a token's principal
// in the API (jwtauth).
func (c *Console) oidcCallback(w http.ResponseWriter, r *http.Request) {
	if c.cfg.OIDCClientID == "" {
		c.fail(w, r, nil, http.StatusNotFound, "Sign-in with Namirasoft Account is not configured here.")
		return
	}
	q := r.URL.Query()
	state := q.Get("state")
	ck, err := r.Cookie(loginCookie)
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: "", Path: "/console/auth/", MaxAge: -1, HttpOnly: true, Secure: c.secureRequest(r), SameSite: http.SameSiteLaxMode})
	if err != nil || state == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(state)) != 1 {
		c.fail(w, r, nil, http.StatusBadRequest, "This sign-in was not started in this browser, or it took too long. Start again.")
		return
	}
	var verifier, nonce string
	err = c.deps.Pool.QueryRow(r.Context(), `DELETE FROM console_oidc_logins WHERE state_hash = $1 AND expires_at > $2 RETURNING verifier, nonce`,
		tokenHash(state), c.now()).Scan(&verifier, &nonce)
	if errors.Is(err, pgx.ErrNoRows) {
		c.fail(w, r, nil, http.StatusBadRequest, "This sign-in was already used or has expired. Start again.")
		return
	}
	if err != nil {
		c.log.ErrorContext(r.Context(), "console oidc login", "error", err)
		c.fail(w, r, nil, http.StatusServiceUnavailable, "Sign-in is unavailable; try again.")
		return
	}
	if e := q.Get("error"); e != "" {
		c.fail(w, r, nil, http.StatusUnauthorized, "Namirasoft Account refused the sign-in: "+e)
		return
	}
	p, idToken, err := c.exchange(r.Context(), q.Get("code"), verifier, nonce)
	if err != nil {
		c.log.WarnContext(r.Context(), "console oidc sign-in refused", "error", err)
		c.fail(w, r, nil, http.StatusUnauthorized, "The sign-in with Namirasoft Account could not be verified.")
		return
	}
	if err := c.accounts.Ensure(r.Context(), p.AccountID); err != nil {
		c.log.WarnContext(r.Context(), "console oidc account", "account", p.AccountID, "error", err)
		c.fail(w, r, nil, http.StatusForbidden, "This Namirasoft account is not registered with the email sender.")
		return
	}
	c.startSession(w, r, p, MethodOIDC, idToken)
}

// exchange returns the principal of the code's ID token, and the token.
func (c *Console) exchange(ctx context.Context, code, verifier, nonce string) (auth.Principal, string, error) {
	if code == "" {
		return auth.Principal{}, "", errors.New("no code")
	}
	oc, err := c.oidcClient(ctx)
	if err != nil {
		return auth.Principal{}, "", err
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, c.deps.HTTPClient)
	tok, err := oc.oauth.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		return auth.Principal{}, "", fmt.Errorf("exchange code: %w", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return auth.Principal{}, "", errors.New("no id_token in the token response")
	}
	idt, err := oc.verifier.Verify(ctx, raw)
	if err != nil {
		return auth.Principal{}, "", fmt.Errorf("id token: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return auth.Principal{}, "", errors.New("id token: nonce mismatch")
	}
	if !slices.Contains(idt.Audience, c.deps.JWT.Audience) {
		return auth.Principal{}, "", fmt.Errorf("id token: audience %v lacks %q (JWT_AUDIENCE)", idt.Audience, c.deps.JWT.Audience)
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return auth.Principal{}, "", fmt.Errorf("id token claims: %w", err)
	}
	p, err := c.deps.JWT.Principal(claims)
	return p, raw, err
}
