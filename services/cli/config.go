package cli

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Config is what a command connects with, resolved field by field from flags,
// then the environment, then the profile file, then defaults.
type Config struct {
	Addr       string
	ReportAddr string
	APIKey     string
	TLS        bool
	CA         string
	Output     string
	Timeout    time.Duration
}

// ProfileFile is the configuration file (~/.config/emailsender/config.json):
//
//	{"default_profile": "dev",
//	 "profiles": {"dev": {"addr": "localhost:8081", "report_addr": "localhost:8082",
//	                      "api_key": "es_…", "tls": false}}}
type ProfileFile struct {
	DefaultProfile string             `json:"default_profile"`
	Profiles       map[string]Profile `json:"profiles"`
}

// Profile is one named configuration.
type Profile struct {
	Addr       string `json:"addr"`
	ReportAddr string `json:"report_addr"`
	APIKey     string `json:"api_key"`
	TLS        *bool  `json:"tls"`
	CA         string `json:"ca"`
	Output     string `json:"output"`
	Timeout    string `json:"timeout"`
}

// opt is a flag value that knows whether it was given.
type opt struct {
	v    string
	set  bool
	bool bool
}

func (o *opt) String() string { return o.v }
func (o *opt) Set(v string) error {
	o.v, o.set = v, true
	return nil
}
func (o *opt) IsBoolFlag() bool { return o.bool }

// globals are the connection flags every command takes.
type globals struct {
	addr, reportAddr, apiKey, profile, config, ca, output, timeout opt
	tls                                                            opt
	// stderr receives warnings.
	stderr io.Writer
}

func (g *globals) register(fs *flag.FlagSet) {
	g.tls.bool = true
	fs.Var(&g.addr, "addr", "ingest gRPC address host:port (SendService, AccountService) [EMAILSENDER_ADDR]")
	fs.Var(&g.reportAddr, "report-addr", "report gRPC address (ReportService, WebhookService); default: --addr [EMAILSENDER_REPORT_ADDR]")
	fs.Var(&g.apiKey, "api-key", "API key; prefer the environment or a profile, a flag shows in the process list [EMAILSENDER_API_KEY]")
	fs.Var(&g.profile, "profile", "profile name in the configuration file [EMAILSENDER_PROFILE]")
	fs.Var(&g.config, "config", "configuration file (default ~/.config/emailsender/config.json) [EMAILSENDER_CONFIG]")
	fs.Var(&g.tls, "tls", "use TLS (default true; --tls=false for plaintext development servers) [EMAILSENDER_TLS]")
	fs.Var(&g.ca, "ca", "PEM file of the CA that signs the server certificate [EMAILSENDER_CA]")
	fs.Var(&g.output, "o", "output: table or json [EMAILSENDER_OUTPUT]")
	fs.Var(&g.output, "output", "same as -o")
	fs.Var(&g.timeout, "timeout", "deadline of each call, retries included (default 30s) [EMAILSENDER_TIMEOUT]")
}

// resolve builds the Config: flag > environment > profile > default.
func (g *globals) resolve(getenv func(string) string) (Config, error) {
	pick := func(o opt, env, profile, def string) string {
		if o.set {
			return o.v
		}
		if v := getenv(env); v != "" {
			return v
		}
		if profile != "" {
			return profile
		}
		return def
	}
	p, err := g.loadProfile(getenv)
	if err != nil {
		return Config{}, err
	}
	c := Config{
		Addr:       pick(g.addr, "EMAILSENDER_ADDR", p.Addr, ""),
		ReportAddr: pick(g.reportAddr, "EMAILSENDER_REPORT_ADDR", p.ReportAddr, ""),
		APIKey:     pick(g.apiKey, "EMAILSENDER_API_KEY", p.APIKey, ""),
		CA:         pick(g.ca, "EMAILSENDER_CA", p.CA, ""),
		Output:     pick(g.output, "EMAILSENDER_OUTPUT", p.Output, "table"),
	}
	if c.ReportAddr == "" {
		c.ReportAddr = c.Addr
	}
	profileTLS := ""
	if p.TLS != nil {
		profileTLS = strconv.FormatBool(*p.TLS)
	}
	if g.tls.set && g.tls.v == "" {
		g.tls.v = "true"
	}
	if c.TLS, err = strconv.ParseBool(pick(g.tls, "EMAILSENDER_TLS", profileTLS, "true")); err != nil {
		return Config{}, usageErrorf("tls: want true or false: %v", err)
	}
	if c.Timeout, err = time.ParseDuration(pick(g.timeout, "EMAILSENDER_TIMEOUT", p.Timeout, "30s")); err != nil || c.Timeout <= 0 {
		return Config{}, usageErrorf("timeout: want a positive duration such as 30s")
	}
	if c.Output != "table" && c.Output != "json" {
		return Config{}, usageErrorf("output %q: want table or json", c.Output)
	}
	return c, nil
}

// connection checks what connecting needs.
func (c Config) connection() error {
	if c.Addr == "" {
		return usageErrorf("no server address: give --addr, EMAILSENDER_ADDR or a profile")
	}
	if c.APIKey == "" {
		return usageErrorf("no API key: set EMAILSENDER_API_KEY, a profile's api_key or --api-key")
	}
	return nil
}

// tlsConfig is the TLS configuration, with the CA file's certificates as roots.
func (c Config) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CA == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(c.CA)
	if err != nil {
		return nil, usageErrorf("ca: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, usageErrorf("ca: %s holds no PEM certificate", c.CA)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// loadProfile reads the selected profile. A missing default file is no
// profile; a missing file or profile that was asked for is an error.
func (g *globals) loadProfile(getenv func(string) string) (Profile, error) {
	path, explicit := g.config.v, g.config.set
	if !explicit {
		if path = getenv("EMAILSENDER_CONFIG"); path != "" {
			explicit = true
		} else {
			path = defaultConfigPath(getenv)
		}
	}
	name := g.profile.v
	if !g.profile.set {
		name = getenv("EMAILSENDER_PROFILE")
	}
	if path == "" {
		if name != "" {
			return Profile{}, usageErrorf("profile %q: no configuration file (HOME is not set)", name)
		}
		return Profile{}, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit && name == "" {
		return Profile{}, nil
	}
	if err != nil {
		return Profile{}, usageErrorf("configuration file: %v", err)
	}
	var f ProfileFile
	if err := json.Unmarshal(b, &f); err != nil {
		return Profile{}, usageErrorf("configuration file %s: %v", path, err)
	}
	if name == "" {
		name = f.DefaultProfile
	}
	if name == "" {
		name = "default"
	}
	p, ok := f.Profiles[name]
	if !ok {
		if !g.profile.set && getenv("EMAILSENDER_PROFILE") == "" && f.DefaultProfile == "" {
			return Profile{}, nil // no profile asked for and none called "default"
		}
		return Profile{}, usageErrorf("configuration file %s has no profile %q", path, name)
	}
	if p.APIKey != "" {
		if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
			fmt.Fprintf(g.stderr, "emailsender: warning: configuration file %s holds an API key and is readable by others (chmod 600 it)\n", path)
		}
	}
	return p, nil
}

func defaultConfigPath(getenv func(string) string) string {
	dir := getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home := getenv("HOME")
		if home == "" {
			return ""
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "emailsender", "config.json")
}

// usageError is a mistake in how the command was called: exit code 1.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, a ...any) error {
	return &usageError{msg: fmt.Sprintf(format, a...)}
}
