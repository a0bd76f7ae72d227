package verp

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func TestAddressRoundTrip(t *testing.T) {
	t.Parallel()
	s, err := New("Bounce.Example.NET.", key(1))
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	for _, rcpt := range []string{"", "Jane@Example.org"} {
		addr, err := s.Address(id, rcpt)
		if err != nil {
			t.Fatal(err)
		}
		local, domain, _ := strings.Cut(addr, "@")
		if domain != "bounce.example.net" || !strings.HasPrefix(local, Prefix) || len(local) > 64 {
			t.Fatalf("address %q", addr)
		}
		for _, variant := range []string{addr, strings.ToUpper(addr), "<" + addr + ">"} {
			tok, err := s.Parse(variant)
			if err != nil {
				t.Fatalf("Parse(%q): %v", variant, err)
			}
			if tok.MessageID != id {
				t.Fatalf("message id %s, want %s", tok.MessageID, id)
			}
			if tok.Bound() != (rcpt != "") {
				t.Fatalf("bound = %v for %q", tok.Bound(), rcpt)
			}
			if rcpt != "" && (!tok.For("jane@example.org") || tok.For("john@example.org")) {
				t.Fatalf("recipient binding wrong")
			}
			if rcpt == "" && tok.For("jane@example.org") {
				t.Fatalf("unbound token claims a recipient")
			}
		}
	}
}

// Forged addresses: another key, another domain, a changed message id or
// tag, a truncated token, garbage. Every one is refused with ErrInvalid.
func TestForgedAddressesRefused(t *testing.T) {
	t.Parallel()
	s, _ := New("bounce.example.net", key(1))
	other, _ := New("bounce.example.net", key(2))
	id := uuid.NewString()
	good, _ := s.Address(id, "jane@example.org")
	forged, _ := other.Address(id, "jane@example.org")
	local, _, _ := strings.Cut(good, "@")
	tok := local[len(Prefix):]
	flip := func(i int) string {
		b := []byte(tok)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return Prefix + string(b) + "@bounce.example.net"
	}
	for name, addr := range map[string]string{
		"other key":        forged,
		"other domain":     local + "@example.net",
		"changed id":       flip(5),
		"changed tag":      flip(30),
		"changed mac":      flip(45),
		"truncated":        Prefix + tok[:40] + "@bounce.example.net",
		"no prefix":        tok + "@bounce.example.net",
		"garbage":          "b+!!!!@bounce.example.net",
		"postmaster":       "postmaster@bounce.example.net",
		"no domain":        local,
		"empty":            "",
		"another message ": mustAddr(t, other, uuid.NewString()),
	} {
		if _, err := s.Parse(addr); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Parse(%q) = %v, want ErrInvalid", name, addr, err)
		}
	}
}

func mustAddr(t *testing.T, s *Signer, id string) string {
	a, err := s.Address(id, "")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestRotation(t *testing.T) {
	t.Parallel()
	old, _ := New("b.example", key(1))
	addr, _ := old.Address(uuid.NewString(), "x@y.example")
	rotated, err := Config{Domain: "b.example", Keys: base64.StdEncoding.EncodeToString(key(2)) + "," + base64.StdEncoding.EncodeToString(key(1))}.Signer()
	if err != nil {
		t.Fatal(err)
	}
	tok, err := rotated.Parse(addr)
	if err != nil || !tok.For("x@y.example") {
		t.Fatalf("old key's address after rotation: %v", err)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	if s, err := (Config{}).Signer(); s != nil || err != nil {
		t.Fatalf("empty config: %v %v", s, err)
	}
	k := base64.StdEncoding.EncodeToString(key(3))
	for name, c := range map[string]Config{
		"key without domain": {Keys: k},
		"domain without key": {Domain: "b.example"},
		"short key":          {Domain: "b.example", Keys: base64.StdEncoding.EncodeToString([]byte("short"))},
		"not base64":         {Domain: "b.example", Keys: "%%%"},
		"bad domain":         {Domain: "a b", Keys: k},
	} {
		if _, err := c.Signer(); err == nil {
			t.Errorf("%s: no error", name)
		} else if strings.Contains(err.Error(), "%%%") {
			t.Errorf("%s: error quotes the key: %v", name, err)
		}
	}
	if _, err := (Config{Domain: "b.example", Keys: k}).Signer(); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkParse(b *testing.B) {
	s, _ := New("b.example", key(1))
	addr, _ := s.Address(uuid.NewString(), "x@y.example")
	for b.Loop() {
		if _, err := s.Parse(addr); err != nil {
			b.Fatal(err)
		}
	}
}
