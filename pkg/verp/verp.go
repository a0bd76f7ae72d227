// Package verp builds and checks the per-message envelope senders (VERP,
// variable envelope return paths) that SMTP sends use when the operator
// configures a bounce domain: b+<token>@<bounce domain>, where the token
// names the message (and, for a single-recipient envelope, the recipient)
// and carries an HMAC-SHA256 under the operator's BOUNCE_KEY. Bounces and
// other reports the receiving side sends to that address come back to the
// inbound service, which accepts only addresses whose HMAC verifies: nobody
// without the key can make up an address that reports on a message, nor move
// a report from one message (or recipient) to another.
//
// The token is 31 bytes in lower-case base32 without padding (50
// characters; the local part is 52, within RFC 5321's 64):
//
//	version (1) | message id (16, the UUID) | recipient tag (4) | mac (10)
//
// Version 1 addresses are at the operator's bounce domain. Version 2
// addresses are at an account's own bounce domain (pkg/bouncedomain,
// AddressAt): their mac also covers that domain and the account, so such an
// address is good only at its domain, and only while the domain belongs to
// the account the message was sent for (ParseOwned): an address made for one
// account's message is refused at another account's domain without a
// database lookup.
//
// The recipient tag is the first 4 bytes of HMAC(key, "rcpt" | message id |
// recipient) when the envelope has one recipient, zero when it has several
// (the report then names the recipient, and it must be one of the
// message's). The mac is the first 10 bytes (80 bits) of HMAC(key, "verp" |
// version | message id | tag). Local parts are matched without regard to
// case: some MTAs lower- or upper-case them.
package verp

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// Prefix starts the local part of every VERP address.
const Prefix = "b+"

const (
	version = 1
	// versionAccount is an address at an account's own bounce domain.
	versionAccount = 2
	idLen          = 16
	tagLen         = 4
	macLen         = 10
	rawLen         = 1 + idLen + tagLen + macLen
	// MinKeyLen is the shortest BOUNCE_KEY accepted (bytes, decoded).
	MinKeyLen = 32
)

var enc = base32.StdEncoding.WithPadding(base32.NoPadding)

// ErrInvalid is wrapped by every error of an address that is not a valid
// VERP address of this signer (wrong domain, shape or HMAC).
var ErrInvalid = errors.New("not a valid bounce address")

// Config is the operator's VERP configuration, shared by the worker (which
// signs) and the inbound service (which verifies).
type Config struct {
	// Domain is the bounce domain, whose MX is the inbound service.
	Domain string `env:"BOUNCE_DOMAIN" help:"bounce domain: SMTP sends use b+TOKEN@BOUNCE_DOMAIN as the envelope sender (VERP) and the inbound service accepts reports for it; unset: SMTP sends keep the From address"`
	// Keys are the HMAC keys, base64, comma separated: the first signs,
	// every one verifies (rotation).
	Keys string `env:"BOUNCE_KEY" help:"HMAC keys of the bounce addresses, base64 (at least 32 bytes each), comma separated: the first signs, all verify; required with BOUNCE_DOMAIN; secret"`
}

// Signer returns the signer of c; nil (and no error) when no bounce domain is
// configured.
func (c Config) Signer() (*Signer, error) {
	if strings.TrimSpace(c.Domain) == "" {
		if c.Keys != "" {
			return nil, errors.New("BOUNCE_KEY is set but BOUNCE_DOMAIN is not")
		}
		return nil, nil
	}
	if c.Keys == "" {
		return nil, errors.New("BOUNCE_DOMAIN needs BOUNCE_KEY")
	}
	var keys [][]byte
	for i, k := range strings.Split(c.Keys, ",") {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(k))
		if err != nil {
			// Never the decoder's error: it could quote the key.
			return nil, fmt.Errorf("BOUNCE_KEY: key %d is not base64", i+1)
		}
		keys = append(keys, b)
	}
	return New(c.Domain, keys...)
}

// Signer builds and verifies the VERP addresses of one bounce domain.
type Signer struct {
	domain string
	keys   [][]byte
}

// New returns a signer for domain; keys[0] signs, every key verifies.
func New(domain string, keys ...[]byte) (*Signer, error) {
	domain = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(domain), "."))
	if domain == "" || strings.ContainsAny(domain, "@ <>") || !strings.Contains(domain, ".") && domain != "localhost" {
		return nil, fmt.Errorf("bounce domain %q is not a domain name", domain)
	}
	if len(keys) == 0 {
		return nil, errors.New("no bounce key")
	}
	for i, k := range keys {
		if len(k) < MinKeyLen {
			return nil, fmt.Errorf("bounce key %d is %d bytes; want at least %d", i+1, len(k), MinKeyLen)
		}
	}
	return &Signer{domain: domain, keys: keys}, nil
}

// Domain is the bounce domain (lower case).
func (s *Signer) Domain() string { return s.domain }

// Address is the envelope sender of a message: for one recipient when
// recipient is not "" (the envelope has only that one), else for all of its
// recipients.
func (s *Signer) Address(messageID, recipient string) (string, error) {
	return s.AddressAt("", "", messageID, recipient)
}

// AddressAt is Address at domain, the verified bounce domain of the account
// the message was sent for (version 2); domain "" (or the operator's bounce
// domain) is Address.
func (s *Signer) AddressAt(domain, accountID, messageID, recipient string) (string, error) {
	id, err := uuid.Parse(messageID)
	if err != nil {
		return "", fmt.Errorf("verp: message id %q: %w", messageID, err)
	}
	domain = normalizeDomain(domain)
	v := byte(versionAccount)
	if domain == "" || domain == s.domain {
		v, domain, accountID = version, s.domain, ""
	} else if accountID == "" {
		return "", errors.New("verp: an address at an account's bounce domain needs the account")
	}
	raw := make([]byte, 0, rawLen)
	raw = append(raw, v)
	raw = append(raw, id[:]...)
	if recipient != "" {
		raw = append(raw, recipientTag(s.keys[0], id, recipient)...)
	} else {
		raw = append(raw, make([]byte, tagLen)...)
	}
	raw = append(raw, mac(s.keys[0], raw, domain, accountID)...)
	return Prefix + strings.ToLower(enc.EncodeToString(raw)) + "@" + domain, nil
}

// Token is a verified VERP address.
type Token struct {
	// MessageID is the message the address was made for.
	MessageID string
	// Domain is the address's domain: the operator's bounce domain or an
	// account's.
	Domain string
	// AccountID is, for an address at an account's bounce domain, the
	// account that owns it (and the message was sent for); "" at the
	// operator's domain.
	AccountID string
	id        uuid.UUID
	tag       []byte
	key       []byte
}

// Bound reports whether the address was made for one recipient.
func (t Token) Bound() bool { return !bytes.Equal(t.tag, make([]byte, tagLen)) }

// For reports whether the address was made for (an envelope with only)
// recipient; always false for an address of several recipients.
func (t Token) For(recipient string) bool {
	return t.Bound() && hmac.Equal(t.tag, recipientTag(t.key, t.id, recipient))
}

// Parse verifies addr ("b+token@domain", angle brackets allowed), an
// address at the operator's bounce domain, and returns its token; errors
// wrap ErrInvalid.
func (s *Signer) Parse(addr string) (Token, error) { return s.ParseOwned(addr, nil) }

// ParseOwned verifies addr at the operator's bounce domain (as Parse) or at
// an account's own bounce domain: owner names the account a domain is
// verified for (false: none), and the address's mac must verify for that
// domain and that account. Errors wrap ErrInvalid.
func (s *Signer) ParseOwned(addr string, owner func(domain string) (accountID string, ok bool)) (Token, error) {
	addr = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(addr), "<"), ">")
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return Token{}, fmt.Errorf("%w: no domain", ErrInvalid)
	}
	local, domain := addr[:at], normalizeDomain(addr[at+1:])
	want, account := byte(version), ""
	if domain != s.domain {
		a, ok := "", false
		if owner != nil && domain != "" {
			a, ok = owner(domain)
		}
		if !ok {
			return Token{}, fmt.Errorf("%w: domain %q is not a bounce domain", ErrInvalid, domain)
		}
		want, account = versionAccount, a
	}
	if len(local) <= len(Prefix) || !strings.EqualFold(local[:len(Prefix)], Prefix) {
		return Token{}, fmt.Errorf("%w: local part is not %s<token>", ErrInvalid, Prefix)
	}
	raw, err := enc.DecodeString(strings.ToUpper(local[len(Prefix):]))
	if err != nil || len(raw) != rawLen {
		return Token{}, fmt.Errorf("%w: malformed token", ErrInvalid)
	}
	if raw[0] != want {
		if raw[0] != version && raw[0] != versionAccount {
			return Token{}, fmt.Errorf("%w: unknown token version %d", ErrInvalid, raw[0])
		}
		return Token{}, fmt.Errorf("%w: token version %d is not for domain %q", ErrInvalid, raw[0], domain)
	}
	body, sum := raw[:rawLen-macLen], raw[rawLen-macLen:]
	for _, k := range s.keys {
		if hmac.Equal(sum, mac(k, body, domain, account)) {
			id, _ := uuid.FromBytes(raw[1 : 1+idLen])
			return Token{MessageID: id.String(), Domain: domain, AccountID: account, id: id,
				tag: bytes.Clone(raw[1+idLen : 1+idLen+tagLen]), key: k}, nil
		}
	}
	return Token{}, fmt.Errorf("%w: bad signature", ErrInvalid)
}

// mac is an address's mac: over the body alone for version 1 (as it always
// was), over the domain and the account too for version 2.
func mac(key, body []byte, domain, account string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte("verp"))
	h.Write(body)
	if body[0] == versionAccount {
		h.Write([]byte(domain))
		h.Write([]byte{0})
		h.Write([]byte(strings.ToLower(account)))
	}
	return h.Sum(nil)[:macLen]
}

func normalizeDomain(d string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
}

func recipientTag(key []byte, id uuid.UUID, recipient string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte("rcpt"))
	h.Write(id[:])
	h.Write([]byte(strings.ToLower(strings.TrimSpace(recipient))))
	tag := h.Sum(nil)[:tagLen]
	if bytes.Equal(tag, make([]byte, tagLen)) {
		tag[0] = 1 // zero means "several recipients"
	}
	return tag
}
