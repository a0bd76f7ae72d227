package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
)

// The short chaos run of `make test`: the same harness as `make chaos` with
// ~500 messages and one fault of every kind, including a restart of a
// PostgreSQL cluster the test starts from the machine's server binaries (as
// scripts/pg.sh does; as root it runs as the postgres user). CHAOS_SEED=n
// replays a schedule.
func TestChaosShort(t *testing.T) {
	t.Parallel()
	bins := testBinaries(t)
	cfg := Config{
		Scenario:     "chaos",
		Seed:         testSeed(t),
		Messages:     1500,
		Rate:         100,
		Faults:       9,
		DrainTimeout: 90 * time.Second,
		WorkDir:      workDir(t),
		Bins:         bins,
		Log:          newLineLogger(t),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := Run(ctx, cfg)
	require.NoError(t, err)
	t.Logf("seed %d\n%s\nfaults:\n%s", res.Seed, res.Markdown(), res.FaultTimeline())
	require.True(t, res.Pass, "chaos invariants failed (seed %d):\n%s", res.Seed, res.Markdown())
	require.Positive(t, res.FaultCounts["pg-restart"], "PostgreSQL was not restarted")
}

// TestClusterNodeLoss runs the services against a 3-node NATS cluster with R3
// streams (and the EMAIL_ATTEMPTS bucket at R3), SIGKILLs the node leading the
// send stream under load, and checks that nothing accepted is lost and that
// sending went on without the node.
func TestClusterNodeLoss(t *testing.T) {
	t.Parallel()
	bins := testBinaries(t)
	db := pgtest.New(t)
	cfg := Config{
		Scenario:     "cluster",
		Seed:         testSeed(t),
		Messages:     600,
		Rate:         20,
		DrainTimeout: 90 * time.Second,
		Ingests:      2,
		Workers:      2,
		WorkDir:      workDir(t),
		Bins:         bins,
		DatabaseURL:  db.URL,
		Log:          newLineLogger(t),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := Run(ctx, cfg)
	require.NoError(t, err)
	t.Logf("\n%s", res.Markdown())
	require.True(t, res.Pass, "cluster invariants failed:\n%s", res.Markdown())
	require.NotNil(t, res.Cluster)
	require.Positive(t, res.Cluster.AcceptedAfterStop)
	require.Positive(t, res.Cluster.SentAfterStop)
}

var buildOnce = sync.OnceValues(func() (Binaries, error) {
	dir, err := os.MkdirTemp("", "emailsender-chaos-bin-")
	if err != nil {
		return Binaries{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return BuildBinaries(ctx, dir)
})

func testBinaries(t *testing.T) Binaries {
	t.Helper()
	b, err := buildOnce()
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(filepath.Dir(b.Ingest)) })
	return b
}

func testSeed(t *testing.T) uint64 {
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "CHAOS_SEED")
		return n
	}
	return uint64(time.Now().UnixNano())
}

// workDir is a fresh directory that another user (PostgreSQL's) can reach:
// t.TempDir's parent is private to the test's user. It is kept when the test
// fails.
func workDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "emailsender-"+strings.ToLower(t.Name())+"-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(d, 0o755))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("work directory kept: %s", d)
			return
		}
		_ = os.RemoveAll(d)
	})
	return d
}

// lineLogger sends each progress line to t.Log, until the test ends.
type lineLogger struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func newLineLogger(t *testing.T) *lineLogger {
	l := &lineLogger{t: t}
	t.Cleanup(func() { l.mu.Lock(); l.done = true; l.mu.Unlock() })
	return l
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
