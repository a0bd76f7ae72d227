// Package console is the report service's web console: account owners sign
// in (with an API key, or with Namirasoft Account over OpenID Connect) and
// watch their delivery reports, served under /console/ on the report's HTTP
// listener.
//
// # What it calls
//
// The pages call the report's own gRPC service implementations in process
// (ReportService, WebhookService), with the session's principal in the
// context exactly as the API's interceptor puts it there, after checking the
// method's scope in the API's own table (report.MethodScopes,
// auth.RequiredScope): a session can do what its credential can do through
// the API, no more. The account comes only from the session, never from the
// request, so another account's ids are answered 404 like in the API.
// Console requests are not API calls: they are not usage-recorded or
// rate-limited (pkg/apigate), they are bounded by the session instead.
//
// Actions that belong to ingest (API keys, cancel; later senders, providers,
// suppressions) call ingest's gRPC API (Deps.Ingest, pkg/client) with the
// credential the session was signed in with, kept sealed by MASTER_KEYS in
// the session's row: ingest authorizes them like any API call.
//
// # Sessions and CSRF
//
// A session is a random 256-bit token in an HttpOnly, Secure (a __Host-
// cookie), SameSite=Lax cookie; the console_sessions row keeps its SHA-256,
// the account, the scopes and how it was signed in. Signing out deletes the
// row; a session ends after CONSOLE_SESSION_IDLE unused and
// CONSOLE_SESSION_MAX after sign-in; one signed in with an API key ends when
// the key is revoked or expires, and takes the key's current scopes. Only
// over plain HTTP to a loopback host, and only with
// CONSOLE_DEV_LOOPBACK_HTTP (make run), is the cookie not Secure.
//
// Every POST must come from the console's origin (Origin, and
// Sec-Fetch-Site when sent) and carry the session's CSRF token (form field
// csrf or header X-CSRF-Token).
//
// # Pages
//
// html/template with a little JavaScript (live events over Server-Sent
// Events), assets embedded; the Content-Security-Policy allows nothing
// remote. A message's HTML body is shown in an iframe with sandbox (no
// scripts, no same origin) and srcdoc, under a CSP that blocks every remote
// load.
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/jwtauth"
	"github.com/namirasoft/email-sender/pkg/operatortoken"
	"github.com/namirasoft/email-sender/pkg/secretbox"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// Prefix is where the console is served.
const Prefix = "/console/"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// ContentSource returns a message's content while it is retained (ok false
// after RETENTION_PERIOD), within an account, and the first recipients of a
// page of messages (the list shows them; ListMessages has their count only).
type ContentSource interface {
	Content(ctx context.Context, accountID, messageID string) (msg *emailsenderv1.EmailMessage, ok bool, err error)
	Recipients(ctx context.Context, accountID string, messageIDs []string) (map[string][]string, error)
}

// Ingest is ingest's API as the console calls it: each call carries the
// credential that WithCredential put in its context, and ingest authorizes
// it as any API call (pkg/client with a TokenSource reading
// CredentialFrom).
type Ingest interface {
	CancelScheduled(ctx context.Context, messageID string) error
	ListAPIKeys(ctx context.Context) (*emailsenderv1.ListApiKeysResponse, error)
	CreateAPIKey(ctx context.Context, req *emailsenderv1.CreateApiKeyRequest) (*emailsenderv1.CreateApiKeyResponse, error)
	RevokeAPIKey(ctx context.Context, id string) error
	ListSuppressions(ctx context.Context, req *emailsenderv1.ListSuppressionsRequest) (*emailsenderv1.ListSuppressionsResponse, error)
	AddSuppression(ctx context.Context, req *emailsenderv1.AddSuppressionRequest) error
	RemoveSuppression(ctx context.Context, address string) error
	ListSenders(ctx context.Context) (*emailsenderv1.ListSendersResponse, error)
	AddSender(ctx context.Context, req *emailsenderv1.AddSenderRequest) error
	VerifySender(ctx context.Context, id, code string) error
	RemoveSender(ctx context.Context, id string) error
	ListUsage(ctx context.Context, req *emailsenderv1.ListUsageRequest) (*emailsenderv1.ListUsageResponse, error)
	DeleteAccountData(ctx context.Context, confirmAccountID string) (*emailsenderv1.DeleteAccountDataResponse, error)
	ListProviders(ctx context.Context) (*emailsenderv1.ListProvidersResponse, error)
	VerifyProvider(ctx context.Context, id string) (*emailsenderv1.VerifyProviderResponse, error)
}

type credentialKey struct{}

// WithCredential returns ctx carrying a session's credential for Ingest.
func WithCredential(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, credentialKey{}, token)
}

// CredentialFrom returns the credential WithCredential put in ctx.
func CredentialFrom(ctx context.Context) (string, error) {
	tok, _ := ctx.Value(credentialKey{}).(string)
	if tok == "" {
		return "", errors.New("no console credential in the context")
	}
	return tok, nil
}

// Deps are what the console uses.
type Deps struct {
	Pool *pgxpool.Pool
	// Keys verifies API keys as the API does (the report's authenticator);
	// failed sign-ins are throttled per client address as the API's are
	// (Throttle, AUTH_FAILURES_*).
	Keys     auth.Authenticator
	Throttle auth.ThrottleConfig
	// JWT is the API's Namirasoft Account token configuration: the console's
	// OpenID Connect sign-in uses its issuer, audience and claims.
	JWT jwtauth.Config
	// Report and Webhooks are the report's gRPC service implementations;
	// Scopes maps their full method names to scopes (the API's table).
	Report   emailsenderv1.ReportServiceServer
	Webhooks emailsenderv1.WebhookServiceServer
	Scopes   map[string]string
	Contents ContentSource
	// Ingest, with Keyring, enables the actions that belong to ingest;
	// IngestScopes is ingest's method → scope table (ingest.MethodScopes), to
	// show only the buttons a session may use (ingest refuses the rest).
	Ingest       Ingest
	IngestScopes map[string]string
	// Thresholds are the reputation guard's, for the dashboard.
	Thresholds Thresholds
	// Keyring seals the sessions' credentials (MASTER_KEYS).
	Keyring *secretbox.Keyring
	Logger  *slog.Logger
	// JetStream reads the streams' consumers for the operator view.
	JetStream jetstream.JetStream
	// Operator is ingest's OperatorService (CONSOLE_OPERATOR_ADDR), for the
	// operator view's suspend and resume; nil: those are off.
	Operator OperatorAPI
	// Now is the clock (tests); nil: time.Now.
	Now func() time.Time
	// HTTPClient calls the OpenID provider; nil: http.DefaultClient.
	HTTPClient *http.Client
}

// Console serves the console.
type Console struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	now      func() time.Time
	sessions *sessions
	accounts *jwtauth.Accounts
	pages    map[string]*template.Template
	mux      *http.ServeMux

	oidcMu sync.Mutex
	oidc   *oidcClient

	// operators are the operator tokens (OPERATOR_TOKEN_SHA256), checked
	// through operatorAuth (throttled); none: the operator view is off.
	operators    []operatortoken.Token
	operatorAuth auth.Authenticator
	shareCache   shareCache
}

// maxFormBytes bounds a POST body.
const maxFormBytes = 64 << 10

// New returns the console.
func New(cfg Config, deps Deps) (*Console, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Pool == nil || deps.Keys == nil || deps.Report == nil || deps.Webhooks == nil || deps.Scopes == nil || deps.Contents == nil {
		return nil, errors.New("console: Pool, Keys, Report, Webhooks, Scopes and Contents are required")
	}
	if cfg.OIDCClientID != "" && deps.JWT.Issuer == "" {
		return nil, errors.New("console: CONSOLE_OIDC_CLIENT_ID needs JWT_ISSUER (and JWT_JWKS_URL): the console signs in at the API's issuer")
	}
	deps.JWT = deps.JWT.WithDefaults()
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Keyring == nil {
		deps.Ingest, deps.Operator = nil, nil // the ingest and operator actions are off
	}
	if deps.Ingest == nil && deps.Operator == nil {
		deps.Keyring = nil // no credential is kept
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.HTTPClient == nil {
		deps.HTTPClient = http.DefaultClient
	}
	operators, err := operatortoken.Parse(cfg.OperatorTokens)
	if err != nil {
		return nil, err
	}
	deps.Keys = auth.NewThrottle(deps.Keys, deps.Throttle, clientAddr)
	c := &Console{cfg: cfg, deps: deps, log: deps.Logger, now: deps.Now,
		sessions:     &sessions{pool: deps.Pool, keyring: deps.Keyring, idle: cfg.SessionIdle, max: cfg.SessionMax, now: deps.Now},
		accounts:     jwtauth.NewAccounts(deps.Pool, deps.JWT.AutoProvision),
		operators:    operators,
		operatorAuth: auth.NewThrottle(operatorTokens(operators), deps.Throttle, clientAddr),
	}
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	c.routes()
	return c, nil
}

func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		if n == "templates/base.html" {
			continue
		}
		t, err := template.New("base.html").Funcs(funcs).ParseFS(templateFS, "templates/base.html", n)
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", n, err)
		}
		out[strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")] = t
	}
	return out, nil
}

func (c *Console) routes() {
	m := http.NewServeMux()
	assets, _ := fs.Sub(assetFS, "assets")
	m.Handle("GET /console/assets/", http.StripPrefix("/console/assets/", assetHandler(http.FileServerFS(assets))))
	m.HandleFunc("GET /console/signin", c.signInPage)
	m.HandleFunc("POST /console/signin", c.signInKey)
	m.HandleFunc("GET /console/signin/oidc", c.signInOIDC)
	m.HandleFunc("GET /console/auth/callback", c.oidcCallback)
	m.HandleFunc("POST /console/signout", c.authed(c.signOut))
	m.HandleFunc("GET /console/{$}", c.authed(c.activity))
	m.HandleFunc("GET /console/events", c.authed(c.events))
	m.HandleFunc("GET /console/dashboard", c.authed(c.dashboard))
	m.HandleFunc("GET /console/messages/{id}", c.authed(c.message))
	m.HandleFunc("GET /console/webhooks", c.authed(c.webhooks))
	m.HandleFunc("POST /console/webhooks/{id}/delete", c.authed(c.deleteWebhook))
	m.HandleFunc("GET /console/webhooks/{id}/deliveries", c.authed(c.deliveries))
	m.HandleFunc("POST /console/webhooks/{id}/deliveries/{delivery}/replay", c.authed(c.replayDelivery))
	m.HandleFunc("POST /console/messages/{id}/cancel", c.authed(c.cancelMessage))
	m.HandleFunc("GET /console/keys", c.authed(c.apiKeys))
	m.HandleFunc("POST /console/keys", c.authed(c.createAPIKey))
	m.HandleFunc("POST /console/keys/{id}/revoke", c.authed(c.revokeAPIKey))
	m.HandleFunc("GET /console/suppressions", c.authed(c.suppressions))
	m.HandleFunc("POST /console/suppressions", c.authed(c.addSuppression))
	m.HandleFunc("POST /console/suppressions/remove", c.authed(c.removeSuppression))
	m.HandleFunc("GET /console/senders", c.authed(c.senders))
	m.HandleFunc("POST /console/senders", c.authed(c.addSender))
	m.HandleFunc("POST /console/senders/{id}/verify", c.authed(c.verifySender))
	m.HandleFunc("POST /console/senders/{id}/remove", c.authed(c.removeSender))
	m.HandleFunc("GET /console/usage", c.authed(c.usage))
	m.HandleFunc("GET /console/providers", c.authed(c.providers))
	m.HandleFunc("POST /console/providers/{id}/verify", c.authed(c.verifyProvider))
	m.HandleFunc("GET /console/account", c.authed(c.accountPage))
	m.HandleFunc("POST /console/account/delete", c.authed(c.deleteAccount))
	c.templatesRoutes(m)
	// The operator view (operator.go): its own sign-in, session and cookie.
	m.HandleFunc("GET /console/operator/signin", c.operatorSignInPage)
	m.HandleFunc("POST /console/operator/signin", c.operatorSignIn)
	m.HandleFunc("POST /console/operator/signout", c.operatorAuthed(c.operatorSignOut))
	m.HandleFunc("GET /console/operator/{$}", c.operatorAuthed(c.operatorOverview))
	m.HandleFunc("POST /console/operator/accounts/{action}", c.operatorAuthed(c.accountAction))
	m.HandleFunc("GET /console/operator/trace", c.operatorAuthed(c.operatorTrace))
	c.mux = m
}

type clientAddrKey struct{}

// clientAddr is the client address ServeHTTP put in ctx (the TCP peer: the
// console believes no forwarding header).
func clientAddr(ctx context.Context) string {
	a, _ := ctx.Value(clientAddrKey{}).(string)
	return a
}

// ServeHTTP serves the console.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		r = r.WithContext(context.WithValue(r.Context(), clientAddrKey{}, host))
	}
	h := w.Header()
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// same-origin, not no-referrer: under no-referrer a browser sends
	// "Origin: null" with the console's own form posts, which the origin
	// check below must refuse (found by the Chromium suite: no form worked).
	// Nothing goes to another origin either way.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, formLimit(r.URL.Path))
		// Every state-changing request comes from the console's own pages.
		if !c.sameOrigin(r) {
			c.fail(w, r, nil, http.StatusForbidden, "This request did not come from the console's own pages.")
			return
		}
	} else if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	c.mux.ServeHTTP(w, r)
}

// pageCSP allows the console's own scripts, styles and event stream, nothing
// remote, and no frame source (a srcdoc iframe needs none).
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// messageCSP is pageCSP with inline styles, on the message page only: the
// body's srcdoc iframe inherits the page's policy (and adds its own,
// stricter one), and mail is styled inline.
const messageCSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// bodyCSP is the message body's own policy, in its srcdoc.
const bodyCSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

func assetHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		next.ServeHTTP(w, r)
	})
}

// authed serves h with r's session; a GET without one goes to the sign-in
// page, anything else is 401. A POST must carry the session's CSRF token.
func (c *Console) authed(h func(http.ResponseWriter, *http.Request, *Session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, err := c.session(r)
		if err != nil {
			if !errors.Is(err, errNoSession) {
				c.fail(w, r, nil, http.StatusServiceUnavailable, "The console cannot reach its database; try again.")
				c.log.ErrorContext(r.Context(), "console session", "error", err)
				return
			}
			if r.Method == http.MethodGet && r.URL.Path != "/console/events" {
				http.Redirect(w, r, "/console/signin", http.StatusSeeOther)
				return
			}
			c.fail(w, r, nil, http.StatusUnauthorized, "Sign in first.")
			return
		}
		if r.Method == http.MethodPost && !validCSRF(r, sess) {
			c.fail(w, r, sess, http.StatusForbidden, "This form is stale or forged (CSRF token mismatch). Reload the page.")
			return
		}
		h(w, r, sess)
	}
}

// can reports whether sess may call the gRPC method.
func (c *Console) can(sess *Session, method string) bool {
	return sess.Principal().Has(auth.RequiredScope(c.deps.Scopes, method))
}

// call checks method's scope for sess and returns the context the service
// implementation reads the caller from.
func (c *Console) call(ctx context.Context, sess *Session, method string) (context.Context, error) {
	if !c.can(sess, method) {
		return nil, status.Errorf(codes.PermissionDenied, "the credential lacks the %q scope", auth.RequiredScope(c.deps.Scopes, method))
	}
	return auth.WithPrincipal(ctx, sess.Principal()), nil
}

// canIngest reports whether sess may call ingest's method through the
// console: the ingest actions are on, the session keeps its credential, and
// its scopes allow the method.
func (c *Console) canIngest(sess *Session, method string) bool {
	return c.deps.Ingest != nil && sess.sealed != nil &&
		sess.Principal().Has(auth.RequiredScope(c.deps.IngestScopes, method))
}

// errPermission is the refusal of method for sess.
func errPermission(c *Console, sess *Session, method string) error {
	if c.deps.Ingest == nil || sess.sealed == nil {
		return status.Error(codes.FailedPrecondition, "this console does not reach ingest (CONSOLE_INGEST_ADDR, MASTER_KEYS), or the session keeps no credential; sign in again")
	}
	return status.Errorf(codes.PermissionDenied, "the credential lacks the %q scope", auth.RequiredScope(c.deps.IngestScopes, method))
}

// callIngest checks method's scope for sess and returns the context whose
// Ingest calls carry the session's credential; ingest authorizes it again.
func (c *Console) callIngest(ctx context.Context, sess *Session, method string) (context.Context, error) {
	if !c.canIngest(sess, method) {
		return nil, errPermission(c, sess, method)
	}
	cred, err := c.sessions.credential(sess)
	if err != nil {
		return nil, err
	}
	return WithCredential(ctx, cred), nil
}

// page is what every page template gets.
type page struct {
	Title   string
	Session *Session
	// Nav: the pages the session may see.
	CanWebhooks     bool
	CanKeys         bool
	CanSuppressions bool
	CanSenders      bool
	CanUsage        bool
	CanDelete       bool
	CanProviders    bool
	CanTemplates    bool
	Data            any
	Error           string
	// Operator is the operator session of an operator page (Session is nil
	// there).
	Operator *OperatorSession
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, code int, name string, p page) {
	t, ok := c.pages[name]
	if !ok {
		http.Error(w, "no such page", http.StatusInternalServerError)
		return
	}
	if p.Session != nil {
		p.CanWebhooks = c.can(p.Session, emailsenderv1.WebhookService_ListWebhooks_FullMethodName)
		p.CanKeys = c.canIngest(p.Session, emailsenderv1.AccountService_ListApiKeys_FullMethodName)
		p.CanSuppressions = c.canIngest(p.Session, emailsenderv1.AccountService_ListSuppressions_FullMethodName)
		p.CanSenders = c.canIngest(p.Session, emailsenderv1.AccountService_ListSenders_FullMethodName)
		p.CanUsage = c.canIngest(p.Session, emailsenderv1.AccountService_ListUsage_FullMethodName)
		p.CanDelete = c.canIngest(p.Session, emailsenderv1.AccountService_DeleteAccountData_FullMethodName)
		p.CanProviders = c.canIngest(p.Session, emailsenderv1.AccountService_ListProviders_FullMethodName)
		p.CanTemplates = c.canTemplates(p.Session, mListTemplates)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if err := t.Execute(w, p); err != nil {
		c.log.ErrorContext(r.Context(), "console render", "page", name, "error", err)
	}
}

// fail answers with an error page.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, sess *Session, code int, msg string) {
	c.render(w, r, code, "error", page{Title: http.StatusText(code), Session: sess, Error: msg})
}

// failCall answers with the error of a service call, as the HTTP API would
// map its status.
func (c *Console) failCall(w http.ResponseWriter, r *http.Request, sess *Session, op string, err error) {
	st := status.Convert(err)
	switch st.Code() {
	case codes.NotFound:
		c.fail(w, r, sess, http.StatusNotFound, "Not found.")
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		c.fail(w, r, sess, http.StatusBadRequest, st.Message())
	case codes.PermissionDenied:
		c.fail(w, r, sess, http.StatusForbidden, "Your sign-in does not allow this: "+st.Message()+".")
	case codes.Unauthenticated:
		c.fail(w, r, sess, http.StatusUnauthorized, "Sign in again.")
	default:
		c.log.ErrorContext(r.Context(), "console call failed", "op", op, "error", err)
		c.fail(w, r, sess, http.StatusInternalServerError, "Something failed on our side; try again.")
	}
}

// Run deletes ended sessions every few minutes until ctx ends (a session's
// own requests and its account's next sign-in delete it too).
func (c *Console) Run(ctx context.Context) error {
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := c.sessions.pruneOperators(ctx); err != nil {
				c.log.WarnContext(ctx, "console prune", "error", err)
			}
			if n, err := c.sessions.prune(ctx); err != nil {
				c.log.WarnContext(ctx, "console prune", "error", err)
			} else if n > 0 {
				c.log.DebugContext(ctx, "console sessions pruned", "sessions", n)
			}
		}
	}
}
