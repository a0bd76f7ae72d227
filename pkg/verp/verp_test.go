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

// Addresses at an account's own bounce domain (version 2) verify only at
// that domain and only for the account that owns it; version 1 addresses
// only at the operator's domain.
func TestAccountDomainAddresses(t *testing.T) {
	t.Parallel()
	s, _ := New("bounce.example.net", key(1))
	const (
		accA, accB = "0b4f8a34-0000-4000-8000-00000000000a", "0b4f8a34-0000-4000-8000-00000000000b"
		domA, domB = "bounces.a.example", "bounces.b.example"
	)
	owners := map[string]string{domA: accA, domB: accB}
	owner := func(d string) (string, bool) { a, ok := owners[d]; return a, ok }
	id := uuid.NewString()
	at := func(domain, account string) string {
		t.Helper()
		a, err := s.AddressAt(domain, account, id, "jane@example.org")
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	good := at(domA, accA)
	if !strings.HasSuffix(good, "@"+domA) || len(strings.SplitN(good, "@", 2)[0]) != 52 {
		t.Fatalf("AddressAt = %q", good)
	}
	tok, err := s.ParseOwned(strings.ToUpper(good)+".", owner)
	if err != nil {
		t.Fatalf("ParseOwned(%q): %v", good, err)
	}
	if tok.MessageID != id || tok.AccountID != accA || tok.Domain != domA || !tok.For("jane@example.org") {
		t.Fatalf("token %+v", tok)
	}
	if op, _ := s.AddressAt("", accA, id, ""); !strings.HasSuffix(op, "@bounce.example.net") {
		t.Fatalf("no domain: %q, want the operator's", op)
	}
	if _, err := s.AddressAt(domA, "", id, ""); err == nil {
		t.Fatal("an account domain without the account")
	}
	local, _, _ := strings.Cut(good, "@")
	opAddr, _ := s.Address(id, "jane@example.org")
	opLocal, _, _ := strings.Cut(opAddr, "@")
	for name, tc := range map[string]struct {
		addr  string
		owner func(string) (string, bool)
	}{
		"another account's domain":         {local + "@" + domB, owner},
		"made for B, at A's domain":        {at(domA, accB), owner},
		"domain now owned by another":      {good, func(d string) (string, bool) { return accB, d == domA }},
		"domain no longer verified":        {good, func(string) (string, bool) { return "", false }},
		"no owner lookup (Parse)":          {good, nil},
		"account address at operator's":    {local + "@bounce.example.net", owner},
		"operator address at account's":    {opLocal + "@" + domA, owner},
		"another domain of the same owner": {local + "@mail.a.example", func(string) (string, bool) { return accA, true }},
	} {
		if _, err := s.ParseOwned(tc.addr, tc.owner); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: ParseOwned(%q) = %v, want ErrInvalid", name, tc.addr, err)
		}
	}
	// The operator's addresses still verify with an owner lookup.
	if tok, err := s.ParseOwned(opAddr, owner); err != nil || tok.AccountID != "" || tok.Domain != "bounce.example.net" {
		t.Fatalf("operator address: %+v, %v", tok, err)
	}
}
