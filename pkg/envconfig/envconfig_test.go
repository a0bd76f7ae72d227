package envconfig

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestLoadFrom(t *testing.T) {
	t.Parallel()
	type inner struct {
		N int `env:"N" default:"3"`
	}
	type cfg struct {
		S   string        `env:"S" default:"def"`
		D   time.Duration `env:"D" default:"2s"`
		B   bool          `env:"B"`
		L   []string      `env:"L"`
		In  inner
		Off string
	}
	env := map[string]string{"S": "x", "B": "true", "L": "a, b,,c", "N": "7"}
	var c cfg
	if err := LoadFrom(&c, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if c.S != "x" || c.D != 2*time.Second || !c.B || len(c.L) != 3 || c.In.N != 7 {
		t.Fatalf("unexpected %+v", c)
	}
	env["D"] = "soon"
	if err := LoadFrom(&c, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err == nil {
		t.Fatal("want error for bad duration")
	}
}

func TestLoadFromPointer(t *testing.T) {
	t.Parallel()
	type cfg struct {
		On  *bool `env:"ON" default:"true"`
		Off *bool `env:"OFF" default:"true"`
		Nil *bool `env:"NIL"`
	}
	var c cfg
	env := map[string]string{"OFF": "false"}
	if err := LoadFrom(&c, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if c.On == nil || !*c.On || c.Off == nil || *c.Off || c.Nil != nil {
		t.Fatalf("got On=%v Off=%v Nil=%v", c.On, c.Off, c.Nil)
	}
}

func TestFillDefaults(t *testing.T) {
	t.Parallel()
	type cfg struct {
		Addr  string        `env:"A" default:":80"`
		Wait  time.Duration `env:"W" default:"2s"`
		N     int           `env:"N" default:"3"`
		Off   string        `env:"O" default:"on"`
		NoDef int           `env:"X"`
	}
	c := cfg{N: -1, Wait: 5 * time.Second}
	if err := FillDefaults(&c, "Addr", "Wait", "N"); err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":80" || c.Wait != 5*time.Second || c.N != 3 || c.Off != "" {
		t.Fatalf("unexpected %+v", c)
	}
	if err := FillDefaults(&c, "NoDef"); err == nil {
		t.Fatal("want error for a field without a default tag")
	}
	if err := FillDefaults(&c, "Missing"); err == nil {
		t.Fatal("want error for an unknown field")
	}
}

// perKey is a Loader and Describer: one variable per key, named at run time.
type perKey map[string]int

func (p *perKey) LoadEnv(lookup Lookup) error {
	*p = perKey{}
	for _, k := range []string{"a", "b"} {
		if v, ok := lookup("N_" + k); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				return err
			}
			(*p)[k] = n
		}
	}
	return nil
}

func (perKey) DescribeEnv() []Var {
	return []Var{{Name: "N_a", Help: "n of a"}, {Name: "N_b", Help: "n of b"}}
}

func TestLoader(t *testing.T) {
	t.Parallel()
	type cfg struct {
		Before string `env:"BEFORE"`
		Keys   perKey
		After  string `env:"AFTER"`
	}
	var c cfg
	env := map[string]string{"N_b": "4", "AFTER": "x"}
	if err := LoadFrom(&c, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if c.Keys["b"] != 4 || len(c.Keys) != 1 || c.After != "x" {
		t.Fatalf("got %+v", c)
	}
	var names []string
	for _, v := range Describe(&c) {
		names = append(names, v.Name)
	}
	if strings.Join(names, ",") != "BEFORE,N_a,N_b,AFTER" {
		t.Fatalf("Describe lists %v", names)
	}
	env["N_a"] = "many"
	if err := LoadFrom(&c, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err == nil {
		t.Fatal("want the Loader's error")
	}
}
