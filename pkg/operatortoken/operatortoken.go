// Package operatortoken reads and checks operator tokens
// (OPERATOR_TOKEN_SHA256: name:sha256hex, comma separated): the credentials
// of the operators, apart from tenants' keys. Ingest's OperatorService and
// the console's operator sign-in accept them; the name is the audited actor.
package operatortoken

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"strings"
)

// Token is an operator token: its name (the audited actor) and the SHA-256
// of its secret.
type Token struct {
	Name string
	Hash [sha256.Size]byte
}

// Parse reads OPERATOR_TOKEN_SHA256: name:sha256hex, comma separated.
func Parse(s string) ([]Token, error) {
	var out []Token
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, hexHash, ok := strings.Cut(part, ":")
		b, err := hex.DecodeString(hexHash)
		if !ok || strings.TrimSpace(name) == "" || err != nil || len(b) != sha256.Size {
			return nil, errors.New("OPERATOR_TOKEN_SHA256: want name:sha256hex (64 hex digits), comma separated")
		}
		var t Token
		t.Name = strings.TrimSpace(name)
		copy(t.Hash[:], b)
		out = append(out, t)
	}
	return out, nil
}

// Match returns the name of the token whose SHA-256 is secret's ("" when
// none is), comparing every token in constant time.
func Match(tokens []Token, secret string) string {
	if secret == "" {
		return ""
	}
	h := sha256.Sum256([]byte(secret))
	return MatchHash(tokens, h)
}

// MatchHash is Match for the secret's SHA-256.
func MatchHash(tokens []Token, h [sha256.Size]byte) string {
	name := ""
	for _, t := range tokens {
		if subtle.ConstantTimeCompare(h[:], t.Hash[:]) == 1 {
			name = t.Name
		}
	}
	return name
}
