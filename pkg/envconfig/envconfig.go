// Package envconfig loads a service's typed configuration from environment
// variables named by struct tags:
//
//	type Config struct {
//		Addr    string        `env:"INGEST_ADDR" default:":8080" help:"gRPC listen address"`
//		Timeout time.Duration `env:"SEND_TIMEOUT" default:"30s"`
//		DB      envconfig.Postgres
//	}
//
// Nested structs are walked. Supported kinds: string, bool, ints, floats,
// time.Duration and []string (comma separated).
package envconfig

import (
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Lookup finds a variable; os.LookupEnv in production, a map in tests.
type Lookup func(string) (string, bool)

// Load fills dst (a pointer to a struct) from the environment.
func Load(dst any) error { return LoadFrom(dst, os.LookupEnv) }

// LoadFrom fills dst using lookup.
func LoadFrom(dst any, lookup Lookup) error {
	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("envconfig: want pointer to struct, got %T", dst)
	}
	return load(v.Elem(), lookup)
}

var durationType = reflect.TypeOf(time.Duration(0))

// Loader is a field type that loads itself: variables whose names are known
// only at run time (one per provider kind, say). Load calls LoadEnv on a
// pointer to the field (which needs no env tag).
type Loader interface {
	LoadEnv(Lookup) error
}

// Describer is a Loader that lists its variables, for Describe.
type Describer interface {
	DescribeEnv() []Var
}

var (
	loaderType    = reflect.TypeFor[Loader]()
	describerType = reflect.TypeFor[Describer]()
)

func load(v reflect.Value, lookup Lookup) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		fv := v.Field(i)
		if !f.IsExported() {
			continue
		}
		if reflect.PointerTo(f.Type).Implements(loaderType) {
			if err := fv.Addr().Interface().(Loader).LoadEnv(lookup); err != nil {
				return fmt.Errorf("envconfig: %w", err)
			}
			continue
		}
		name := f.Tag.Get("env")
		if name == "" {
			if fv.Kind() == reflect.Struct && f.Type != durationType {
				if err := load(fv, lookup); err != nil {
					return err
				}
			}
			continue
		}
		raw, ok := lookup(name)
		if !ok || raw == "" {
			def, has := f.Tag.Lookup("default")
			if !has {
				continue
			}
			raw = def
		}
		if err := set(fv, raw); err != nil {
			return fmt.Errorf("envconfig: %s=%q: %w", name, raw, err)
		}
	}
	return nil
}

func set(fv reflect.Value, raw string) error {
	if fv.Type() == durationType {
		d, err := time.ParseDuration(raw)
		if err != nil {
			return err
		}
		fv.SetInt(int64(d))
		return nil
	}
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return err
		}
		fv.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, fv.Type().Bits())
		if err != nil {
			return err
		}
		fv.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(raw, 10, fv.Type().Bits())
		if err != nil {
			return err
		}
		fv.SetUint(n)
	case reflect.Float32, reflect.Float64:
		n, err := strconv.ParseFloat(raw, fv.Type().Bits())
		if err != nil {
			return err
		}
		fv.SetFloat(n)
	case reflect.Slice:
		if fv.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported slice type %s", fv.Type())
		}
		var parts []string
		for _, p := range strings.Split(raw, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		fv.Set(reflect.ValueOf(parts))
	case reflect.Pointer:
		// A pointer field tells "unset" (nil) from a zero value, for defaults
		// that are not the zero value (e.g. a bool defaulting to true).
		p := reflect.New(fv.Type().Elem())
		if err := set(p.Elem(), raw); err != nil {
			return err
		}
		fv.Set(p)
	default:
		return fmt.Errorf("unsupported type %s", fv.Type())
	}
	return nil
}

// Postgres is the database connection every service shares.
type Postgres struct {
	URL      string `env:"DATABASE_URL" default:"postgres://postgres@127.0.0.1:5432/emailsender?sslmode=disable" help:"PostgreSQL connection URL"`
	MaxConns int32  `env:"DATABASE_MAX_CONNS" default:"16" help:"connection pool size"`
}

// NATS is the JetStream connection every service shares.
type NATS struct {
	URL string `env:"NATS_URL" default:"nats://127.0.0.1:4222" help:"NATS server URL(s), comma separated"`
	// Replicas of the streams: 1 on a single server, 3 on a cluster.
	StreamReplicas int `env:"NATS_STREAM_REPLICAS" default:"1" help:"JetStream stream replicas (3 in a cluster)"`
	// Credentials: at most one of user/password, token, nkey seed file or
	// creds file (a user JWT with its seed).
	User      string `env:"NATS_USER" help:"NATS user name (with NATS_PASSWORD)"`
	Password  string `env:"NATS_PASSWORD" help:"NATS password"`
	Token     string `env:"NATS_TOKEN" help:"NATS authentication token"`
	NKeyFile  string `env:"NATS_NKEY_FILE" help:"file holding the NATS nkey seed of this service"`
	CredsFile string `env:"NATS_CREDS_FILE" help:"NATS credentials file (user JWT and nkey seed)"`
	// TLS: a CA file makes the connection verify the server against it (and
	// require TLS); a certificate and key authenticate this service.
	TLSCAFile   string `env:"NATS_TLS_CA_FILE" help:"CA certificate(s) that sign the NATS server's certificate (PEM); set: TLS required"`
	TLSCertFile string `env:"NATS_TLS_CERT_FILE" help:"client certificate for NATS (PEM), with NATS_TLS_KEY_FILE"`
	TLSKeyFile  string `env:"NATS_TLS_KEY_FILE" help:"client key for NATS (PEM)"`
}

// Log configures logging.
type Log struct {
	Level string `env:"LOG_LEVEL" default:"info" help:"debug, info, warn or error"`
}

// Metrics configures what every service serves beside /metrics on its metrics
// address (INGEST_METRICS_ADDR, WORKER_METRICS_ADDR, REPORT_METRICS_ADDR).
type Metrics struct {
	PProf bool `env:"METRICS_PPROF" default:"false" help:"also serve /debug/pprof/ on the metrics address (keep it private)"`
}

// FillDefaults sets each named field of the struct dst points to, when it
// holds its zero value (or, for numbers and durations, a negative one), to the
// default its tag names. It is how a config built in code (tests, the
// all-in-one process) gets the same defaults as one loaded from the
// environment, from one source: the tags. Fields left out keep their zero
// value on purpose (e.g. an address whose empty value means "off").
func FillDefaults(dst any, fields ...string) error {
	v := reflect.ValueOf(dst)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("envconfig: want pointer to struct, got %T", dst)
	}
	v = v.Elem()
	for _, name := range fields {
		f, ok := v.Type().FieldByName(name)
		if !ok {
			return fmt.Errorf("envconfig: %s has no field %s", v.Type(), name)
		}
		def, ok := f.Tag.Lookup("default")
		if !ok {
			return fmt.Errorf("envconfig: field %s has no default tag", name)
		}
		fv := v.FieldByIndex(f.Index)
		if !unset(fv) {
			continue
		}
		if err := set(fv, def); err != nil {
			return fmt.Errorf("envconfig: default of %s %q: %w", name, def, err)
		}
	}
	return nil
}

func unset(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int() <= 0
	case reflect.Float32, reflect.Float64:
		return v.Float() <= 0
	default:
		return v.IsZero()
	}
}
