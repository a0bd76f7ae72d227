package provider

import (
	"fmt"
	"net/url"
)

// FieldError is one invalid setting of a provider configuration, as a kind's
// Normalize reports it.
type FieldError struct {
	// Field is the API field name (emailsender.v1 SmtpSettings, SesSettings,
	// GmailSettings), e.g. "host", "tls_mode", "password"; never the value.
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Invalid is a FieldError for field. The reason must not quote a secret.
func Invalid(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// CheckPlain refuses what should not reach a protocol line: control
// characters, and more than 1024 bytes.
func CheckPlain(s string) error {
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

// CheckHTTPURL accepts "" (the default) or an http(s) URL with a host.
func CheckHTTPURL(s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}
