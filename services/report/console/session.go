package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/secretbox"
)

// How a session was signed in.
const (
	MethodAPIKey = "api_key"
	MethodOIDC   = "oidc"
)

// Session is a signed-in browser: the account, the scopes exactly as the API
// gives the credential it was signed in with, and how.
type Session struct {
	AccountID string
	Method    string
	// KeyID is the API key's id (MethodAPIKey); Subject the Namirasoft
	// Account's sub (MethodOIDC).
	KeyID, Subject string
	Scopes         []string
	// CSRF is the token every POST of the session must carry.
	CSRF      string
	CreatedAt time.Time
	ExpiresAt time.Time

	token string
	// sealed is the credential, sealed (nil: none kept).
	sealed []byte
}

// Principal is the session's caller as the API's handlers see it.
func (s *Session) Principal() auth.Principal {
	return auth.Principal{AccountID: s.AccountID, KeyID: s.KeyID, Subject: s.Subject, Scopes: s.Scopes}
}

// errNoSession: no cookie, an unknown, revoked, idle or expired session.
var errNoSession = errors.New("no valid console session")

// sessions stores sessions in console_sessions.
type sessions struct {
	pool *pgxpool.Pool
	// keyring seals the sessions' credentials; nil: none are kept.
	keyring *secretbox.Keyring
	idle    time.Duration
	max     time.Duration
	now     func() time.Time
}

// touchEvery bounds the writes of last_seen_at: at most one per session per
// minute (idle expiry is that much coarser).
const touchEvery = time.Minute

// newToken is a random 256-bit token, URL-safe base64.
func newToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func tokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// create stores a new session for p and returns it with its token; the
// credential it was signed in with is kept sealed when there is a keyring.
func (s *sessions) create(ctx context.Context, p auth.Principal, method, credential string) (*Session, error) {
	token, err := newToken()
	if err != nil {
		return nil, err
	}
	csrf, err := newToken()
	if err != nil {
		return nil, err
	}
	now := s.now()
	sess := &Session{AccountID: p.AccountID, Method: method, KeyID: p.KeyID, Subject: p.Subject, Scopes: p.Scopes,
		CSRF: csrf, CreatedAt: now, ExpiresAt: now.Add(s.max), token: token}
	if sess.Scopes == nil {
		sess.Scopes = []string{}
	}
	if s.keyring != nil && credential != "" {
		if sess.sealed, err = s.keyring.Seal([]byte(credential), tokenHash(token)); err != nil {
			return nil, fmt.Errorf("seal console credential: %w", err)
		}
	}
	var keyID *string
	if method == MethodAPIKey {
		keyID = &p.KeyID
	}
	// The account's ended sessions go with the sign-in.
	batch := &pgx.Batch{}
	batch.Queue(`DELETE FROM console_sessions WHERE account_id = $1 AND (expires_at <= $2 OR last_seen_at <= $3)`,
		p.AccountID, now, now.Add(-s.idle))
	batch.Queue(`
		INSERT INTO console_sessions (token_hash, account_id, method, key_id, subject, scopes, credential, csrf_token, created_at, last_seen_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)`,
		tokenHash(token), p.AccountID, method, keyID, p.Subject, sess.Scopes, sess.sealed, csrf, now, sess.ExpiresAt)
	if err := s.pool.SendBatch(ctx, batch).Close(); err != nil {
		return nil, fmt.Errorf("store console session: %w", err)
	}
	return sess, nil
}

// lookup returns the live session of token. A session signed in with an API
// key takes the key's current scopes and ends with the key (revoked or
// expired); every session ends when its account is terminated or deleted
// (pkg/accountstate).
func (s *sessions) lookup(ctx context.Context, token string) (*Session, error) {
	if token == "" || len(token) > 64 {
		return nil, errNoSession
	}
	now := s.now()
	sess := &Session{token: token}
	var (
		keyID    *string
		lastSeen time.Time
	)
	err := s.pool.QueryRow(ctx, `
		SELECT s.account_id::text, s.method, s.key_id::text, s.subject, COALESCE(k.scopes, s.scopes), s.credential, s.csrf_token,
			s.created_at, s.last_seen_at, s.expires_at
		FROM console_sessions s
		LEFT JOIN api_keys k ON k.id = s.key_id
		WHERE s.token_hash = $1 AND s.expires_at > $2 AND s.last_seen_at > $3
			AND (s.key_id IS NULL OR (k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $2)))
			AND NOT EXISTS (SELECT 1 FROM account_states a WHERE a.account = s.account_id AND a.state IN ('terminated', 'deleted'))`,
		tokenHash(token), now, now.Add(-s.idle)).Scan(&sess.AccountID, &sess.Method, &keyID, &sess.Subject, &sess.Scopes,
		&sess.sealed, &sess.CSRF, &sess.CreatedAt, &lastSeen, &sess.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errNoSession
	}
	if err != nil {
		return nil, fmt.Errorf("look up console session: %w", err)
	}
	if keyID != nil {
		sess.KeyID = *keyID
	}
	if err := s.touch(ctx, "console_sessions", token, lastSeen, now); err != nil {
		return nil, err
	}
	return sess, nil
}

// touch records a session of table (console_sessions or
// console_operator_sessions) as used now, at most once per touchEvery.
func (s *sessions) touch(ctx context.Context, table, token string, lastSeen, now time.Time) error {
	if now.Sub(lastSeen) < touchEvery {
		return nil
	}
	if _, err := s.pool.Exec(ctx, `UPDATE `+table+` SET last_seen_at = $2 WHERE token_hash = $1`, tokenHash(token), now); err != nil {
		return fmt.Errorf("touch %s: %w", table, err)
	}
	return nil
}

// credential opens the session's credential ("" when none is kept).
func (s *sessions) credential(sess *Session) (string, error) {
	return s.open(sess.sealed, sess.token)
}

// open opens a credential sealed to a session's token ("" when none is
// kept).
func (s *sessions) open(sealed []byte, token string) (string, error) {
	if s.keyring == nil || sealed == nil {
		return "", nil
	}
	b, err := s.keyring.Open(sealed, tokenHash(token))
	if err != nil {
		return "", fmt.Errorf("open the session's credential: %w", err)
	}
	return string(b), nil
}

// revokeAccount deletes every session of account (its deletion).
func (s *sessions) revokeAccount(ctx context.Context, account string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM console_sessions WHERE account_id = $1`, account); err != nil {
		return fmt.Errorf("revoke console sessions of %s: %w", account, err)
	}
	return nil
}

// revoke deletes the session of token.
func (s *sessions) revoke(ctx context.Context, token string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM console_sessions WHERE token_hash = $1`, tokenHash(token)); err != nil {
		return fmt.Errorf("revoke console session: %w", err)
	}
	return nil
}

// Cookies. With Secure the session cookie is a __Host- cookie (Secure, Path
// /, no Domain: no subdomain can set or shadow it).
const (
	cookieSecure   = "__Host-es_console"
	cookieInsecure = "es_console"
	loginCookie    = "es_console_login"
)

// secureRequest reports whether cookies for r must be Secure: always, except
// over plain HTTP to a loopback host with CONSOLE_DEV_LOOPBACK_HTTP.
func (c *Console) secureRequest(r *http.Request) bool {
	return !(c.cfg.DevLoopbackHTTP && r.TLS == nil && loopbackHost(r.Host))
}

func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *Console) sessionCookieName(r *http.Request) string {
	if c.secureRequest(r) {
		return cookieSecure
	}
	return cookieInsecure
}

func (c *Console) setSessionCookie(w http.ResponseWriter, r *http.Request, sess *Session) {
	http.SetCookie(w, &http.Cookie{
		Name: c.sessionCookieName(r), Value: sess.token, Path: "/",
		Expires: sess.ExpiresAt, MaxAge: int(c.cfg.SessionMax / time.Second),
		HttpOnly: true, Secure: c.secureRequest(r), SameSite: http.SameSiteLaxMode,
	})
}

func (c *Console) clearSessionCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: c.sessionCookieName(r), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: c.secureRequest(r), SameSite: http.SameSiteLaxMode,
	})
}

// session returns r's live session.
func (c *Console) session(r *http.Request) (*Session, error) {
	ck, err := r.Cookie(c.sessionCookieName(r))
	if err != nil {
		return nil, errNoSession
	}
	return c.sessions.lookup(r.Context(), ck.Value)
}

// sameOrigin checks that a state-changing request comes from the console's
// own pages: its Origin is the console's, and Sec-Fetch-Site (when the
// browser sends it) is same-origin. A request without Origin is refused
// (browsers send it with every POST).
func (c *Console) sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" || origin == "null" {
		return false
	}
	return origin == c.expectedOrigin(r)
}

func (c *Console) expectedOrigin(r *http.Request) string {
	if c.cfg.Origin != "" {
		return strings.TrimSuffix(c.cfg.Origin, "/")
	}
	if c.secureRequest(r) {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

// validCSRF checks the request's CSRF token (form field csrf or header
// X-CSRF-Token) against the session's.
func validCSRF(r *http.Request, sess *Session) bool {
	got := r.Header.Get("X-CSRF-Token")
	if got == "" {
		got = r.PostFormValue("csrf")
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(sess.CSRF)) == 1
}

// pruneEvery is how often Run deletes ended sessions and sign-ins.
const pruneEvery = 10 * time.Minute

// prune deletes the sessions that ended (idle or expired) and the OpenID
// Connect sign-ins that were never finished.
func (s *sessions) prune(ctx context.Context) (int64, error) {
	now := s.now()
	tag, err := s.pool.Exec(ctx, `DELETE FROM console_sessions WHERE expires_at <= $1 OR last_seen_at <= $2`, now, now.Add(-s.idle))
	if err != nil {
		return 0, fmt.Errorf("prune console sessions: %w", err)
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM console_oidc_logins WHERE expires_at <= $1`, now); err != nil {
		return 0, fmt.Errorf("prune console sign-ins: %w", err)
	}
	return tag.RowsAffected(), nil
}
