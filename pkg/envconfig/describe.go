package envconfig

import (
	"fmt"
	"io"
	"reflect"
)

// Var describes one environment variable of a configuration.
type Var struct {
	Name, Default, Help string
}

// Describe lists the variables of cfg (a struct or pointer to one), in field
// order, nested structs included.
func Describe(cfg any) []Var {
	t := reflect.TypeOf(cfg)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []Var
	describe(t, &out)
	return out
}

func describe(t reflect.Type, out *[]Var) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if reflect.PointerTo(f.Type).Implements(describerType) {
			*out = append(*out, reflect.New(f.Type).Interface().(Describer).DescribeEnv()...)
			continue
		}
		name := f.Tag.Get("env")
		if name == "" {
			if f.Type.Kind() == reflect.Struct && f.Type != durationType {
				describe(f.Type, out)
			}
			continue
		}
		*out = append(*out, Var{Name: name, Default: f.Tag.Get("default"), Help: f.Tag.Get("help")})
	}
}

// PrintUsage writes the variables as an aligned list, for -h output.
func PrintUsage(w io.Writer, cfg any) {
	for _, v := range Describe(cfg) {
		def := v.Default
		if def == "" {
			def = "(unset)"
		}
		fmt.Fprintf(w, "  %-28s %s (default %s)\n", v.Name, v.Help, def)
	}
}
