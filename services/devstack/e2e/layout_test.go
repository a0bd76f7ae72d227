package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The service binaries link no test server (pkg/testkit, nats-server,
// go-smtp; inbound alone links go-smtp, as its SMTP server, and its IMAP
// poller links go-imap's client, never its server), and ingest,
// report and inbound do not link the worker: the module layout the
// architecture section describes, checked on what `go list -deps` says.
func TestServiceBinariesLinkNoTestServer(t *testing.T) {
	t.Parallel()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	for _, bin := range []struct {
		dir, pkg string
		forbid   []string
		allow    string
	}{
		{"services/ingest", "./cmd/ingest", []string{"email-sender/services/worker"}, ""},
		{"services/worker", "./cmd/worker", nil, ""},
		{"services/report", "./cmd/report", []string{"email-sender/services/worker"}, ""},
		{"services/inbound", "./cmd/inbound", []string{"email-sender/services/worker", "email-sender/services/report", "go-imap/v2/imapserver"}, "emersion/go-smtp"},
	} {
		cmd := exec.Command("go", "list", "-deps", bin.pkg)
		cmd.Dir = filepath.Join(root, bin.dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", bin.pkg, err, out)
		}
		forbid := append([]string{"email-sender/pkg/testkit", "nats-io/nats-server", "emersion/go-smtp"}, bin.forbid...)
		n := 0
		for _, dep := range strings.Fields(string(out)) {
			n++
			for _, f := range forbid {
				if f != bin.allow && strings.Contains(dep, f) {
					t.Errorf("%s links %s", bin.dir, dep)
				}
			}
		}
		if n < 50 {
			t.Fatalf("%s: go list -deps listed only %d packages", bin.dir, n)
		}
	}
}

// docker-compose publishes nothing that has no authentication beyond
// loopback: Mailpit, Jaeger and every /metrics port bind 127.0.0.1.
func TestComposePublishesUnauthenticatedPortsOnLoopbackOnly(t *testing.T) {
	t.Parallel()
	_, file, _, _ := runtime.Caller(0)
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "..", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Ports []string `yaml:"ports"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatal(err)
	}
	unauthenticated := map[string]bool{"9081": true, "9082": true, "9083": true, "9084": true, "8025": true, "16686": true}
	seen := 0
	for name, svc := range compose.Services {
		for _, p := range svc.Ports {
			parts := strings.Split(p, ":")
			container := parts[len(parts)-1]
			if !unauthenticated[container] {
				continue
			}
			seen++
			if len(parts) != 3 || parts[0] != "127.0.0.1" {
				t.Errorf("service %s publishes %q beyond loopback", name, p)
			}
		}
	}
	if seen != len(unauthenticated) {
		t.Fatalf("found %d of the %d unauthenticated ports in docker-compose.yml", seen, len(unauthenticated))
	}
}
