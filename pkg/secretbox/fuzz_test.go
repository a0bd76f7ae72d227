package secretbox

import (
	"bytes"
	"errors"
	"testing"
)

const (
	fuzzKey1 = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	fuzzKey2 = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
)

// FuzzOpen opens arbitrary blobs as stored secrets are opened: never a panic,
// only ErrCorrupt or ErrUnknownKey for what does not open; and whatever is
// sealed opens to itself, with its aad only, through a key rotation, and not
// once any byte of it is changed or cut.
func FuzzOpen(f *testing.F) {
	kr, err := ParseKeyring(fuzzKey1+","+fuzzKey2, "")
	if err != nil {
		f.Fatal(err)
	}
	rotated, err := ParseKeyring(fuzzKey1+","+fuzzKey2, "k2")
	if err != nil {
		f.Fatal(err)
	}
	sealed, err := kr.Seal([]byte("smtp password"), []byte("provider-1"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed, []byte("smtp password"), []byte("provider-1"), uint16(0))
	f.Add([]byte{version, 2, 'k', '9'}, []byte{}, []byte{}, uint16(3))
	f.Add([]byte{}, []byte("\x00\xff"), []byte(nil), uint16(70))
	f.Fuzz(func(t *testing.T, blob, plaintext, aad []byte, at uint16) {
		if _, err := kr.Open(blob, aad); err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("open: unexpected error %v", err)
		}
		s, err := kr.Seal(plaintext, aad)
		if err != nil {
			t.Fatal(err)
		}
		if kid, err := KeyID(s); err != nil || kid != "k1" {
			t.Fatalf("sealed under %q, %v; want k1", kid, err)
		}
		if got, err := kr.Open(s, aad); err != nil || !bytes.Equal(got, plaintext) {
			t.Fatalf("open(seal(p)) = %q, %v; want %q", got, err, plaintext)
		}
		if _, err := kr.Open(s, append(append([]byte(nil), aad...), 'x')); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("opened with another aad: %v", err)
		}
		i := int(at) % len(s)
		changed := append([]byte(nil), s...)
		changed[i] ^= 0x01
		if _, err := kr.Open(changed, aad); err == nil {
			t.Fatalf("opened with byte %d changed", i)
		}
		if _, err := kr.Open(s[:i], aad); err == nil {
			t.Fatalf("opened when cut to %d bytes", i)
		}
		re, err := rotated.Rewrap(s)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := kr.Open(re, aad); err != nil || !bytes.Equal(got, plaintext) {
			t.Fatalf("open after rewrap = %q, %v", got, err)
		}
		if kid, _ := KeyID(re); kid != "k2" {
			t.Fatalf("rewrapped under %q, want k2", kid)
		}
	})
}

// FuzzParseKeyring parses arbitrary MASTER_KEYS values: an error or a keyring
// whose current key seals what it opens, never a panic.
func FuzzParseKeyring(f *testing.F) {
	f.Add(fuzzKey1, "")
	f.Add(fuzzKey1+", "+fuzzKey2, "k2")
	f.Add("k1:short", "")
	f.Add(",,", "k1")
	f.Add(fuzzKey1+",:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "")
	f.Fuzz(func(t *testing.T, spec, current string) {
		kr, err := ParseKeyring(spec, current)
		if err != nil {
			return
		}
		if kr.CurrentKeyID() == "" || (current != "" && kr.CurrentKeyID() != current) {
			t.Fatalf("current key %q for spec %q, current %q", kr.CurrentKeyID(), spec, current)
		}
		s, err := kr.Seal([]byte("x"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := kr.Open(s, nil); err != nil || string(got) != "x" {
			t.Fatalf("open(seal) = %q, %v", got, err)
		}
	})
}
