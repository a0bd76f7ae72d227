package e2e

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The three service binaries link no test server (pkg/testkit, nats-server,
// go-smtp), and ingest and report do not link the worker: the module layout
// the architecture section describes, checked on what `go list -deps` says.
func TestServiceBinariesLinkNoTestServer(t *testing.T) {
	t.Parallel()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	for _, bin := range []struct {
		dir, pkg string
		forbid   []string
	}{
		{"services/ingest", "./cmd/ingest", []string{"email-sender/services/worker"}},
		{"services/worker", "./cmd/worker", nil},
		{"services/report", "./cmd/report", []string{"email-sender/services/worker"}},
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
				if strings.Contains(dep, f) {
					t.Errorf("%s links %s", bin.dir, dep)
				}
			}
		}
		if n < 50 {
			t.Fatalf("%s: go list -deps listed only %d packages", bin.dir, n)
		}
	}
}
