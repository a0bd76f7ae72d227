package console

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/namirasoft/email-sender/pkg/envconfig"
)

// Config configures the console (part of the report's configuration).
type Config struct {
	// Off disables the console.
	Off bool `env:"CONSOLE_OFF" help:"true: do not serve the console under /console/ on the report's HTTP listener"`
	// SessionIdle ends a session nobody used for this long.
	SessionIdle time.Duration `env:"CONSOLE_SESSION_IDLE" default:"30m" help:"a console session unused this long ends (idle expiry)"`
	// SessionMax ends every session this long after its sign-in.
	SessionMax time.Duration `env:"CONSOLE_SESSION_MAX" default:"12h" help:"a console session ends this long after sign-in, used or not (absolute expiry)"`
	// Origin is the console's public origin; POSTs must come from it.
	Origin string `env:"CONSOLE_ORIGIN" help:"the console's public origin (https://host[:port]) every POST's Origin must equal; empty: https:// (or, with CONSOLE_DEV_LOOPBACK_HTTP, http://) plus the request's Host"`
	// DevLoopbackHTTP lets the console be used over plain HTTP on loopback.
	DevLoopbackHTTP bool `env:"CONSOLE_DEV_LOOPBACK_HTTP" help:"development only: over plain HTTP to localhost/127.0.0.1/::1, set the session cookie without Secure (browsers would not send a Secure one back)"`
	// IngestAddr is ingest's gRPC address: the console calls ingest's API
	// for the actions that belong there, with the session's credential.
	IngestAddr string `env:"CONSOLE_INGEST_ADDR" help:"ingest's gRPC address (host:port) the console calls for API keys and cancelling scheduled messages, with the signed-in credential (kept sealed by MASTER_KEYS); empty, or without MASTER_KEYS: those pages are off"`
	// IngestPlaintext connects to ingest without TLS (make run).
	IngestPlaintext bool `env:"CONSOLE_INGEST_PLAINTEXT" help:"call CONSOLE_INGEST_ADDR in plaintext (development on one machine only); otherwise TLS with the system's roots"`
	// OIDC: sign-in with Namirasoft Account. The issuer, audience and
	// account claim are the JWT path's (JWT_ISSUER, JWT_AUDIENCE,
	// JWT_ACCOUNT_CLAIM, JWT_SCOPE_CLAIM).
	OIDCClientID     string `env:"CONSOLE_OIDC_CLIENT_ID" help:"OAuth client id of the console at the Namirasoft Account issuer (JWT_ISSUER); empty: sign-in with Namirasoft Account is off. ID tokens must name JWT_AUDIENCE in aud too"`
	OIDCClientSecret string `env:"CONSOLE_OIDC_CLIENT_SECRET" help:"its client secret (empty: a public client, PKCE only)"`
	OIDCRedirectURL  string `env:"CONSOLE_OIDC_REDIRECT_URL" help:"the console's callback as registered at the issuer: https://<console host>/console/auth/callback"`
	// OperatorTokens are the operators' tokens (as ingest's
	// OperatorService takes them): the operator view's sign-in.
	OperatorTokens string `env:"OPERATOR_TOKEN_SHA256" help:"operator tokens (name:sha256hex, comma separated; the same as ingest's): signing in at /console/operator/signin with one opens the operator view; empty: the operator view is off"`
	// OperatorAddr is ingest's OperatorService, for suspend and resume.
	OperatorAddr string `env:"CONSOLE_OPERATOR_ADDR" help:"ingest's OperatorService address (INGEST_OPERATOR_ADDR) the operator view suspends and resumes accounts through, with the signed-in operator's token (kept sealed by MASTER_KEYS; plaintext with CONSOLE_INGEST_PLAINTEXT); empty: those buttons are off"`
	// TraceURLTemplate links a message to the tracing UI.
	TraceURLTemplate string `env:"CONSOLE_TRACE_URL_TEMPLATE" help:"the tracing UI's search for a message's traces, {message_id} replaced (spans carry the attribute message.id), e.g. http://jaeger:16686/search?service=worker&tags=%7B%22message.id%22%3A%22{message_id}%22%7D; empty: no trace links"`
}

// WithDefaults fills the unset durations.
func (c Config) WithDefaults() (Config, error) {
	err := envconfig.FillDefaults(&c, "SessionIdle", "SessionMax")
	return c, err
}

// Validate checks the configuration; each error names its variable.
func (c Config) Validate() error {
	if c.Off {
		return nil
	}
	var errs []error
	if c.SessionIdle <= 0 || c.SessionMax <= 0 || c.SessionIdle > c.SessionMax {
		errs = append(errs, fmt.Errorf("CONSOLE_SESSION_IDLE %s and CONSOLE_SESSION_MAX %s: want 0 < idle <= max", c.SessionIdle, c.SessionMax))
	}
	if c.Origin != "" {
		u, err := url.Parse(c.Origin)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			errs = append(errs, fmt.Errorf("CONSOLE_ORIGIN %q: want scheme://host[:port]", c.Origin))
		}
	}
	if c.OIDCClientID != "" {
		u, err := url.Parse(c.OIDCRedirectURL)
		if err != nil || !u.IsAbs() {
			errs = append(errs, errors.New("CONSOLE_OIDC_REDIRECT_URL: an absolute URL is required with CONSOLE_OIDC_CLIENT_ID"))
		}
	}
	return errors.Join(errs...)
}
