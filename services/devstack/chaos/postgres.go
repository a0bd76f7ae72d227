package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a throwaway PostgreSQL cluster of the harness, started from the
// machine's server binaries (as scripts/pg.sh does) so that it can be stopped
// and started again at will. As root it runs as the postgres user (initdb and
// postgres refuse root), like scripts/pg.sh.
type Postgres struct {
	binDir string
	data   string
	port   int
	owner  string // empty: the current user
	// URL of the harness database.
	URL string
}

// findPGBin is scripts/pg.sh's find_pg_bin: the newest
// /usr/lib/postgresql/*/bin with initdb and pg_ctl, else initdb on PATH.
func findPGBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best, bestV := "", -1
	for _, d := range dirs {
		if !executable(filepath.Join(d, "initdb")) || !executable(filepath.Join(d, "pg_ctl")) {
			continue
		}
		v, err := strconv.Atoi(strings.SplitN(filepath.Base(filepath.Dir(d)), ".", 2)[0])
		if err == nil && v > bestV {
			best, bestV = d, v
		}
	}
	if best != "" {
		return best, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin or on PATH (Debian: apt-get install postgresql)")
}

func executable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode()&0o111 != 0
}

// StartPostgres creates a cluster in dir (which must not exist yet) and starts it
// on a free port; the database "chaos" is created.
func StartPostgres(ctx context.Context, dir string) (*Postgres, error) {
	bin, err := findPGBin()
	if err != nil {
		return nil, err
	}
	pg := &Postgres{binDir: bin, data: dir}
	if os.Geteuid() == 0 {
		pg.owner = "postgres"
		if _, err := user.Lookup("postgres"); err != nil {
			pg.owner = "nobody"
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if pg.owner != "" {
		u, err := user.Lookup(pg.owner)
		if err != nil {
			return nil, err
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
		// The owner must be able to reach dir through its parents.
		for p := filepath.Dir(dir); p != "/" && p != "."; p = filepath.Dir(p) {
			if err := pg.run(ctx, "test", "-x", p); err != nil {
				return nil, fmt.Errorf("%s cannot reach %s (make its parents world-searchable): %w", pg.owner, dir, err)
			}
		}
	}
	if err := pg.run(ctx, filepath.Join(bin, "initdb"), "-D", dir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return nil, err
	}
	if pg.port, err = freePort(); err != nil {
		return nil, err
	}
	// synchronous_commit stays on: an immediate (crash) stop must not lose a
	// committed transaction. fsync is off: only processes crash here, never the OS.
	conf := fmt.Sprintf("\n# chaos harness\nlisten_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = ''\nmax_connections = 300\nfsync = off\nfull_page_writes = off\n", pg.port)
	f, err := os.OpenFile(filepath.Join(dir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	if _, err := f.WriteString(conf); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	if err := pg.Start(ctx); err != nil {
		return nil, err
	}
	admin := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", pg.port)
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		_ = pg.Stop(ctx, "immediate")
		return nil, err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE chaos"); err != nil {
		_ = pg.Stop(ctx, "immediate")
		return nil, err
	}
	pg.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/chaos?sslmode=disable", pg.port)
	return pg, nil
}

// run runs a command as the cluster's owner, from / (the owner may not be able
// to read the current directory).
func (pg *Postgres) run(ctx context.Context, name string, args ...string) error {
	if pg.owner != "" {
		args = append([]string{"-u", pg.owner, "--", name}, args...)
		name = "runuser"
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = "/"
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// Start starts the server and waits until it accepts connections.
func (pg *Postgres) Start(ctx context.Context) error {
	return pg.run(ctx, filepath.Join(pg.binDir, "pg_ctl"), "-D", pg.data, "-l", filepath.Join(pg.data, "server.log"), "-w", "-t", "60", "start")
}

// Stop stops the server: mode "fast" (clean shutdown) or "immediate" (the
// processes quit at once and the next start runs crash recovery).
func (pg *Postgres) Stop(ctx context.Context, mode string) error {
	return pg.run(ctx, filepath.Join(pg.binDir, "pg_ctl"), "-D", pg.data, "-m", mode, "-w", "-t", "60", "stop")
}

// Close stops the server if it runs.
func (pg *Postgres) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := os.Stat(filepath.Join(pg.data, "postmaster.pid")); err == nil {
		_ = pg.Stop(ctx, "immediate")
	}
}

// LogTail is the end of the server log.
func (pg *Postgres) LogTail() string {
	b, _ := os.ReadFile(filepath.Join(pg.data, "server.log"))
	lines := strings.Split(string(b), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
