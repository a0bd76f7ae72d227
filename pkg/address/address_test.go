package address

import (
	"errors"
	"net/mail"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "jane@example.com", want: "jane@example.com"},
		{in: "  Jane.Doe+tag@Example.COM\t", want: "Jane.Doe+tag@example.com"},
		{in: "o'brien@example.ie", want: "o'brien@example.ie"},
		{in: "x!#$%&'*+-/=?^_`{|}~@example.com", want: "x!#$%&'*+-/=?^_`{|}~@example.com"},
		{in: `"jane"@example.com`, want: "jane@example.com"},
		{in: `"jane doe"@example.com`, want: `"jane doe"@example.com`},
		{in: `"a\"b"@example.com`, want: `"a\"b"@example.com`},
		{in: `"a\\b"@example.com`, want: `"a\\b"@example.com`},
		{in: `"a\bc"@example.com`, want: "abc@example.com"},
		{in: `"a@b"@example.com`, want: `"a@b"@example.com`},
		{in: `".jane"@example.com`, want: `".jane"@example.com`},
		{in: "jane@bücher.example", want: "jane@xn--bcher-kva.example"},
		{in: "jane@xn--bcher-kva.example", want: "jane@xn--bcher-kva.example"},
		{in: "jane@BÜCHER.example", want: "jane@xn--bcher-kva.example"},
		{in: "jane@localhost", want: "jane@localhost"},
		{in: "", wantErr: true},
		{in: "jane", wantErr: true},
		{in: "@example.com", wantErr: true},
		{in: "jane@", wantErr: true},
		{in: "jane@@example.com", wantErr: true},
		{in: "ja ne@example.com", wantErr: true},
		{in: ".jane@example.com", wantErr: true},
		{in: "jane.@example.com", wantErr: true},
		{in: "ja..ne@example.com", wantErr: true},
		{in: "jane@example..com", wantErr: true},
		{in: "jane@example.com.", wantErr: true},
		{in: "jane@-example.com", wantErr: true},
		{in: "jane@exa_mple.com", wantErr: true},
		{in: "jane@[127.0.0.1]", wantErr: true},
		{in: "jane@example.com\r\nBcc: x@evil.com", wantErr: true},
		{in: "jane\n@example.com", wantErr: true},
		{in: "jane\x00@example.com", wantErr: true},
		{in: `"jane\` + "\r" + `"@example.com`, wantErr: true},
		{in: `"jane@example.com`, wantErr: true},
		{in: `"ja"ne"@example.com`, wantErr: true},
		{in: `""@example.com`, wantErr: true},
		{in: "jäne@example.com", want: "jäne@example.com"},
		{in: "用户@例え.jp", want: "用户@xn--r8jz45g.jp"},
		{in: "ja\u00a0ne@example.com", wantErr: true},
		{in: "ja\u200bne@example.com", wantErr: true},
		{in: "ja\u0085ne@example.com", wantErr: true},
		{in: "Jane <jane@example.com>", wantErr: true},
		{in: "<jane@example.com>", wantErr: true},
		{in: "jane@xn--zz.example", wantErr: true},
		{in: strings.Repeat("a", 65) + "@example.com", wantErr: true},
		{in: "a@" + strings.Repeat("b", 64) + ".com", wantErr: true},
		{in: "a@" + strings.Repeat("b.", 127) + "com", wantErr: true},
		{in: "\xff@example.com", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Parse(%q) = %q, want error", tt.in, got)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Parse(%q) error %v does not wrap ErrInvalid", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got.String() != tt.want {
				t.Fatalf("Parse(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestCanonicalIsNetMailCompatible checks that unquoted canonical addresses are
// read back unchanged by net/mail, which the message builder relies on.
func TestCanonicalIsNetMailCompatible(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"jane@example.com", `"jane"@example.com`, "jane@bücher.example", "a+b=c@x.y.z"} {
		a, err := Parse(in)
		if err != nil {
			t.Fatalf("Parse(%q): %v", in, err)
		}
		m, err := mail.ParseAddress(a.String())
		if err != nil || m.Address != a.String() {
			t.Fatalf("net/mail reads %q as %v, %v", a.String(), m, err)
		}
	}
}

func TestCheckText(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"", "Jane Doe", "Jörg Müller", "李小龙", "tab\tok", "😀 emoji"} {
		if err := CheckText(ok); err != nil {
			t.Errorf("CheckText(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"a\rb", "a\nb", "a\x00b", "a\x1bb", "a\u0085b", "\xff"} {
		if err := CheckText(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckText(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestASCII(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bool{
		"jane@example.com":     true,
		"jane@bücher.example":  true,
		"jäne@example.com":     false,
		`"jäne doe"@x.example`: false,
	} {
		a, err := Parse(in)
		if err != nil {
			t.Fatalf("Parse(%q): %v", in, err)
		}
		if got := a.ASCII(); got != want {
			t.Errorf("Parse(%q).ASCII() = %v, want %v", in, got, want)
		}
	}
}
