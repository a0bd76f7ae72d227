// Command bench is the benchmark harness behind `make bench`: it starts the
// whole system on real parts (PostgreSQL from DATABASE_URL in a schema of its
// own, an in-process nats-server with file storage, SMTP sinks on TCP, the
// three services) and measures, in one run on one machine:
//
//   - ingest: accepted SendEmail/s and latency at 1, 16, 64 and 256 concurrent
//     gRPC clients, and SendBatch messages/s; next to each, two limits at the
//     same concurrency, without gRPC or validation, one message per caller at
//     a time: the same rows inserted with pgx and the same payload published
//     to JetStream, and the plain limit, one INSERT of the message and one
//     awaited publish;
//   - end to end (accept → SENT at a local SMTP sink) for 1 KB and 100 KB
//     messages, and the limit: go-mail sending the same messages straight to
//     the same sink over as many connections as the provider's pool;
//   - end to end against a sink that takes 200 ms per message;
//   - webhook delivery: events/s posted, signed, to a local receiver (events
//     published to EMAIL_EVENTS, fanned out into PostgreSQL by the report);
//   - WatchEvents: event-to-client latency of a live watch;
//   - the memory (VmRSS, VmHWM) of each service run as its own process, at rest
//     and with 100k messages accepted and waiting.
//
// CPU and allocation profiles of the in-process phases go to <out>/profiles;
// samples carry a pprof label "part" (ingest, worker, report, nats, load,
// limit) so `go tool pprof -tags` splits them by component.
//
// It writes <out>/bench-<date>.json, <out>/bench-latest.json and
// <out>/bench-latest.md. scripts/bench.sh runs it (make bench).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
)

type options struct {
	out        string
	ingestDur  time.Duration
	batchDur   time.Duration
	e2eSmall   int
	e2eLarge   int
	e2eSlow    int
	limitDur   time.Duration
	queued     int
	skipMemory bool
	only       string
	// ingestClients are the client counts of the ingest points; noLimits
	// skips the limits next to them and profileAll profiles every point.
	ingestClients string
	noLimits      bool
	profileAll    bool

	webhookEvents int
	webhookRuns   int
	watchEvents   int
}

func main() {
	var o options
	flag.StringVar(&o.out, "out", "results", "results directory")
	flag.DurationVar(&o.ingestDur, "ingest-duration", 8*time.Second, "measured time per ingest point (and per limit point)")
	flag.DurationVar(&o.batchDur, "batch-duration", 8*time.Second, "measured time of the SendBatch run")
	flag.IntVar(&o.e2eSmall, "e2e-1k", 10000, "messages of the 1 KB end-to-end run")
	flag.IntVar(&o.e2eLarge, "e2e-100k", 3000, "messages of the 100 KB end-to-end run")
	flag.IntVar(&o.e2eSlow, "e2e-slow", 8000, "messages of the end-to-end run against the 200 ms sink")
	flag.DurationVar(&o.limitDur, "limit-duration", 5*time.Second, "time of each direct go-mail limit run")
	flag.IntVar(&o.queued, "queued", 100000, "messages queued for the memory measurement")
	flag.BoolVar(&o.skipMemory, "skip-memory", false, "skip the per-process memory phase")
	flag.IntVar(&o.webhookEvents, "webhook-events", 20000, "events of each webhook delivery run")
	flag.IntVar(&o.webhookRuns, "webhook-runs", 3, "webhook delivery runs (the median is the result)")
	flag.IntVar(&o.watchEvents, "watch-events", 2000, "events of the WatchEvents latency run")
	flag.StringVar(&o.only, "only", "", "run only these phases (comma separated: ingest, e2e, webhook, watch, memory)")
	flag.StringVar(&o.ingestClients, "ingest-clients", "1,16,64,256", "client counts of the ingest points (comma separated)")
	flag.BoolVar(&o.noLimits, "ingest-no-limits", false, "measure SendEmail only, without the limits next to it")
	flag.BoolVar(&o.profileAll, "ingest-profile-all", false, "profile every ingest point (not only 64 clients)")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, log); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, log *slog.Logger) error {
	start := time.Now()
	if err := os.MkdirAll(filepath.Join(o.out, "profiles"), 0o755); err != nil {
		return err
	}
	res := &Results{
		Started:   start.UTC().Format(time.RFC3339),
		Machine:   machineInfo(),
		GoVersion: runtime.Version(),
		Targets:   defaultTargets(),
	}
	env, err := newEnv(ctx, o, log)
	if err != nil {
		return err
	}
	defer env.close()
	res.Setup = env.setup

	want := phases(o.only)
	if want["ingest"] {
		if err := runIngest(ctx, env, o, res); err != nil {
			return fmt.Errorf("ingest phase: %w", err)
		}
	}
	if want["e2e"] {
		if err := runE2E(ctx, env, o, res); err != nil {
			return fmt.Errorf("end-to-end phase: %w", err)
		}
	}
	if want["webhook"] {
		if err := runWebhook(ctx, env, o, res); err != nil {
			return fmt.Errorf("webhook phase: %w", err)
		}
	}
	if want["watch"] {
		if err := runWatch(ctx, env, o, res); err != nil {
			return fmt.Errorf("WatchEvents phase: %w", err)
		}
	}
	env.stopServices()
	if want["memory"] && !o.skipMemory {
		if err := runMemory(ctx, env, o, res); err != nil {
			return fmt.Errorf("memory phase: %w", err)
		}
	}
	res.DurationSeconds = time.Since(start).Seconds()
	res.evaluate()
	return writeResults(o.out, start, res)
}

func phases(only string) map[string]bool {
	all := map[string]bool{"ingest": true, "e2e": true, "webhook": true, "watch": true, "memory": true}
	if only == "" {
		return all
	}
	out := map[string]bool{}
	for _, p := range splitComma(only) {
		out[p] = true
	}
	return out
}

func writeResults(dir string, start time.Time, res *Results) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	dated := filepath.Join(dir, "bench-"+start.UTC().Format("2006-01-02T150405Z")+".json")
	for _, p := range []string{dated, filepath.Join(dir, "bench-latest.json")} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
	}
	md := res.markdown()
	if err := os.WriteFile(filepath.Join(dir, "bench-latest.md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Print(md)
	return nil
}
