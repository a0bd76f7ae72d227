// Package secretbox seals provider credentials at rest with AES-256-GCM envelope
// encryption: each secret gets a fresh data key, the data key is sealed by a
// master key, and the sealed blob names the master key's id so master keys can be
// rotated (Rewrap) without touching the secret itself.
//
// Blob layout (version 1):
//
//	0x01 | len(kid) | kid | nonceK(12) | sealed data key (32+16) | nonceD(12) | sealed data
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

const version = 1

// ErrUnknownKey means the blob was sealed with a master key that is not configured.
var ErrUnknownKey = errors.New("secretbox: unknown master key id")

// ErrCorrupt means the blob is malformed or fails authentication.
var ErrCorrupt = errors.New("secretbox: corrupt or tampered secret")

// Keyring holds the master keys by id and which one seals new secrets.
type Keyring struct {
	current string
	keys    map[string]cipher.AEAD
}

// ParseKeyring parses "kid1:base64key,kid2:base64key" (32-byte keys); current
// names the key that seals new secrets (default: the first).
func ParseKeyring(spec, current string) (*Keyring, error) {
	kr := &Keyring{keys: map[string]cipher.AEAD{}}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		kid, b64, ok := strings.Cut(part, ":")
		if !ok || kid == "" || len(kid) > 255 {
			return nil, fmt.Errorf("secretbox: master key entry must be \"<id>:<base64 32 bytes>\"")
		}
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("secretbox: master key %q must be 32 bytes, base64 encoded", kid)
		}
		aead, err := newAEAD(raw)
		if err != nil {
			return nil, err
		}
		kr.keys[kid] = aead
		if kr.current == "" {
			kr.current = kid
		}
	}
	if len(kr.keys) == 0 {
		return nil, fmt.Errorf("secretbox: no master key configured")
	}
	if current != "" {
		if _, ok := kr.keys[current]; !ok {
			return nil, fmt.Errorf("secretbox: current master key %q is not in the keyring", current)
		}
		kr.current = current
	}
	return kr, nil
}

// NewMasterKey returns a fresh base64 master key.
func NewMasterKey() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("secretbox: random key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b[:]), nil
}

// CurrentKeyID is the id new secrets are sealed with.
func (k *Keyring) CurrentKeyID() string { return k.current }

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secretbox: cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secretbox: gcm: %w", err)
	}
	return aead, nil
}

// Seal encrypts plaintext; aad binds the blob to its owner (e.g. the provider
// configuration id) so a blob copied to another row does not open.
func (k *Keyring) Seal(plaintext, aad []byte) ([]byte, error) {
	var dk [32]byte
	if _, err := rand.Read(dk[:]); err != nil {
		return nil, fmt.Errorf("secretbox: data key: %w", err)
	}
	data, err := newAEAD(dk[:])
	if err != nil {
		return nil, err
	}
	master := k.keys[k.current]
	out := make([]byte, 0, 2+len(k.current)+12+48+12+len(plaintext)+16)
	out = append(out, version, byte(len(k.current)))
	out = append(out, k.current...)
	out, err = sealWith(master, out, dk[:], []byte(k.current))
	if err != nil {
		return nil, err
	}
	return sealWith(data, out, plaintext, aad)
}

func sealWith(aead cipher.AEAD, dst, plaintext, aad []byte) ([]byte, error) {
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("secretbox: nonce: %w", err)
	}
	dst = append(dst, nonce...)
	return aead.Seal(dst, nonce, plaintext, aad), nil
}

// KeyID returns the master key id a blob was sealed with.
func KeyID(blob []byte) (string, error) {
	if len(blob) < 2 || blob[0] != version || len(blob) < 2+int(blob[1]) {
		return "", ErrCorrupt
	}
	return string(blob[2 : 2+int(blob[1])]), nil
}

// Open decrypts a blob sealed by Seal with the same aad.
func (k *Keyring) Open(blob, aad []byte) ([]byte, error) {
	dk, rest, err := k.openDataKey(blob)
	if err != nil {
		return nil, err
	}
	data, err := newAEAD(dk)
	if err != nil {
		return nil, err
	}
	ns := data.NonceSize()
	if len(rest) < ns+data.Overhead() {
		return nil, ErrCorrupt
	}
	pt, err := data.Open(nil, rest[:ns], rest[ns:], aad)
	if err != nil {
		return nil, ErrCorrupt
	}
	return pt, nil
}

func (k *Keyring) openDataKey(blob []byte) (dk, rest []byte, err error) {
	kid, err := KeyID(blob)
	if err != nil {
		return nil, nil, err
	}
	master, ok := k.keys[kid]
	if !ok {
		return nil, nil, fmt.Errorf("%w %q", ErrUnknownKey, kid)
	}
	p := blob[2+len(kid):]
	ns := master.NonceSize()
	n := ns + 32 + master.Overhead()
	if len(p) < n {
		return nil, nil, ErrCorrupt
	}
	dk, err = master.Open(nil, p[:ns], p[ns:n], []byte(kid))
	if err != nil {
		return nil, nil, ErrCorrupt
	}
	return dk, p[n:], nil
}

// Rewrap re-seals a blob's data key under the current master key, leaving the
// sealed data as it is. It is how master keys rotate.
func (k *Keyring) Rewrap(blob []byte) ([]byte, error) {
	dk, rest, err := k.openDataKey(blob)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(blob)+len(k.current))
	out = append(out, version, byte(len(k.current)))
	out = append(out, k.current...)
	out, err = sealWith(k.keys[k.current], out, dk, []byte(k.current))
	if err != nil {
		return nil, err
	}
	return append(out, rest...), nil
}
