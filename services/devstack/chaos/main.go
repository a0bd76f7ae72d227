// Command chaos is the fault injection harness (`make chaos`). It runs the
// email sender as separate processes (2 ingest, 2 SMTP workers, report,
// nats-server, a PostgreSQL cluster of its own) against an SMTP sink in this
// process, drives a steady load over gRPC, and meanwhile SIGKILLs workers (and
// now and then an ingest replica or the report), restarts nats-server and
// PostgreSQL, and makes the sink answer 421/451/550 or drop connections, on a
// seeded random schedule. Then it waits for the system to drain and checks:
// every accepted message is stored and in a terminal state, every message the
// sink got was accepted, every SENT message is at the sink, and duplicates only
// occur in the kill-after-accept window. It prints a summary table and writes
// <out>/<name>.json and .md; it exits 1 when an invariant fails.
//
// With -scenario cluster it runs against a 3-node NATS cluster with R3 streams
// instead and SIGKILLs the node leading the send stream under load.
//
//	go run ./services/devstack/chaos [-seed N] [-messages 3000] [-rate 15] [-faults 24]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	os.Exit(run())
}

func run() int {
	var (
		cfg     Config
		out     string
		name    string
		keep    bool
		workdir string
	)
	flag.StringVar(&cfg.Scenario, "scenario", "chaos", "chaos or cluster")
	flag.Uint64Var(&cfg.Seed, "seed", 0, "random seed of the fault schedule (0: from the clock; printed)")
	flag.IntVar(&cfg.Messages, "messages", 0, "messages to send (0: 12000)")
	flag.Float64Var(&cfg.Rate, "rate", 0, "messages per second (0: 150)")
	flag.IntVar(&cfg.Faults, "faults", 0, "faults to inject during the load, chaos scenario (0: 30)")
	flag.DurationVar(&cfg.DrainTimeout, "drain-timeout", 3*time.Minute, "longest wait for every accepted message to end")
	flag.StringVar(&out, "out", "results", "directory for <name>.json and <name>.md")
	flag.StringVar(&name, "name", "", "result file name (default <scenario>-latest)")
	flag.StringVar(&workdir, "workdir", "", "work directory (default: a new temporary one)")
	flag.BoolVar(&keep, "keep", false, "keep the work directory (logs, stores) even when the run passes")
	flag.Parse()
	if name == "" {
		name = cfg.Scenario + "-latest"
	}
	cfg.Log = os.Stderr

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if workdir == "" {
		d, err := os.MkdirTemp("", "emailsender-chaos-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "chaos:", err)
			return 2
		}
		workdir = d
	}
	cfg.WorkDir = workdir
	fmt.Fprintf(os.Stderr, "chaos: building the services and nats-server into %s/bin\n", workdir)
	bins, err := BuildBinaries(ctx, filepath.Join(workdir, "bin"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}
	cfg.Bins = bins
	res, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		fmt.Fprintf(os.Stderr, "chaos: logs kept in %s\n", workdir)
		return 2
	}
	fmt.Println()
	fmt.Print(res.Markdown())
	fmt.Printf("\nfaults:\n%s", res.FaultTimeline())
	if err := res.Write(out, name); err != nil {
		fmt.Fprintln(os.Stderr, "chaos: write results:", err)
		return 2
	}
	fmt.Printf("\nresults: %s, %s\n", filepath.Join(out, name+".json"), filepath.Join(out, name+".md"))
	if !res.Pass || keep {
		fmt.Fprintf(os.Stderr, "chaos: logs kept in %s\n", workdir)
	} else {
		_ = os.RemoveAll(workdir)
	}
	if !res.Pass {
		return 1
	}
	return 0
}
