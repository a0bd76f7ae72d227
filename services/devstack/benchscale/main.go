// Command benchscale is the harness behind `make bench-scale`: it measures the
// report's queries at scale.
//
// It seeds a database of its own (default: bench_scale on the server of
// DATABASE_URL) with every migration applied and, by default, 10 million
// messages for 1,000 accounts, one of which holds half of them, with their
// recipients (1–3 each) and events (1–4 each), created over the 60 days before
// the seed. A re-run whose seed parameters match the marker stored in that
// database reuses it (new migrations are applied to it, as they would be in
// production), so only the first run pays for the seeding.
//
// It then starts the real report service in process on that database (an
// in-process nats-server provides its JetStream), creates an API key for the
// big account and for a small one, and calls ReportService over gRPC with
// pkg/client, as integrators do: GetMessage, every filter shape of
// ListMessages (status, provider, recipient, tag, time range, deep cursor
// pages) and GetStats (hour and day buckets over 30 days), each a number of
// times after a warm-up, and reports p50/p95 per shape and account. Every SQL
// statement the report ran for one call of each shape is recorded (a pgx
// tracer on the report's pool, keyed by a gRPC metadata header the harness
// sends) and explained with EXPLAIN (ANALYZE, BUFFERS).
//
// It writes <out>/bench-scale.json and <out>/bench-scale.md and prints the
// table. scripts/bench-scale.sh runs it (make bench-scale).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

type options struct {
	out      string
	database string

	seed seedParams
	// seedWorkers is how many days are seeded at once.
	seedWorkers int
	// reseed drops and seeds the database even when its marker matches.
	reseed bool

	calls  int
	warmup int
	only   string
	target time.Duration
	// consoleTarget is the first-byte p95 each console page must stay under.
	consoleTarget time.Duration
	// cpuProfile, when set, is where the CPU profile of the measured calls
	// (client and report service alike) goes.
	cpuProfile string
}

func main() {
	var o options
	flag.StringVar(&o.out, "out", "results", "results directory")
	flag.StringVar(&o.database, "database", "bench_scale", "database to seed and measure (created on the server of DATABASE_URL)")
	flag.Int64Var(&o.seed.Messages, "messages", 10_000_000, "messages to seed")
	flag.IntVar(&o.seed.Accounts, "accounts", 1000, "accounts to seed")
	flag.Float64Var(&o.seed.BigShare, "big-share", 0.5, "share of the messages that belong to the big account")
	flag.IntVar(&o.seed.Days, "days", 60, "days the messages' creation times spread over, ending at the seed time")
	flag.IntVar(&o.seedWorkers, "seed-workers", 2, "days seeded concurrently")
	flag.BoolVar(&o.reseed, "reseed", false, "drop and seed the database even when its seed marker matches")
	flag.IntVar(&o.calls, "calls", 50, "measured calls per shape and account")
	flag.IntVar(&o.warmup, "warmup", 5, "unmeasured calls per shape and account before the measured ones")
	flag.StringVar(&o.only, "only", "", "measure only the shapes whose names contain one of these (comma separated); console selects the console phase, console-<page> one of its pages")
	flag.DurationVar(&o.target, "target", 50*time.Millisecond, "p95 each shape must stay under")
	flag.DurationVar(&o.consoleTarget, "console-target", 200*time.Millisecond, "first-byte p95 each console page must stay under")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the measurements (this process: the client and the report service) to this file")
	flag.Parse()
	o.seed.Version = seedVersion

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, log); err != nil {
		fmt.Fprintln(os.Stderr, "bench-scale:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, log *slog.Logger) error {
	start := time.Now()
	if err := o.seed.validate(); err != nil {
		return err
	}
	db, err := openSeeded(ctx, o, log)
	if err != nil {
		return err
	}
	defer db.close()

	res := &Results{
		Started:         start.UTC().Format(time.RFC3339),
		Machine:         machineInfo(),
		Seed:            db.marker,
		TargetMS:        ms(o.target),
		ConsoleTargetMS: ms(o.consoleTarget),
	}
	svc, err := startReport(ctx, db, log)
	if err != nil {
		return err
	}
	defer svc.stop()
	if err := settle(ctx, db, log); err != nil {
		return err
	}
	if res.Setup, err = db.describe(ctx); err != nil {
		return err
	}
	shapes, accounts, err := buildShapes(ctx, db, svc)
	if err != nil {
		return err
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	for _, sh := range filterShapes(shapes, o.only) {
		m, err := measure(ctx, svc, sh, o)
		if err != nil {
			return fmt.Errorf("shape %s (%s): %w", sh.name, sh.account.label, err)
		}
		log.Info("measured", "shape", sh.name, "account", sh.account.label, "p50_ms", m.P50ms, "p95_ms", m.P95ms, "rows", m.Rows)
		res.Shapes = append(res.Shapes, m)
	}
	if err := runConsole(ctx, svc, accounts, db.marker.Reference, o, res, log); err != nil {
		return err
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		res.Machine["loadavg_at_end"] = strings.TrimSpace(string(b))
	}
	res.DurationSeconds = time.Since(start).Seconds()
	return writeResults(o.out, res)
}
