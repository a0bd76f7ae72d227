// Package address parses and normalises e-mail addresses: the RFC 5322
// addr-spec a client gives (dot-atom or quoted local part, internationalised
// domain) becomes the canonical ASCII form that goes on the SMTP envelope and in
// headers, and display names are checked for what could break a header line.
//
// The canonical form keeps the local part's case (it is case-sensitive in
// principle), drops quotes that are not needed ("jane"@x → jane@x), and writes
// the domain in lower-case ASCII with internationalised labels in punycode.
// Parse of a canonical address returns it unchanged.
//
// Local parts may be internationalised (RFC 6531/6532: UTF-8 beyond ASCII in
// a dot-atom). Such an address can only travel over SMTP with SMTPUTF8, which
// not every server offers: Address.ASCII tells, and the providers refuse what
// their transport cannot carry, naming the address.
package address

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Limits from RFC 5321 §4.5.3.1.
const (
	MaxLocalPart = 64
	MaxDomain    = 253
	MaxAddress   = 254
	maxLabel     = 63
)

// ErrInvalid is wrapped by every error about the syntax of an address or name.
var ErrInvalid = errors.New("invalid address")

// Address is a parsed addr-spec.
type Address struct {
	// Local is the local part as written in the canonical form (quoted when it
	// must be).
	Local string
	// Domain is the lower-case ASCII (punycode) domain.
	Domain string
}

// String is the canonical addr-spec.
func (a Address) String() string { return a.Local + "@" + a.Domain }

// ASCII reports whether the address is all ASCII, that is, whether it can be
// sent without SMTPUTF8 (the domain always is: it is kept in punycode).
func (a Address) ASCII() bool { return isASCII(a.Local) }

// IsASCII reports whether s has no byte beyond ASCII.
func IsASCII(s string) bool { return isASCII(s) }

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// Lower is the canonical addr-spec lower-cased: the key recipients are stored
// and matched (suppressions, reports) by.
func (a Address) Lower() string { return strings.ToLower(a.String()) }

// profile converts internationalised domains the way a resolver would (UTS 46
// non-transitional, STD3 rules, bidi and joiner checks).
var profile = idna.Lookup

// Parse parses an addr-spec ("local@domain"; no display name, no angle
// brackets). Leading and trailing blanks are ignored.
func Parse(s string) (Address, error) {
	s = strings.Trim(s, " \t")
	if s == "" {
		return Address{}, fmt.Errorf("%w: empty", ErrInvalid)
	}
	if !utf8.ValidString(s) {
		return Address{}, fmt.Errorf("%w: not valid UTF-8", ErrInvalid)
	}
	if strings.ContainsAny(s, "\r\n\x00") {
		return Address{}, fmt.Errorf("%w: contains CR, LF or NUL", ErrInvalid)
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return Address{}, fmt.Errorf("%w: missing @", ErrInvalid)
	}
	local, err := parseLocal(s[:at])
	if err != nil {
		return Address{}, err
	}
	domain, err := parseDomain(s[at+1:])
	if err != nil {
		return Address{}, err
	}
	a := Address{Local: local, Domain: domain}
	if n := len(a.String()); n > MaxAddress {
		return Address{}, fmt.Errorf("%w: %d bytes, at most %d", ErrInvalid, n, MaxAddress)
	}
	return a, nil
}

// parseLocal returns the canonical local part.
func parseLocal(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("%w: empty local part", ErrInvalid)
	}
	var content string
	if s[0] == '"' {
		c, err := unquote(s)
		if err != nil {
			return "", err
		}
		content = c
	} else {
		if !isDotAtom(s) {
			return "", fmt.Errorf("%w: local part %q is neither a dot-atom nor a quoted string", ErrInvalid, s)
		}
		content = s
	}
	out := content
	if !isDotAtom(content) {
		out = quote(content)
	}
	if len(out) > MaxLocalPart {
		return "", fmt.Errorf("%w: local part is %d bytes, at most %d", ErrInvalid, len(out), MaxLocalPart)
	}
	return out, nil
}

// unquote decodes an RFC 5322 quoted-string that spans all of s.
func unquote(s string) (string, error) {
	if len(s) < 2 || s[len(s)-1] != '"' {
		return "", fmt.Errorf("%w: unterminated quoted local part", ErrInvalid)
	}
	var b strings.Builder
	body := s[1 : len(s)-1]
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c == '\\':
			i++
			if i == len(body) {
				return "", fmt.Errorf("%w: quoted local part ends in a backslash", ErrInvalid)
			}
			if q := body[i]; q != ' ' && q != '\t' && (q < 0x21 || q > 0x7e) {
				return "", fmt.Errorf("%w: invalid quoted-pair in local part", ErrInvalid)
			}
			b.WriteByte(body[i])
		case c == '"':
			return "", fmt.Errorf("%w: unescaped quote in local part", ErrInvalid)
		case isQtext(c) || c == ' ' || c == '\t':
			b.WriteByte(c)
		case c >= utf8.RuneSelf:
			// RFC 6532 §3.2: qtext =/ UTF8-non-ascii, printable ones only.
			r, n := utf8.DecodeRuneInString(body[i:])
			if r == utf8.RuneError || !unicode.IsGraphic(r) || unicode.IsSpace(r) {
				return "", fmt.Errorf("%w: character %q not allowed in a local part", ErrInvalid, r)
			}
			b.WriteString(body[i : i+n])
			i += n - 1
		default:
			return "", fmt.Errorf("%w: character %q not allowed in a local part", ErrInvalid, rune(c))
		}
	}
	if b.Len() == 0 {
		return "", fmt.Errorf("%w: empty local part", ErrInvalid)
	}
	return b.String(), nil
}

// quote writes content as a quoted-string, escaping only '"' and '\'.
func quote(content string) string {
	var b strings.Builder
	b.Grow(len(content) + 2)
	b.WriteByte('"')
	for i := 0; i < len(content); i++ {
		if c := content[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(content[i])
	}
	b.WriteByte('"')
	return b.String()
}

func isQtext(c byte) bool { return c == 33 || (c >= 35 && c <= 91) || (c >= 93 && c <= 126) }

// isAtext reports an ASCII RFC 5322 atext character (isDotAtom adds the
// UTF-8 ones of RFC 6532).
func isAtext(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' {
			if s[i-1] == '.' {
				return false
			}
			continue
		}
		if c >= utf8.RuneSelf {
			// RFC 6532 §3.2: atext =/ UTF8-non-ascii. Printable characters
			// only: no spaces, controls or format characters.
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError || !unicode.IsGraphic(r) || unicode.IsSpace(r) {
				return false
			}
			i += n - 1
			continue
		}
		if !isAtext(c) {
			return false
		}
	}
	return true
}

// ParseDomain returns the lower-case ASCII (punycode) form of a host name
// (Unicode welcome), or an error wrapping ErrInvalid.
func ParseDomain(s string) (string, error) { return parseDomain(s) }

// parseDomain returns the lower-case ASCII form of a host name.
func parseDomain(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("%w: empty domain", ErrInvalid)
	}
	if s[0] == '[' {
		return "", fmt.Errorf("%w: domain literals are not supported", ErrInvalid)
	}
	ascii, err := profile.ToASCII(s)
	if err != nil {
		return "", fmt.Errorf("%w: domain %q: %v", ErrInvalid, s, err)
	}
	ascii = strings.ToLower(ascii)
	if len(ascii) > MaxDomain {
		return "", fmt.Errorf("%w: domain is %d bytes, at most %d", ErrInvalid, len(ascii), MaxDomain)
	}
	for _, label := range strings.Split(ascii, ".") {
		if err := checkLabel(label); err != nil {
			return "", err
		}
	}
	// The ASCII form must come back to itself, or the domain is not canonical
	// (e.g. invalid punycode written by the client).
	if back, err := profile.ToASCII(ascii); err != nil || back != ascii {
		return "", fmt.Errorf("%w: domain %q is not a valid host name", ErrInvalid, s)
	}
	return ascii, nil
}

func checkLabel(l string) error {
	if l == "" || len(l) > maxLabel {
		return fmt.Errorf("%w: domain label %q must be 1 to %d characters", ErrInvalid, l, maxLabel)
	}
	if l[0] == '-' || l[len(l)-1] == '-' {
		return fmt.Errorf("%w: domain label %q starts or ends with a hyphen", ErrInvalid, l)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("%w: domain label %q has character %q", ErrInvalid, l, rune(c))
		}
	}
	return nil
}

// CheckText reports whether s can be written into a header (a display name,
// subject, header value or file name): valid UTF-8 without CR, LF, NUL or other
// control characters except tab.
func CheckText(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalid)
	}
	for _, r := range s {
		switch {
		case r == '\r' || r == '\n':
			return fmt.Errorf("%w: contains CR or LF", ErrInvalid)
		case r == 0:
			return fmt.Errorf("%w: contains NUL", ErrInvalid)
		case r != '\t' && unicode.IsControl(r):
			return fmt.Errorf("%w: contains control character %U", ErrInvalid, r)
		}
	}
	return nil
}

// CheckName checks a display name (any Unicode text that CheckText accepts).
func CheckName(name string) error { return CheckText(name) }
