package envconfig

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

type fuzzConfig struct {
	S  string        `env:"S"`
	B  bool          `env:"B"`
	I  int           `env:"I"`
	N  int8          `env:"N"`
	U  uint16        `env:"U"`
	F  float64       `env:"F"`
	D  time.Duration `env:"D"`
	L  []string      `env:"L"`
	In struct {
		S string `env:"IN_S" default:"inner"`
	}
}

// FuzzLoadFrom loads arbitrary variable values: a value that does not parse is
// an error naming its variable, never a panic; what loads, written back in the
// canonical form of its type, loads to the same configuration.
func FuzzLoadFrom(f *testing.F) {
	f.Add("x", "true", "42", "-8", "65535", "1.5", "1h30m", "a, b,,c")
	f.Add("", "", "", "", "", "", "", "")
	f.Add(" spaced ", "0", "+7", "127", "0", "NaN", "-2562047h47m16.854775808s", ",")
	f.Add("é", "yes", "9223372036854775808", "128", "-1", "1e400", "1.5", "x")
	f.Fuzz(func(t *testing.T, s, b, i, n, u, fl, d, l string) {
		env := map[string]string{"S": s, "B": b, "I": i, "N": n, "U": u, "F": fl, "D": d, "L": l}
		var c fuzzConfig
		if err := LoadFrom(&c, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
			named := false
			for k := range env {
				named = named || strings.HasPrefix(err.Error(), "envconfig: "+k+"=")
			}
			if !named {
				t.Fatalf("error names no variable: %v", err)
			}
			return
		}
		if c.In.S != "inner" {
			t.Fatalf("default of IN_S not applied: %q", c.In.S)
		}
		canon := map[string]string{
			"S": c.S, "B": strconv.FormatBool(c.B), "I": strconv.Itoa(c.I), "N": strconv.Itoa(int(c.N)),
			"U": strconv.Itoa(int(c.U)), "F": strconv.FormatFloat(c.F, 'g', -1, 64), "D": c.D.String(),
			"L": strings.Join(c.L, ","),
		}
		var again fuzzConfig
		if err := LoadFrom(&again, func(k string) (string, bool) { v, ok := canon[k]; return v, ok }); err != nil {
			t.Fatalf("canonical values %v do not load: %v", canon, err)
		}
		// %#v compares NaN equal to itself, unlike ==.
		if a, b := fmt.Sprintf("%#v", c), fmt.Sprintf("%#v", again); a != b {
			t.Fatalf("load is not stable:\n%s\n%s", a, b)
		}
	})
}
