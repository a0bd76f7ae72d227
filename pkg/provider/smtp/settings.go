package smtp

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/namirasoft/email-sender/pkg/provider"
)

// Kind is the provider kind configurations name this provider by.
const Kind = "smtp"

// TLS modes of Settings.TLS.
const (
	TLSNone                  = "none"
	TLSStartTLS              = "starttls"
	TLSStartTLSOpportunistic = "starttls_opportunistic"
	TLSImplicit              = "implicit"
)

// Defaults of Settings.
const (
	// DefaultPoolSize is the open connections per configuration when unset.
	DefaultPoolSize = 4
	// DefaultTimeoutSeconds bounds dialling and each SMTP command when
	// TimeoutSeconds is unset.
	DefaultTimeoutSeconds = 30
)

// ErrSettings is wrapped by every error about a configuration's settings.
var ErrSettings = errors.New("invalid smtp settings")

// Settings are the non-secret settings of an smtp provider configuration: the
// settings JSON stored by ingest (the API's SmtpSettings, the admin CLI's
// bootstrap) and read by the sender (provider.Config.Settings).
type Settings struct {
	Host string `json:"host"`
	// Port defaults to 465 with implicit TLS, 25 without TLS, else 587.
	Port int `json:"port"`
	// TLS is one of starttls (default: STARTTLS required),
	// starttls_opportunistic, implicit (TLS from the first byte) or none. The
	// API calls it tls_mode.
	TLS      string `json:"tls"`
	Username string `json:"username,omitempty"`
	// PoolSize bounds the open connections per configuration; default 4.
	PoolSize int `json:"pool_size"`
	// HELO is the name sent in EHLO: a fully qualified domain name or an
	// address literal. Default: the worker's (Options.HELO), which is the
	// host's FQDN or else the connection's address literal; never
	// "localhost".
	HELO string `json:"helo,omitempty"`
	// TimeoutSeconds bounds dialling and each SMTP command; 0 (not stored)
	// means DefaultTimeoutSeconds, which ParseSettings fills in. The API does
	// not set it.
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`

	// The mailbox the configuration's SMTP server drops bounces and
	// complaint reports into, which the inbound service polls over IMAP;
	// off when BounceIMAPHost is empty. Use it when the server does not
	// keep the envelope sender (the signed bounce address) or returns
	// reports to the From address instead.
	BounceIMAPHost string `json:"bounce_imap_host,omitempty"`
	// BounceIMAPPort defaults to 993 with implicit TLS, else 143.
	BounceIMAPPort int `json:"bounce_imap_port,omitempty"`
	// BounceIMAPTLS is implicit (default: TLS from the first byte),
	// starttls (required) or none.
	BounceIMAPTLS      string `json:"bounce_imap_tls,omitempty"`
	BounceIMAPUsername string `json:"bounce_imap_username,omitempty"`
	// BounceIMAPMailbox defaults to INBOX.
	BounceIMAPMailbox string `json:"bounce_imap_mailbox,omitempty"`
}

// BounceIMAP reports whether the configuration has a bounce mailbox to poll.
func (s Settings) BounceIMAP() bool { return s.BounceIMAPHost != "" }

// Secret is the secret settings of an smtp configuration (sealed by ingest,
// provider.Config.Secret).
type Secret struct {
	Password string `json:"password,omitempty"`
	// BounceIMAPPassword is the bounce mailbox's (Settings.BounceIMAPHost).
	BounceIMAPPassword string `json:"bounce_imap_password,omitempty"`
}

// Fields names the secret fields that are set.
func (s Secret) Fields() []string {
	var out []string
	if s.Password != "" {
		out = append(out, "password")
	}
	if s.BounceIMAPPassword != "" {
		out = append(out, "bounce_imap_password")
	}
	return out
}

// Normalize applies the stored defaults (TLS, port by TLS mode, pool size) and
// validates s with its secret. Errors are *provider.FieldError naming the API
// field ("tls_mode" for TLS) and never quote the secret.
func (s *Settings) Normalize(sec Secret) error {
	s.Host = strings.TrimSpace(s.Host)
	if s.Host == "" {
		return provider.Invalid("host", "is required")
	}
	if err := hostname(s.Host); err != nil {
		return provider.Invalid("host", "%s", err)
	}
	switch s.TLS {
	case "":
		s.TLS = TLSStartTLS
	case TLSStartTLS, TLSStartTLSOpportunistic, TLSImplicit, TLSNone:
	default:
		return provider.Invalid("tls_mode", "%q is not one of starttls, starttls_opportunistic, implicit, none", s.TLS)
	}
	if s.Port == 0 {
		switch s.TLS {
		case TLSImplicit:
			s.Port = 465
		case TLSNone:
			s.Port = 25
		default:
			s.Port = 587
		}
	}
	if s.Port < 1 || s.Port > 65535 {
		return provider.Invalid("port", "%d is out of range 1..65535", s.Port)
	}
	if s.PoolSize == 0 {
		s.PoolSize = DefaultPoolSize
	}
	if s.PoolSize < 1 || s.PoolSize > 256 {
		return provider.Invalid("pool_size", "%d is out of range 1..256", s.PoolSize)
	}
	if err := provider.CheckPlain(s.Username); err != nil {
		return provider.Invalid("username", "%s", err)
	}
	if s.HELO != "" {
		if err := CheckHELO(s.HELO); err != nil {
			return provider.Invalid("helo", "%s", err)
		}
	}
	if s.TimeoutSeconds < 0 {
		return provider.Invalid("timeout_seconds", "must be positive")
	}
	if s.Username != "" && sec.Password == "" {
		return provider.Invalid("password", "is required with a username")
	}
	if s.Username == "" && sec.Password != "" {
		return provider.Invalid("username", "is required with a password")
	}
	return s.normalizeBounceIMAP(sec)
}

// IMAP TLS modes of Settings.BounceIMAPTLS.
const (
	IMAPTLSImplicit = "implicit"
	IMAPTLSStartTLS = "starttls"
	IMAPTLSNone     = "none"
)

func (s *Settings) normalizeBounceIMAP(sec Secret) error {
	s.BounceIMAPHost = strings.TrimSpace(s.BounceIMAPHost)
	if s.BounceIMAPHost == "" {
		if s.BounceIMAPPort != 0 || s.BounceIMAPTLS != "" || s.BounceIMAPUsername != "" || s.BounceIMAPMailbox != "" || sec.BounceIMAPPassword != "" {
			return provider.Invalid("bounce_imap_host", "is required with the other bounce_imap settings")
		}
		return nil
	}
	if err := hostname(s.BounceIMAPHost); err != nil {
		return provider.Invalid("bounce_imap_host", "%s", err)
	}
	switch s.BounceIMAPTLS {
	case "":
		s.BounceIMAPTLS = IMAPTLSImplicit
	case IMAPTLSImplicit, IMAPTLSStartTLS, IMAPTLSNone:
	default:
		return provider.Invalid("bounce_imap_tls", "%q is not one of implicit, starttls, none", s.BounceIMAPTLS)
	}
	if s.BounceIMAPPort == 0 {
		s.BounceIMAPPort = 143
		if s.BounceIMAPTLS == IMAPTLSImplicit {
			s.BounceIMAPPort = 993
		}
	}
	if s.BounceIMAPPort < 1 || s.BounceIMAPPort > 65535 {
		return provider.Invalid("bounce_imap_port", "%d is out of range 1..65535", s.BounceIMAPPort)
	}
	if s.BounceIMAPUsername == "" {
		return provider.Invalid("bounce_imap_username", "is required with bounce_imap_host")
	}
	if err := provider.CheckPlain(s.BounceIMAPUsername); err != nil {
		return provider.Invalid("bounce_imap_username", "%s", err)
	}
	if sec.BounceIMAPPassword == "" {
		return provider.Invalid("bounce_imap_password", "is required with bounce_imap_host")
	}
	if err := provider.CheckPlain(sec.BounceIMAPPassword); err != nil {
		return provider.Invalid("bounce_imap_password", "contains a control character or is longer than 1024 bytes")
	}
	if s.BounceIMAPMailbox == "" {
		s.BounceIMAPMailbox = "INBOX"
	}
	if len(s.BounceIMAPMailbox) > 255 {
		return provider.Invalid("bounce_imap_mailbox", "is longer than 255 bytes")
	}
	if err := provider.CheckPlain(s.BounceIMAPMailbox); err != nil {
		return provider.Invalid("bounce_imap_mailbox", "%s", err)
	}
	return nil
}

// Timeout is TimeoutSeconds, or its default when unset.
func (s Settings) Timeout() time.Duration {
	if s.TimeoutSeconds == 0 {
		return DefaultTimeoutSeconds * time.Second
	}
	return time.Duration(s.TimeoutSeconds) * time.Second
}

// CheckHELO accepts what EHLO may carry (RFC 5321 §4.1.1.1): a domain name
// (letters, digits, hyphens, dots) or an address literal ("[192.0.2.1]",
// "[IPv6:2001:db8::1]"). Normalize and the sender's own HELO both check with
// it.
func CheckHELO(h string) error {
	if len(h) > 255 {
		return fmt.Errorf("is longer than 255 bytes")
	}
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		if net.ParseIP(strings.TrimPrefix(h[1:len(h)-1], "IPv6:")) == nil {
			return fmt.Errorf("%q is not an address literal", h)
		}
		return nil
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%q is neither a domain name nor an address literal", h)
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%q is neither a domain name nor an address literal", h)
			}
		}
	}
	return nil
}

func hostname(h string) error {
	if len(h) > 253 {
		return fmt.Errorf("is longer than 253 bytes")
	}
	for _, r := range h {
		ok := r == '.' || r == '-' || r == '_' || r == ':' || r == '[' || r == ']' ||
			(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
		if !ok {
			return fmt.Errorf("%q is not a host name or IP address", h)
		}
	}
	return nil
}

// config is a parsed provider.Config.
type config struct {
	Settings
	password string
	timeout  time.Duration
}

// ParseSettings decodes and validates cfg's settings and applies every
// default, TimeoutSeconds's included.
func ParseSettings(cfg provider.Config) (Settings, error) {
	c, err := parseConfig(cfg)
	return c.Settings, err
}

func parseConfig(cfg provider.Config) (config, error) {
	var c config
	var sec Secret
	if err := provider.DecodeConfig(cfg, ErrSettings, &c.Settings, &sec); err != nil {
		return c, err
	}
	if err := c.Normalize(sec); err != nil {
		// FieldError texts name the field, never a secret.
		return c, fmt.Errorf("%w: %v", ErrSettings, err)
	}
	c.password = sec.Password
	c.timeout = c.Timeout()
	c.TimeoutSeconds = int(c.timeout / time.Second)
	return c, nil
}
