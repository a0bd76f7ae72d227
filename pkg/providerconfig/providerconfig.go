// Package providerconfig defines how a provider configuration is stored: the
// JSON of its non-secret settings (provider_configs.settings) and of its secret
// settings (sealed by pkg/secretbox into provider_configs.secret, with the
// configuration id as additional data), per provider kind, and their
// validation. Ingest writes these shapes (AccountService.PutProvider, admin
// bootstrap); the workers read them.
//
//	kind     settings JSON                                              secret JSON
//	smtp     {"host","port","tls","username","pool_size","helo"}        {"password"}
//	ses      {"region","access_key_id","configuration_set","endpoint"}  {"secret_access_key"}
//	gmail    {"client_id","sender_user","token_url","api_endpoint"}     {"client_secret","refresh_token"}
//	sandbox  {}                                                         none
//
// Field names in validation errors are the API's (emailsender.v1 SmtpSettings,
// SesSettings, GmailSettings), e.g. "tls_mode" for the JSON "tls".
package providerconfig

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
)

// Provider kinds.
const (
	KindSMTP    = "smtp"
	KindSES     = "ses"
	KindGmail   = "gmail"
	KindSandbox = "sandbox"
)

// SMTP TLS modes.
const (
	TLSStartTLS              = "starttls"
	TLSStartTLSOpportunistic = "starttls_opportunistic"
	TLSImplicit              = "implicit"
	TLSNone                  = "none"
)

// DefaultPoolSize is the SMTP connections per worker when unset.
const DefaultPoolSize = 4

// FieldError is one invalid setting.
type FieldError struct {
	// Field is the API field name, e.g. "host", "tls_mode", "password".
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

func invalid(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// SMTP is an smtp configuration's settings JSON.
type SMTP struct {
	Host string `json:"host"`
	// Port defaults to 465 with implicit TLS, 25 without TLS, else 587.
	Port int `json:"port"`
	// TLS is starttls (default, STARTTLS required), starttls_opportunistic,
	// implicit or none.
	TLS      string `json:"tls"`
	Username string `json:"username,omitempty"`
	PoolSize int    `json:"pool_size"`
	HELO     string `json:"helo,omitempty"`
}

// SMTPSecret is an smtp configuration's secret JSON.
type SMTPSecret struct {
	Password string `json:"password,omitempty"`
}

// SES is an ses configuration's settings JSON.
type SES struct {
	Region           string `json:"region"`
	AccessKeyID      string `json:"access_key_id"`
	ConfigurationSet string `json:"configuration_set,omitempty"`
	// Endpoint overrides the regional endpoint (e.g. a local emulator).
	Endpoint string `json:"endpoint,omitempty"`
}

// SESSecret is an ses configuration's secret JSON.
type SESSecret struct {
	SecretAccessKey string `json:"secret_access_key,omitempty"`
}

// Gmail is a gmail configuration's settings JSON.
type Gmail struct {
	ClientID string `json:"client_id"`
	// SenderUser is the mailbox that sends: "me" (default) or an address.
	SenderUser  string `json:"sender_user"`
	TokenURL    string `json:"token_url,omitempty"`
	APIEndpoint string `json:"api_endpoint,omitempty"`
}

// GmailSecret is a gmail configuration's secret JSON.
type GmailSecret struct {
	ClientSecret string `json:"client_secret,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// Normalize applies the defaults and validates s with its secret.
func (s *SMTP) Normalize(sec SMTPSecret) error {
	s.Host = strings.TrimSpace(s.Host)
	if s.Host == "" {
		return invalid("host", "is required")
	}
	if err := hostname(s.Host); err != nil {
		return invalid("host", "%s", err)
	}
	switch s.TLS {
	case "":
		s.TLS = TLSStartTLS
	case TLSStartTLS, TLSStartTLSOpportunistic, TLSImplicit, TLSNone:
	default:
		return invalid("tls_mode", "%q is not one of starttls, starttls_opportunistic, implicit, none", s.TLS)
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
		return invalid("port", "%d is out of range 1..65535", s.Port)
	}
	if s.PoolSize == 0 {
		s.PoolSize = DefaultPoolSize
	}
	if s.PoolSize < 1 || s.PoolSize > 256 {
		return invalid("pool_size", "%d is out of range 1..256", s.PoolSize)
	}
	if err := plain(s.Username); err != nil {
		return invalid("username", "%s", err)
	}
	if s.HELO != "" {
		if err := CheckHELO(s.HELO); err != nil {
			return invalid("helo", "%s", err)
		}
	}
	if s.Username != "" && sec.Password == "" {
		return invalid("password", "is required with a username")
	}
	if s.Username == "" && sec.Password != "" {
		return invalid("username", "is required with a password")
	}
	return nil
}

var regionRE = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)

// Normalize validates s with its secret.
func (s *SES) Normalize(sec SESSecret) error {
	s.Region = strings.TrimSpace(s.Region)
	if s.Region == "" {
		return invalid("region", "is required")
	}
	if !regionRE.MatchString(s.Region) {
		return invalid("region", "%q is not an AWS region such as eu-west-1", s.Region)
	}
	if s.AccessKeyID == "" {
		return invalid("access_key_id", "is required")
	}
	if err := plain(s.AccessKeyID); err != nil {
		return invalid("access_key_id", "%s", err)
	}
	if sec.SecretAccessKey == "" {
		return invalid("secret_access_key", "is required")
	}
	if err := plain(s.ConfigurationSet); err != nil {
		return invalid("configuration_set", "%s", err)
	}
	if err := httpURL(s.Endpoint); err != nil {
		return invalid("endpoint", "%s", err)
	}
	return nil
}

// Normalize applies the defaults and validates g with its secret.
func (g *Gmail) Normalize(sec GmailSecret) error {
	if g.ClientID == "" {
		return invalid("client_id", "is required")
	}
	if err := plain(g.ClientID); err != nil {
		return invalid("client_id", "%s", err)
	}
	if sec.ClientSecret == "" {
		return invalid("client_secret", "is required")
	}
	if sec.RefreshToken == "" {
		return invalid("refresh_token", "is required")
	}
	if g.SenderUser == "" {
		g.SenderUser = "me"
	}
	if err := plain(g.SenderUser); err != nil {
		return invalid("sender_user", "%s", err)
	}
	if err := httpURL(g.TokenURL); err != nil {
		return invalid("token_url", "%s", err)
	}
	if err := httpURL(g.APIEndpoint); err != nil {
		return invalid("api_endpoint", "%s", err)
	}
	return nil
}

// plain refuses control characters (they could end up in protocol lines).
func plain(s string) error {
	if len(s) > 1024 {
		return fmt.Errorf("is longer than 1024 bytes")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("contains a control character")
		}
	}
	return nil
}

// CheckHELO accepts what EHLO may carry (RFC 5321 §4.1.1.1): a domain name
// (letters, digits, hyphens, dots) or an address literal ("[192.0.2.1]",
// "[IPv6:2001:db8::1]"). The API and the SMTP sender both check with it.
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

func httpURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}
