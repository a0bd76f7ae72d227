package oidcprovider

import (
	"context"
	"crypto/rsa"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// storage is op.Storage in memory: one client, the configured users, the
// authorization requests and their codes. Grants other than the
// authorization code (refresh, client credentials, JWT profile, token
// exchange, device) are not offered.
type storage struct {
	cfg    Config
	issuer string
	key    signingKey
	p      *Provider

	mu        sync.Mutex
	redirects []string
	requests  map[string]*authRequest // by id
	codes     map[string]string       // code -> request id
	tokens    map[string]*token       // access token id
}

type token struct {
	subject, clientID string
	scopes            []string
	expires           time.Time
}

func newStorage(cfg Config, issuer string, key *rsa.PrivateKey, p *Provider) *storage {
	return &storage{
		cfg: cfg, issuer: issuer, p: p,
		key:       signingKey{id: "test-" + randomHex(4), key: key},
		redirects: slices.Clone(cfg.RedirectURIs),
		requests:  map[string]*authRequest{},
		codes:     map[string]string{},
		tokens:    map[string]*token{},
	}
}

func (s *storage) addRedirectURI(uri string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Contains(s.redirects, uri) {
		s.redirects = append(s.redirects, uri)
	}
}

func (s *storage) user(sub string) (User, bool) {
	for _, u := range s.cfg.Users {
		if u.Subject == sub {
			return u, true
		}
	}
	return User{}, false
}

func (s *storage) request(id string) (authRequest, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.requests[id]
	if !ok || r.done {
		return authRequest{}, false
	}
	return *r, true
}

func (s *storage) approve(id, sub string) bool {
	if _, ok := s.user(sub); !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.requests[id]
	if !ok || r.done {
		return false
	}
	r.done, r.subject, r.authTime = true, sub, time.Now()
	return true
}

var errNotFound = errors.New("not found")

// CreateAuthRequest refuses a request without PKCE S256 (op itself accepts
// plain and none); op has already checked the client and the redirect URI.
func (s *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	if req.CodeChallenge == "" || req.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		s.p.refused.Add(1)
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE with code_challenge_method=S256 is required")
	}
	if req.ResponseType != oidc.ResponseTypeCode {
		s.p.refused.Add(1)
		return nil, oidc.ErrInvalidRequest().WithDescription("only the authorization code flow is offered")
	}
	r := &authRequest{
		id: randomHex(16), created: time.Now(), clientID: req.ClientID, redirectURI: req.RedirectURI,
		state: req.State, nonce: req.Nonce, scopes: req.Scopes, responseType: req.ResponseType,
		responseMode: req.ResponseMode, challenge: &oidc.CodeChallenge{Challenge: req.CodeChallenge, Method: req.CodeChallengeMethod},
		audience: []string{req.ClientID, s.cfg.Audience},
	}
	s.mu.Lock()
	s.requests[r.id] = r
	s.mu.Unlock()
	c := *r
	return &c, nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.requests[id]
	if !ok {
		return nil, errNotFound
	}
	c := *r
	return &c, nil
}

func (s *storage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.codes[code]
	if !ok {
		return nil, errNotFound
	}
	r, ok := s.requests[id]
	if !ok {
		return nil, errNotFound
	}
	c := *r
	return &c, nil
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = id
	return nil
}

// DeleteAuthRequest runs when the code is exchanged: the code is then gone
// (a code works once).
func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.requests, id)
	for code, rid := range s.codes {
		if rid == id {
			delete(s.codes, code)
		}
	}
	return nil
}

func (s *storage) CreateAccessToken(_ context.Context, req op.TokenRequest) (string, time.Time, error) {
	id := randomHex(16)
	exp := time.Now().Add(5 * time.Minute)
	clientID := ""
	if ar, ok := req.(*authRequest); ok {
		clientID = ar.clientID
	}
	s.mu.Lock()
	s.tokens[id] = &token{subject: req.GetSubject(), clientID: clientID, scopes: req.GetScopes(), expires: exp}
	s.mu.Unlock()
	s.p.tokens.Add(1)
	return id, exp, nil
}

func (s *storage) CreateAccessAndRefreshTokens(context.Context, op.TokenRequest, string) (string, string, time.Time, error) {
	return "", "", time.Time{}, errors.New("refresh tokens are not offered")
}

func (s *storage) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, op.ErrInvalidRefreshToken
}

func (s *storage) TerminateSession(context.Context, string, string) error { return nil }

func (s *storage) RevokeToken(_ context.Context, tokenOrID, _, _ string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, tokenOrID)
	return nil
}

func (s *storage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) { return s.key, nil }

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{s.key}}, nil
}

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if id != s.cfg.ClientID {
		return nil, errNotFound
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return &client{id: id, redirects: slices.Clone(s.redirects), lifetime: s.cfg.IDTokenLifetime}, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	if id != s.cfg.ClientID || secret != s.cfg.ClientSecret {
		return oidc.ErrInvalidClient().WithDescription("wrong client id or secret")
	}
	return nil
}

func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest fills the ID token: the profile claims the scopes
// ask for, and always the account claim (and scope when the user has some).
func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	return s.userinfo(info, req.GetSubject(), scopes)
}

func (s *storage) userinfo(info *oidc.UserInfo, sub string, scopes []string) error {
	u, ok := s.user(sub)
	if !ok {
		return errNotFound
	}
	info.Subject = u.Subject
	if slices.Contains(scopes, oidc.ScopeEmail) {
		info.Email, info.EmailVerified = u.Email, true
	}
	if slices.Contains(scopes, oidc.ScopeProfile) {
		info.Name = u.Name
	}
	info.AppendClaims(s.cfg.AccountClaim, u.AccountID)
	if len(u.Scopes) > 0 {
		info.AppendClaims("scope", strings.Join(u.Scopes, " "))
	}
	return nil
}

func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, tokenID, subject, _ string) error {
	s.mu.Lock()
	t, ok := s.tokens[tokenID]
	s.mu.Unlock()
	if !ok || time.Now().After(t.expires) {
		return errors.New("token is invalid or has expired")
	}
	return s.userinfo(info, t.subject, t.scopes)
}

func (s *storage) SetIntrospectionFromToken(context.Context, *oidc.IntrospectionResponse, string, string, string) error {
	return errors.New("introspection is not offered")
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("JWT profile is not offered")
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("JWT profile is not offered")
}

func (s *storage) Health(context.Context) error { return nil }

// authRequest is op.AuthRequest.
type authRequest struct {
	id, clientID, redirectURI, state, nonce, subject string
	created, authTime                                time.Time
	scopes, audience                                 []string
	responseType                                     oidc.ResponseType
	responseMode                                     oidc.ResponseMode
	challenge                                        *oidc.CodeChallenge
	done                                             bool
}

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return "" }
func (a *authRequest) GetAMR() []string                      { return []string{"pwd"} }
func (a *authRequest) GetAudience() []string                 { return a.audience }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.clientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.challenge }
func (a *authRequest) GetNonce() string                      { return a.nonce }
func (a *authRequest) GetRedirectURI() string                { return a.redirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.responseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.responseMode }
func (a *authRequest) GetScopes() []string                   { return a.scopes }
func (a *authRequest) GetState() string                      { return a.state }
func (a *authRequest) GetSubject() string                    { return a.subject }
func (a *authRequest) Done() bool                            { return a.done }

// client is the console: a confidential web client (client_secret_basic or
// _post) with exact redirect URIs.
type client struct {
	id        string
	redirects []string
	lifetime  time.Duration
}

func (c *client) GetID() string                       { return c.id }
func (c *client) RedirectURIs() []string              { return c.redirects }
func (c *client) PostLogoutRedirectURIs() []string    { return nil }
func (c *client) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *client) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType { return []oidc.GrantType{oidc.GrantTypeCode} }
func (c *client) LoginURL(id string) string    { return "/login?authRequestID=" + id }
func (c *client) AccessTokenType() op.AccessTokenType {
	return op.AccessTokenTypeBearer
}
func (c *client) IDTokenLifetime() time.Duration { return c.lifetime }
func (c *client) DevMode() bool                  { return false }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) IsScopeAllowed(string) bool           { return false }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *client) ClockSkew() time.Duration             { return 0 }

type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k signingKey) Key() any                                    { return k.key }
func (k signingKey) ID() string                                  { return k.id }

type publicKey struct{ signingKey }

func (k publicKey) ID() string                         { return k.id }
func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return &k.key.PublicKey }
