package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Results is everything one run measured (bench-scale.json).
type Results struct {
	Started         string            `json:"started"`
	DurationSeconds float64           `json:"duration_seconds"`
	Machine         map[string]string `json:"machine"`
	Setup           map[string]string `json:"setup"`
	Seed            seedMarker        `json:"seed"`
	TargetMS        float64           `json:"target_p95_ms"`
	Shapes          []ShapeResult     `json:"shapes"`
	// ConsoleTargetMS and Console: the console phase (console.go).
	ConsoleTargetMS float64         `json:"console_target_first_byte_p95_ms"`
	Console         []ConsoleResult `json:"console,omitempty"`
}

// ShapeResult is one shape measured for one account.
type ShapeResult struct {
	Name    string  `json:"name"`
	RPC     string  `json:"rpc"`
	Account string  `json:"account"`
	Request string  `json:"request"`
	Calls   int     `json:"calls"`
	P50ms   float64 `json:"p50_ms"`
	P95ms   float64 `json:"p95_ms"`
	MaxMs   float64 `json:"max_ms"`
	// Rows: messages (ListMessages), buckets (GetStats), or the message and
	// its events (GetMessage) of the last call.
	Rows int  `json:"rows"`
	Met  bool `json:"met"`
	// SlowPath: a request off the fast path, not held to the target.
	SlowPath bool      `json:"slow_path,omitempty"`
	Explains []Explain `json:"explains"`
}

// Explain is one statement the shape ran and its EXPLAIN (ANALYZE, BUFFERS).
type Explain struct {
	SQL  string   `json:"sql"`
	Args []string `json:"args"`
	// Mode says how the report ran it, hence which plan is shown.
	Mode string   `json:"mode"`
	Plan []string `json:"plan"`
}

// describe is the database's setup and size.
func (d *seededDB) describe(ctx context.Context) (map[string]string, error) {
	out := map[string]string{"database": d.cfg.ConnConfig.Database}
	for _, s := range []string{"server_version", "shared_buffers", "work_mem", "effective_cache_size", "random_page_cost", "jit"} {
		var v string
		if err := d.pool.QueryRow(ctx, "SHOW "+s).Scan(&v); err != nil {
			return nil, fmt.Errorf("show %s: %w", s, err)
		}
		out["postgres_"+s] = v
	}
	for _, t := range []string{"messages", "recipients", "events", "message_stats"} {
		var exists bool
		if err := d.pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, t).Scan(&exists); err != nil || !exists {
			continue
		}
		var heap, idx int64
		// The table and its partitions, if any.
		if err := d.pool.QueryRow(ctx, `
			SELECT coalesce(sum(pg_table_size(r)), 0)::bigint, coalesce(sum(pg_indexes_size(r)), 0)::bigint
			FROM (SELECT relid AS r FROM pg_partition_tree($1::regclass) UNION SELECT $1::regclass) t`, t).Scan(&heap, &idx); err != nil {
			return nil, fmt.Errorf("size of %s: %w", t, err)
		}
		out["size_"+t] = fmt.Sprintf("%s + %s indexes", mb(heap), mb(idx))
	}
	return out, nil
}

func mb(b int64) string {
	if b >= 10<<30 {
		return fmt.Sprintf("%.1f GB", float64(b)/(1<<30))
	}
	return fmt.Sprintf("%.0f MB", float64(b)/(1<<20))
}

func machineInfo() map[string]string {
	m := map[string]string{"cpus": fmt.Sprint(runtime.NumCPU()), "go": runtime.Version()}
	m["host"], _ = os.Hostname()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m["loadavg_at_start"] = strings.TrimSpace(string(b))
	}
	return m
}

func writeResults(dir string, res *Results) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bench-scale.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	table, full := res.markdown()
	if err := os.WriteFile(filepath.Join(dir, "bench-scale.md"), []byte(full), 0o644); err != nil {
		return err
	}
	fmt.Print(table)
	return nil
}

// markdown returns the summary (the table, what README shows) and the whole
// report (the table and every EXPLAIN).
func (r *Results) markdown() (table, full string) {
	var b strings.Builder
	p := r.Seed.Params
	fmt.Fprintf(&b, "Measured by `make bench-scale` on %s (%s CPUs, %s), %s; PostgreSQL %s (shared_buffers %s, work_mem %s). ",
		r.Machine["host"], r.Machine["cpus"], r.Machine["go"], r.Started[:10], r.Setup["postgres_server_version"],
		r.Setup["postgres_shared_buffers"], r.Setup["postgres_work_mem"])
	fmt.Fprintf(&b, "Seeded: %d messages (%d recipients, %d events) for %d accounts over %d days, the big account holding %.0f%%, in %.1f minutes",
		r.Seed.Rows["messages"], r.Seed.Rows["recipients"], r.Seed.Rows["events"], p.Accounts, p.Days, p.BigShare*100, r.Seed.SeedSeconds/60)
	var sizes []string
	for _, t := range []string{"messages", "recipients", "events", "message_stats"} {
		if s := r.Setup["size_"+t]; s != "" {
			sizes = append(sizes, t+" "+s)
		}
	}
	fmt.Fprintf(&b, "; on disk: %s. ", strings.Join(sizes, ", "))
	var calls int
	for _, s := range r.Shapes {
		calls = s.Calls
		break
	}
	if len(r.Shapes) > 0 {
		fmt.Fprintf(&b, "Each shape: %d calls one after another over gRPC (pkg/client, API key) to the report service in process, after a warm-up; p50/p95 in ms; target p95 < %.0f ms. ", calls, r.TargetMS)
	}
	fmt.Fprintf(&b, "The machine is shared: load average %s at the start of the run, %s at its end.\n\n",
		loadavg(r.Machine["loadavg_at_start"]), loadavg(r.Machine["loadavg_at_end"]))

	type pair struct{ big, small *ShapeResult }
	var order []string
	byName := map[string]*pair{}
	for i := range r.Shapes {
		s := &r.Shapes[i]
		pr := byName[s.Name]
		if pr == nil {
			pr = &pair{}
			byName[s.Name] = pr
			order = append(order, s.Name)
		}
		if s.Account == "big" {
			pr.big = s
		} else {
			pr.small = s
		}
	}
	if len(r.Shapes) == 0 {
		b.WriteString("(No gRPC shape measured in this run.)\n")
		r.consoleMarkdown(&b)
		table = b.String()
		return table, r.markdownFull(table)
	}
	fmt.Fprintf(&b, "| shape | request | big p50 | big p95 | small p50 | small p95 | rows (big) | |\n|---|---|---:|---:|---:|---:|---:|---|\n")
	allMet, anySlow := true, false
	for _, name := range order {
		pr := byName[name]
		cell := func(s *ShapeResult, f func(*ShapeResult) float64) string {
			if s == nil {
				return "–"
			}
			return fmt.Sprintf("%.2f", f(s))
		}
		met := true
		var req, rows string
		for _, s := range []*ShapeResult{pr.big, pr.small} {
			if s != nil {
				met = met && s.Met
				if req == "" {
					req = s.Request
				}
			}
		}
		if pr.big != nil {
			rows = fmt.Sprint(pr.big.Rows)
		}
		slow := (pr.big != nil && pr.big.SlowPath) || (pr.small != nil && pr.small.SlowPath)
		verdict := "met"
		switch {
		case slow:
			verdict = "slow path, no target"
		case !met:
			verdict = "**missed**"
		}
		allMet = allMet && (met || slow)
		anySlow = anySlow || slow
		fmt.Fprintf(&b, "| %s | `%s` | %s | %s | %s | %s | %s | %s |\n", name, shorten(req, 90),
			cell(pr.big, func(s *ShapeResult) float64 { return s.P50ms }), cell(pr.big, func(s *ShapeResult) float64 { return s.P95ms }),
			cell(pr.small, func(s *ShapeResult) float64 { return s.P50ms }), cell(pr.small, func(s *ShapeResult) float64 { return s.P95ms }),
			rows, verdict)
	}
	if allMet {
		fmt.Fprintf(&b, "\nEvery shape met p95 < %.0f ms for both accounts", r.TargetMS)
		if anySlow {
			b.WriteString(" (the slow path has no target)")
		}
		b.WriteString(".\n")
	} else {
		fmt.Fprintf(&b, "\nSome shapes missed p95 < %.0f ms.\n", r.TargetMS)
	}
	r.consoleMarkdown(&b)
	table = b.String()
	return table, r.markdownFull(table)
}

// markdownFull is the whole report: the table and every EXPLAIN.
func (r *Results) markdownFull(table string) string {
	var b strings.Builder
	b.WriteString("# bench-scale\n\n")
	b.WriteString(table)
	fmt.Fprintf(&b, "\nRun took %s. Full data: `bench-scale.json`.\n\n## EXPLAIN (ANALYZE, BUFFERS) of each shape\n\n", (time.Duration(r.DurationSeconds) * time.Second).String())
	b.WriteString("Every statement the report ran for one call of the shape (recorded on its pool), explained on the same database right after.\n")
	for _, s := range r.Shapes {
		fmt.Fprintf(&b, "\n### %s, %s account (p95 %.2f ms)\n\n`%s`\n", s.Name, s.Account, s.P95ms, s.Request)
		for _, e := range s.Explains {
			fmt.Fprintf(&b, "\n```sql\n%s\n```\n\nArguments: `%s`; %s.\n\n```\n%s\n```\n", e.SQL, strings.Join(e.Args, "`, `"), e.Mode, strings.Join(e.Plan, "\n"))
		}
	}
	return b.String()
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// loadavg is the 1-minute load average of a /proc/loadavg line.
func loadavg(line string) string {
	if f := strings.Fields(line); len(f) > 0 {
		return f[0]
	}
	return "?"
}
