package cli

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, []byte(`{"default_profile":"dev","profiles":{
		"dev":{"addr":"dev:8081","report_addr":"dev:8082","api_key":"es_profile","tls":false,"timeout":"5s"},
		"prod":{"addr":"prod:443","api_key":"es_prod"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		args  []string
		env   map[string]string
		want  Config
		error string
	}{
		{"profile file", nil, map[string]string{"EMAILSENDER_CONFIG": path},
			Config{Addr: "dev:8081", ReportAddr: "dev:8082", APIKey: "es_profile", TLS: false, Output: "table", Timeout: 5 * time.Second}, ""},
		{"environment over profile", nil, map[string]string{"EMAILSENDER_CONFIG": path, "EMAILSENDER_ADDR": "env:1", "EMAILSENDER_API_KEY": "es_env", "EMAILSENDER_TLS": "true"},
			Config{Addr: "env:1", ReportAddr: "dev:8082", APIKey: "es_env", TLS: true, Output: "table", Timeout: 5 * time.Second}, ""},
		{"flags over environment", []string{"--addr", "flag:1", "--tls=false", "-o", "json", "--timeout", "1m"}, map[string]string{"EMAILSENDER_CONFIG": path, "EMAILSENDER_ADDR": "env:1", "EMAILSENDER_TLS": "true"},
			Config{Addr: "flag:1", ReportAddr: "dev:8082", APIKey: "es_profile", TLS: false, Output: "json", Timeout: time.Minute}, ""},
		{"named profile; report defaults to addr", []string{"--config", path}, map[string]string{"EMAILSENDER_PROFILE": "prod"},
			Config{Addr: "prod:443", ReportAddr: "prod:443", APIKey: "es_prod", TLS: true, Output: "table", Timeout: 30 * time.Second}, ""},
		{"no file at the default path", nil, map[string]string{"HOME": dir, "EMAILSENDER_ADDR": "a:1"},
			Config{Addr: "a:1", ReportAddr: "a:1", TLS: true, Output: "table", Timeout: 30 * time.Second}, ""},
		{"missing profile", []string{"--profile", "staging"}, map[string]string{"EMAILSENDER_CONFIG": path}, Config{}, `no profile "staging"`},
		{"missing explicit file", []string{"--config", filepath.Join(dir, "nope.json")}, nil, Config{}, "nope.json"},
		{"bad output", []string{"-o", "yaml"}, map[string]string{"HOME": dir}, Config{}, "output"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &runner{env: Env{Getenv: func(k string) string { return tc.env[k] }, Stderr: io.Discard}}
			r.g.stderr = io.Discard
			fs := r.flagSet("test")
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			got, err := r.g.resolve(r.env.Getenv)
			if tc.error != "" {
				if err == nil || !strings.Contains(err.Error(), tc.error) {
					t.Fatalf("err = %v, want one containing %q", err, tc.error)
				}
				if exitCode(err) != ExitUsage {
					t.Fatalf("exit code %d, want %d", exitCode(err), ExitUsage)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("config = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestHelpListsTheExitCodes(t *testing.T) {
	var out strings.Builder
	code := Run(t.Context(), []string{"help"}, Env{Getenv: func(string) string { return "" }, Stdout: &out, Stderr: io.Discard})
	if code != ExitOK {
		t.Fatalf("help: exit %d", code)
	}
	for _, want := range []string{"Exit codes:", "3  unauthenticated", "4  not found", "5  unavailable", "EMAILSENDER_API_KEY"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
}
