package address

import (
	"strings"
	"testing"
)

// FuzzAddress checks that Parse never panics, that whatever it accepts is in
// canonical form (parsing it again gives the same address) and never contains a
// character that could break a header line.
func FuzzAddress(f *testing.F) {
	for _, s := range []string{
		"jane@example.com", `"jane doe"@example.com`, "jane@bücher.example",
		"jane@example.com\r\nBcc: x@evil.com", `"a\"b"@x.y`, "@", "a@b@c", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		a, err := Parse(in)
		if err != nil {
			return
		}
		out := a.String()
		if strings.ContainsAny(out, "\r\n\x00") {
			t.Fatalf("Parse(%q) accepted %q with CR, LF or NUL", in, out)
		}
		if len(out) > MaxAddress {
			t.Fatalf("Parse(%q) = %q, longer than %d", in, out, MaxAddress)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(%q) = %q, which does not parse again: %v", in, out, err)
		}
		if again != a {
			t.Fatalf("Parse(%q) = %q, which parses again as %q", in, out, again)
		}
	})
}
