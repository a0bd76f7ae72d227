package console

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/operatortoken"
)

// Operators: people who run the installation, apart from tenants. An
// operator signs in at /console/operator/signin with an operator token
// (OPERATOR_TOKEN_SHA256, as ingest's OperatorService takes them); the
// session is an operator's, with no account, kept in
// console_operator_sessions under its own cookie. The tenant pages read only
// the tenant cookie and the operator pages only the operator cookie, so an
// operator session reaches no tenant page and a tenant session no operator
// page, by construction (TestConsoleOperatorIsolation).

// OperatorSession is a signed-in operator.
type OperatorSession struct {
	// Name is the operator token's name: the audited actor.
	Name      string
	CSRF      string
	CreatedAt time.Time
	ExpiresAt time.Time

	token  string
	hash   [sha256.Size]byte
	sealed []byte
}

// OperatorAPI is ingest's OperatorService as the console calls it: each call
// carries the operator token WithCredential put in its context, and ingest
// authenticates and audits it (actor operator:<name>).
type OperatorAPI interface {
	SuspendAccount(ctx context.Context, account, reason string) error
	ResumeAccount(ctx context.Context, account, reason string) error
}

// Operator cookies (as the tenant's: __Host- when Secure).
const (
	operatorCookieSecure   = "__Host-es_console_op"
	operatorCookieInsecure = "es_console_op"
)

func (c *Console) operatorCookieName(r *http.Request) string {
	if c.secureRequest(r) {
		return operatorCookieSecure
	}
	return operatorCookieInsecure
}

// operatorsOn reports whether operator sign-in is configured.
func (c *Console) operatorsOn() bool { return len(c.operators) > 0 }

// createOperator stores a new operator session for the token named name.
func (s *sessions) createOperator(ctx context.Context, name, token string) (*OperatorSession, error) {
	st, err := newToken()
	if err != nil {
		return nil, err
	}
	csrf, err := newToken()
	if err != nil {
		return nil, err
	}
	now := s.now()
	sess := &OperatorSession{Name: name, CSRF: csrf, CreatedAt: now, ExpiresAt: now.Add(s.max), token: st, hash: sha256.Sum256([]byte(token))}
	if s.keyring != nil {
		if sess.sealed, err = s.keyring.Seal([]byte(token), tokenHash(st)); err != nil {
			return nil, fmt.Errorf("seal operator credential: %w", err)
		}
	}
	batch := &pgx.Batch{}
	batch.Queue(`DELETE FROM console_operator_sessions WHERE expires_at <= $1 OR last_seen_at <= $2`, now, now.Add(-s.idle))
	batch.Queue(`
		INSERT INTO console_operator_sessions (token_hash, operator, token_sha256, credential, csrf_token, created_at, last_seen_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $6, $7)`,
		tokenHash(st), name, sess.hash[:], sess.sealed, csrf, now, sess.ExpiresAt)
	if err := s.pool.SendBatch(ctx, batch).Close(); err != nil {
		return nil, fmt.Errorf("store operator session: %w", err)
	}
	return sess, nil
}

// lookupOperator returns the live operator session of token whose operator
// token is still one of tokens (removing a token from OPERATOR_TOKEN_SHA256
// ends its sessions).
func (s *sessions) lookupOperator(ctx context.Context, tokens []operatortoken.Token, token string) (*OperatorSession, error) {
	if token == "" || len(token) > 64 {
		return nil, errNoSession
	}
	now := s.now()
	sess := &OperatorSession{token: token}
	var (
		hash     []byte
		lastSeen time.Time
	)
	err := s.pool.QueryRow(ctx, `
		SELECT operator, token_sha256, credential, csrf_token, created_at, last_seen_at, expires_at
		FROM console_operator_sessions WHERE token_hash = $1 AND expires_at > $2 AND last_seen_at > $3`,
		tokenHash(token), now, now.Add(-s.idle)).Scan(&sess.Name, &hash, &sess.sealed, &sess.CSRF, &sess.CreatedAt, &lastSeen, &sess.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errNoSession
	}
	if err != nil {
		return nil, fmt.Errorf("look up operator session: %w", err)
	}
	copy(sess.hash[:], hash)
	if len(hash) != sha256.Size || operatortoken.MatchHash(tokens, sess.hash) != sess.Name {
		return nil, errNoSession
	}
	if err := s.touch(ctx, "console_operator_sessions", token, lastSeen, now); err != nil {
		return nil, err
	}
	return sess, nil
}

// operatorCredential opens the session's operator token ("" when none is kept).
func (s *sessions) operatorCredential(sess *OperatorSession) (string, error) {
	return s.open(sess.sealed, sess.token)
}

func (s *sessions) revokeOperator(ctx context.Context, token string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM console_operator_sessions WHERE token_hash = $1`, tokenHash(token)); err != nil {
		return fmt.Errorf("revoke operator session: %w", err)
	}
	return nil
}

func (s *sessions) pruneOperators(ctx context.Context) error {
	now := s.now()
	if _, err := s.pool.Exec(ctx, `DELETE FROM console_operator_sessions WHERE expires_at <= $1 OR last_seen_at <= $2`, now, now.Add(-s.idle)); err != nil {
		return fmt.Errorf("prune operator sessions: %w", err)
	}
	return nil
}

func (c *Console) operatorSession(r *http.Request) (*OperatorSession, error) {
	if !c.operatorsOn() {
		return nil, errNoSession
	}
	ck, err := r.Cookie(c.operatorCookieName(r))
	if err != nil {
		return nil, errNoSession
	}
	return c.sessions.lookupOperator(r.Context(), c.operators, ck.Value)
}

// operatorAuthed serves h with r's operator session (a tenant session is
// none); a GET without one goes to the operator sign-in page.
func (c *Console) operatorAuthed(h func(http.ResponseWriter, *http.Request, *OperatorSession)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !c.operatorsOn() {
			c.fail(w, r, nil, http.StatusNotFound, "The operator view is off here (OPERATOR_TOKEN_SHA256 is empty).")
			return
		}
		sess, err := c.operatorSession(r)
		if err != nil {
			if !errors.Is(err, errNoSession) {
				c.log.ErrorContext(r.Context(), "console operator session", "error", err)
				c.fail(w, r, nil, http.StatusServiceUnavailable, "The console cannot reach its database; try again.")
				return
			}
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/console/operator/signin", http.StatusSeeOther)
				return
			}
			c.fail(w, r, nil, http.StatusUnauthorized, "Sign in as an operator first.")
			return
		}
		if r.Method == http.MethodPost && !validOperatorCSRF(r, sess) {
			c.renderOperator(w, r, http.StatusForbidden, "error", page{Title: "Forbidden", Operator: sess,
				Error: "This form is stale or forged (CSRF token mismatch). Reload the page."})
			return
		}
		h(w, r, sess)
	}
}

func validOperatorCSRF(r *http.Request, sess *OperatorSession) bool {
	return validCSRF(r, &Session{CSRF: sess.CSRF})
}

func (c *Console) renderOperator(w http.ResponseWriter, r *http.Request, code int, name string, p page) {
	c.render(w, r, code, name, p)
}

func (c *Console) operatorSignInPage(w http.ResponseWriter, r *http.Request) {
	if !c.operatorsOn() {
		c.fail(w, r, nil, http.StatusNotFound, "The operator view is off here (OPERATOR_TOKEN_SHA256 is empty).")
		return
	}
	if _, err := c.operatorSession(r); err == nil {
		http.Redirect(w, r, "/console/operator/", http.StatusSeeOther)
		return
	}
	c.render(w, r, http.StatusOK, "operator_signin", page{Title: "Operator sign-in"})
}

// operatorSignIn signs in with an operator token; failures are throttled
// per client address like the API key sign-in's.
func (c *Console) operatorSignIn(w http.ResponseWriter, r *http.Request) {
	if !c.operatorsOn() {
		c.fail(w, r, nil, http.StatusNotFound, "The operator view is off here (OPERATOR_TOKEN_SHA256 is empty).")
		return
	}
	token := strings.TrimSpace(r.PostFormValue("operator_token"))
	p, err := c.operatorAuth.Authenticate(r.Context(), token)
	switch {
	case errors.Is(err, auth.ErrThrottled):
		c.render(w, r, http.StatusTooManyRequests, "operator_signin", page{Title: "Operator sign-in", Error: "Too many failed sign-ins; retry in a minute."})
		return
	case err != nil:
		c.log.WarnContext(r.Context(), "console operator sign-in refused", "client", clientAddr(r.Context()))
		c.render(w, r, http.StatusUnauthorized, "operator_signin", page{Title: "Operator sign-in", Error: "Not an operator token."})
		return
	}
	name := p.Subject
	sess, err := c.sessions.createOperator(r.Context(), name, token)
	if err != nil {
		c.log.ErrorContext(r.Context(), "console operator session", "error", err)
		c.fail(w, r, nil, http.StatusServiceUnavailable, "Sign-in is unavailable; try again.")
		return
	}
	c.log.InfoContext(r.Context(), "console operator sign-in", "operator", name)
	http.SetCookie(w, &http.Cookie{
		Name: c.operatorCookieName(r), Value: sess.token, Path: "/",
		Expires: sess.ExpiresAt, MaxAge: int(c.cfg.SessionMax / time.Second),
		HttpOnly: true, Secure: c.secureRequest(r), SameSite: http.SameSiteLaxMode,
	})
	http.Redirect(w, r, "/console/operator/", http.StatusSeeOther)
}

func (c *Console) operatorSignOut(w http.ResponseWriter, r *http.Request, sess *OperatorSession) {
	if err := c.sessions.revokeOperator(r.Context(), sess.token); err != nil {
		c.log.ErrorContext(r.Context(), "console operator sign-out", "error", err)
		c.fail(w, r, nil, http.StatusServiceUnavailable, "Signing out failed; try again.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: c.operatorCookieName(r), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: c.secureRequest(r), SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, "/console/operator/signin", http.StatusSeeOther)
}

// canControl reports whether the console can ask ingest's OperatorService
// to suspend and resume for sess.
func (c *Console) canControl(sess *OperatorSession) bool {
	return c.deps.Operator != nil && sess.sealed != nil
}

// accountAction suspends or resumes an account through ingest's
// OperatorService with the operator's own token: ingest checks it and
// audits the action with the operator's name.
func (c *Console) accountAction(w http.ResponseWriter, r *http.Request, sess *OperatorSession) {
	action := r.PathValue("action")
	account := strings.TrimSpace(r.PostFormValue("account"))
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if !c.canControl(sess) {
		c.renderOperator(w, r, http.StatusBadRequest, "error", page{Title: "Unavailable", Operator: sess,
			Error: "This console does not reach ingest's OperatorService (CONSOLE_OPERATOR_ADDR, MASTER_KEYS); use `ingest operator` instead."})
		return
	}
	tok, err := c.sessions.operatorCredential(sess)
	if err != nil {
		c.log.ErrorContext(r.Context(), "console operator credential", "error", err)
		c.fail(w, r, nil, http.StatusInternalServerError, "Something failed on our side; sign in again.")
		return
	}
	ctx := WithCredential(r.Context(), tok)
	switch action {
	case "suspend":
		err = c.deps.Operator.SuspendAccount(ctx, account, reason)
	case "resume":
		err = c.deps.Operator.ResumeAccount(ctx, account, reason)
	default:
		c.fail(w, r, nil, http.StatusNotFound, "No such action.")
		return
	}
	if err != nil {
		c.log.WarnContext(r.Context(), "console operator action", "action", action, "account", account, "operator", sess.Name, "error", err)
		c.renderOperator(w, r, http.StatusBadRequest, "error", page{Title: "Refused", Operator: sess, Error: "Ingest refused the " + action + ": " + status.Convert(err).Message()})
		return
	}
	c.log.InfoContext(r.Context(), "console operator action", "action", action, "account", account, "operator", sess.Name)
	http.Redirect(w, r, "/console/operator/?done="+url.QueryEscape(action+" "+account), http.StatusSeeOther)
}

// operatorTokens authenticates operator tokens as an auth.Authenticator (so
// that auth.Throttle bounds the guesses); the principal's Subject is the
// operator's name, and it has no account and no scope.
type operatorTokens []operatortoken.Token

func (t operatorTokens) Authenticate(_ context.Context, token string) (auth.Principal, error) {
	name := operatortoken.Match(t, token)
	if name == "" {
		return auth.Principal{}, auth.ErrUnauthenticated
	}
	return auth.Principal{Subject: name}, nil
}
