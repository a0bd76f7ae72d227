package main

import (
	"cmp"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"
)

// Results is everything one run measured (bench-*.json).
type Results struct {
	Started         string            `json:"started"`
	DurationSeconds float64           `json:"duration_seconds"`
	Machine         map[string]string `json:"machine"`
	GoVersion       string            `json:"go_version"`
	Setup           map[string]string `json:"setup"`
	Ingest          []IngestPoint     `json:"ingest"`
	Batch           BatchResult       `json:"send_batch"`
	E2E             []E2EResult       `json:"end_to_end"`
	Webhook         *WebhookResult    `json:"webhook,omitempty"`
	Watch           *WatchResult      `json:"watch_events,omitempty"`
	Memory          *MemoryResult     `json:"memory,omitempty"`
	Targets         Targets           `json:"targets"`
	Capacity        *Capacity         `json:"capacity,omitempty"`
	Checks          []Check           `json:"checks"`
	Profiles        []ProfileSummary  `json:"profiles"`
}

// LoadResult is a closed-loop run of Concurrency callers.
type LoadResult struct {
	Concurrency int     `json:"concurrency"`
	Seconds     float64 `json:"seconds"`
	Calls       int     `json:"calls"`
	PerSecond   float64 `json:"per_second"`
	P50ms       float64 `json:"p50_ms"`
	P95ms       float64 `json:"p95_ms"`
	P99ms       float64 `json:"p99_ms"`
	Errors      int     `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
}

type IngestPoint struct {
	Clients int        `json:"clients"`
	Ingest  LoadResult `json:"ingest"`
	// Limit is ingest's per-message work done directly (ingestLimit).
	Limit LoadResult `json:"limit"`
	Ratio float64    `json:"ratio"`
	// Plain is one INSERT and one awaited publish per message (plainLimit).
	Plain      LoadResult `json:"plain_limit"`
	PlainRatio float64    `json:"plain_ratio"`
}

type BatchResult struct {
	Callers           int        `json:"callers"`
	BatchSize         int        `json:"batch_size"`
	Calls             LoadResult `json:"calls"`
	MessagesPerSecond float64    `json:"messages_per_second"`
}

// E2ERun is accept→SENT measured from the report's timeline.
type E2ERun struct {
	Messages      int     `json:"messages"`
	Seconds       float64 `json:"seconds"`
	PerSecond     float64 `json:"per_second"`
	P50ms         float64 `json:"p50_ms"`
	P95ms         float64 `json:"p95_ms"`
	P99ms         float64 `json:"p99_ms"`
	SubmitSeconds float64 `json:"submit_seconds,omitempty"`
	RatePerSecond float64 `json:"rate_per_second,omitempty"`
}

type E2EResult struct {
	Name      string `json:"name"`
	SizeBytes int    `json:"size_bytes"`
	PoolSize  int    `json:"smtp_pool_size"`
	// Flood: everything submitted at once (throughput).
	Flood E2ERun `json:"flood"`
	// Paced: submitted at half the flood throughput (latency).
	Paced *E2ERun    `json:"paced,omitempty"`
	Limit LoadResult `json:"limit"`
	Ratio float64    `json:"ratio"`
	// ProcessMicros and PostgresMicros are the CPU time per message of the
	// flood: this process (all three services, nats-server, the sink and the
	// clients) and the PostgreSQL backends of its connections. Unlike msg/s,
	// they hardly change when other processes share the machine.
	ProcessMicros  float64 `json:"process_cpu_us_per_msg"`
	PostgresMicros float64 `json:"postgres_cpu_us_per_msg"`
	// PostgresMicrosByPart splits PostgresMicros by service.
	PostgresMicrosByPart map[string]float64 `json:"postgres_cpu_us_per_msg_by_part"`
	// ProcessMicrosByPart splits ProcessMicros by part (pprof label), the
	// unlabelled share (GC, runtime) spread in proportion.
	ProcessMicrosByPart map[string]float64 `json:"process_cpu_us_per_msg_by_part"`
	// Footprint is what a message leaves behind: WAL, table and stream bytes.
	Footprint *Footprint `json:"footprint,omitempty"`
}

// WebhookResult is webhook deliveries to a local receiver, a few runs.
type WebhookResult struct {
	Events          int          `json:"events_per_run"`
	Runs            []WebhookRun `json:"runs"`
	MedianPerSecond float64      `json:"median_per_second"`
	MinPerSecond    float64      `json:"min_per_second"`
	MaxPerSecond    float64      `json:"max_per_second"`
}

type WebhookRun struct {
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"`
	// Cores is the CPU this process and PostgreSQL used meanwhile,
	// OtherCores what other processes on the machine took.
	Cores      float64 `json:"cores"`
	OtherCores float64 `json:"other_processes_cores"`
	// CPUusPerEvent is Cores over the rate: CPU µs per event delivered.
	CPUusPerEvent float64 `json:"cpu_us_per_event"`
}

// WatchResult is WatchEvents' event-to-client latency.
type WatchResult struct {
	Events int     `json:"events"`
	P50ms  float64 `json:"p50_ms"`
	P95ms  float64 `json:"p95_ms"`
	P99ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
}

type Mem struct {
	RSSMB float64 `json:"rss_mb"`
	HWMMB float64 `json:"hwm_mb"`
}

type ServiceMem struct {
	Service string `json:"service"`
	Rest    Mem    `json:"rest"`
	Queued  Mem    `json:"queued"`
}

type MemoryResult struct {
	Queued            int          `json:"queued"`
	QueueSeconds      float64      `json:"queue_seconds"`
	InFlight          int          `json:"in_flight"`
	WorkerConcurrency int          `json:"worker_concurrency"`
	Services          []ServiceMem `json:"services"`
}

type ProfileSummary struct {
	Name           string             `json:"name"`
	Seconds        float64            `json:"seconds"`
	MachineBusyPct float64            `json:"machine_busy_pct"`
	MachineCores   float64            `json:"machine_cores_busy"`
	HarnessCores   float64            `json:"harness_process_cores"`
	PostgresCores  float64            `json:"postgres_cores"`
	OtherCores     float64            `json:"other_processes_cores"`
	CPUByPart      map[string]float64 `json:"cpu_by_part_pct"`
	CPUTop         []string           `json:"cpu_top"`
	CPUTopCum      []string           `json:"cpu_top_cum"`
	AllocTop       []string           `json:"alloc_top"`
	CPUFile        string             `json:"cpu_file"`
	AllocFile      string             `json:"alloc_file"`
	AllocBaseFile  string             `json:"alloc_base_file"`
	// PostgresByPart splits PostgresCores by the part whose connections the
	// backends served (ingest, worker, report, limit).
	PostgresByPart map[string]float64 `json:"postgres_cores_by_part"`
}

type Targets struct {
	IngestRatio float64 `json:"ingest_ratio_min"`
	// IngestPlainRatio1 and IngestPlainRatioMany: SendEmail against the plain
	// limit at one client and at 64 clients or more; IngestP99ms: SendEmail's
	// p99 at 64 clients.
	IngestPlainRatio1    float64 `json:"ingest_plain_ratio_1_min"`
	IngestPlainRatioMany float64 `json:"ingest_plain_ratio_64_min"`
	IngestP99ms          float64 `json:"ingest_p99_ms_64_max"`
	E2ERatio             float64 `json:"e2e_ratio_min"`
	SlowPerSecond        float64 `json:"slow_sink_per_second_min"`
	MemoryMB             float64 `json:"memory_mb_max"`
	// WebhookPerSecond: webhook deliveries/s to a local receiver (median run).
	WebhookPerSecond float64 `json:"webhook_per_second_min"`
	// WatchP99ms: WatchEvents event-to-client latency, p99.
	WatchP99ms float64 `json:"watch_p99_ms_max"`
}

func defaultTargets() Targets {
	return Targets{IngestRatio: 0.70, IngestPlainRatio1: 0.80, IngestPlainRatioMany: 1.5, IngestP99ms: 25, E2ERatio: 0.60, SlowPerSecond: 1000, MemoryMB: 200, WebhookPerSecond: 5000, WatchP99ms: 50}
}

type Check struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Target string `json:"target"`
	Pass   bool   `json:"pass"`
}

func (r *Results) evaluate() {
	r.Capacity = r.capacity()
	t := r.Targets
	for _, p := range r.Ingest {
		r.Checks = append(r.Checks, Check{Name: fmt.Sprintf("ingest SendEmail, %d clients, vs limit", p.Clients),
			Value: pct(p.Ratio), Target: "≥ " + pct(t.IngestRatio), Pass: p.Ratio >= t.IngestRatio})
	}
	for _, p := range r.Ingest {
		want := 0.0
		switch {
		case p.Clients == 1:
			want = t.IngestPlainRatio1
		case p.Clients >= 64:
			want = t.IngestPlainRatioMany
		}
		if want > 0 {
			r.Checks = append(r.Checks, Check{Name: fmt.Sprintf("ingest SendEmail, %d clients, vs plain limit", p.Clients),
				Value: pct(p.PlainRatio), Target: "≥ " + pct(want), Pass: p.PlainRatio >= want})
		}
		if p.Clients == 64 {
			r.Checks = append(r.Checks, Check{Name: "ingest SendEmail, 64 clients, p99", Value: ms(p.Ingest.P99ms) + " ms",
				Target: fmt.Sprintf("< %.0f ms", t.IngestP99ms), Pass: p.Ingest.P99ms < t.IngestP99ms})
		}
	}
	for _, e := range r.E2E {
		if strings.Contains(e.Name, "200 ms") {
			r.Checks = append(r.Checks, Check{Name: "end to end, " + e.Name, Value: fmt.Sprintf("%.0f msg/s", e.Flood.PerSecond),
				Target: fmt.Sprintf("≥ %.0f msg/s", t.SlowPerSecond), Pass: e.Flood.PerSecond >= t.SlowPerSecond})
			continue
		}
		r.Checks = append(r.Checks, Check{Name: "end to end, " + e.Name + ", vs limit", Value: pct(e.Ratio),
			Target: "≥ " + pct(t.E2ERatio), Pass: e.Ratio >= t.E2ERatio})
	}
	if w := r.Webhook; w != nil {
		r.Checks = append(r.Checks, Check{Name: "webhook delivery to a local receiver (median run)", Value: fmt.Sprintf("%.0f events/s", w.MedianPerSecond),
			Target: fmt.Sprintf("≥ %.0f events/s", t.WebhookPerSecond), Pass: w.MedianPerSecond >= t.WebhookPerSecond})
	}
	if w := r.Watch; w != nil {
		r.Checks = append(r.Checks, Check{Name: "WatchEvents event-to-client latency, p99", Value: ms(w.P99ms) + " ms",
			Target: fmt.Sprintf("< %.0f ms", t.WatchP99ms), Pass: w.P99ms < t.WatchP99ms})
	}
	if r.Memory != nil {
		for _, s := range r.Memory.Services {
			r.Checks = append(r.Checks, Check{Name: fmt.Sprintf("%s RSS with %dk queued", s.Service, r.Memory.Queued/1000),
				Value: fmt.Sprintf("%.0f MB", s.Queued.RSSMB), Target: fmt.Sprintf("≤ %.0f MB", t.MemoryMB), Pass: s.Queued.RSSMB <= t.MemoryMB})
		}
	}
}

func pct(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) }

func ms(f float64) string {
	switch {
	case f >= 100:
		return fmt.Sprintf("%.0f", f)
	case f >= 10:
		return fmt.Sprintf("%.1f", f)
	}
	return fmt.Sprintf("%.2f", f)
}

func (r *Results) markdown() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("Measured by `make bench` on %s (%s, %s logical CPUs, Go %s), %s; the run took %.1f minutes. ",
		r.Machine["host"], r.Machine["cpu"], r.Machine["cpus"], strings.TrimPrefix(r.GoVersion, "go"), r.Started[:10], r.DurationSeconds/60)
	w("Everything runs on this one machine: PostgreSQL %s (synchronous_commit=%s, fsync=%s), nats-server in process with file storage, SMTP sinks on TCP. ",
		r.Setup["postgres_version"], r.Setup["postgres_synchronous_commit"], r.Setup["postgres_fsync"])
	w("Full results: `results/bench-latest.json`; profiles: `results/profiles/`.\n\n")

	if len(r.Ingest) > 0 {
		w("**Ingest** (1 KB messages, one recipient; gRPC clients over %d connections; %.0f s per point). ", grpcConns, r.Ingest[0].Ingest.Seconds)
		w("Both limits run at the same concurrency, without gRPC or validation, one message per caller at a time. The limit does ingest's work per message directly: one pgx batch inserting the same message, recipient and outbox rows, a JetStream publish of the same payload waiting for its ack, the outbox row deleted in batches. The plain limit is the least a durable accept does: one INSERT of the same message row and one awaited publish of its job. SendEmail commits concurrent calls as a group (one transaction, one batch of publishes), which is how it can pass the limits.\n\n")
		w("| clients | SendEmail/s | p50 ms | p95 ms | p99 ms | limit/s | limit p99 ms | plain limit/s | plain p99 ms | ingest/limit | ingest/plain |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, p := range r.Ingest {
			w("| %d | %.0f | %s | %s | %s | %.0f | %s | %.0f | %s | %s | %s |\n", p.Clients, p.Ingest.PerSecond, ms(p.Ingest.P50ms), ms(p.Ingest.P95ms), ms(p.Ingest.P99ms),
				p.Limit.PerSecond, ms(p.Limit.P99ms), p.Plain.PerSecond, ms(p.Plain.P99ms), pct(p.Ratio), pct(p.PlainRatio))
		}
		w("\nSendBatch (%d concurrent callers, %d messages per call): **%.0f messages/s**, p50 %s ms, p99 %s ms per call.\n\n",
			r.Batch.Callers, r.Batch.BatchSize, r.Batch.MessagesPerSecond, ms(r.Batch.Calls.P50ms), ms(r.Batch.Calls.P99ms))
	}
	if len(r.E2E) > 0 {
		w("**End to end** (accept → `SENT` at a local SMTP sink, from the report's timeline). Throughput: the messages are submitted at once with SendBatch (%d per call, %d callers) and counted from the first acceptance to the last `SENT`. Latency: SendEmail at a steady half of that throughput. The limit sends the same message, built with pkg/mime, with go-mail's SMTP client straight to the same sink over as many connections as the provider configuration's pool.\n\n", batchSize, batchCalls)
		w("| run | messages | msg/s | p50 ms | p99 ms | latency at msg/s | SMTP pool | limit msg/s | e2e/limit | CPU µs/msg: process, postgres (by service) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, e := range r.E2E {
			p50, p99, rate := "–", "–", "–"
			if e.Paced != nil {
				p50, p99, rate = ms(e.Paced.P50ms), ms(e.Paced.P99ms), fmt.Sprintf("%.0f", e.Paced.RatePerSecond)
			}
			w("| %s | %d | %.0f | %s | %s | %s | %d | %.0f | %s | %.0f, %.0f (%s) |\n", e.Name, e.Flood.Messages, e.Flood.PerSecond, p50, p99, rate, e.PoolSize, e.Limit.PerSecond, pct(e.Ratio),
				e.ProcessMicros, e.PostgresMicros, micros(e.PostgresMicrosByPart))
		}
		w("\n")
	}
	if h := r.Webhook; h != nil {
		w("**Webhooks** (events of one message, each for a recipient of its own, published to EMAIL_EVENTS as fast as JetStream takes them; the report fans them out into PostgreSQL, signs and posts each to a local receiver answering 204; counted from the first publish to the receiver's last request; %d events per run).\n\n", h.Events)
		w("Median **%.0f events/s** (min %.0f, max %.0f). The machine is shared: next to each run, the CPU this process and PostgreSQL used, what other processes took, and the CPU per event.\n\n", h.MedianPerSecond, h.MinPerSecond, h.MaxPerSecond)
		w("| run | events/s | this process + postgres | other processes | CPU µs per event |\n|---:|---:|---:|---:|---:|\n")
		for i, r := range h.Runs {
			w("| %d | %.0f | %.2f cores | %.2f cores | %.0f |\n", i+1, r.PerSecond, r.Cores, r.OtherCores, r.CPUusPerEvent)
		}
		w("\n")
	}
	if wa := r.Watch; wa != nil {
		w("**WatchEvents** (a live gRPC watch while %d events are published to EMAIL_EVENTS one at a time; from just before each publish to the event's arrival at the client).\n\n", wa.Events)
		w("| event to client | p50 ms | p95 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|\n")
		w("| WatchEvents (gRPC) | %s | %s | %s | %s |\n\n", ms(wa.P50ms), ms(wa.P95ms), ms(wa.P99ms), ms(wa.MaxMs))
	}
	if m := r.Memory; m != nil {
		w("**Memory** of each service as its own process (VmRSS; VmHWM is the peak), at rest and with %d messages accepted and waiting (the SMTP server never answers, so the worker holds %d deliveries in flight and the rest wait on the stream; queueing took %.1f s).\n\n", m.Queued, m.WorkerConcurrency, m.QueueSeconds)
		w("| service | at rest MB | %dk queued MB | peak MB |\n|---|---:|---:|---:|\n", m.Queued/1000)
		for _, s := range m.Services {
			w("| %s | %.0f | %.0f | %.0f |\n", s.Service, s.Rest.RSSMB, s.Queued.RSSMB, s.Queued.HWMMB)
		}
		w("\n")
	}
	if c := r.Capacity; c != nil {
		w("%s", c.markdown())
	}
	if len(r.Checks) > 0 {
		w("**Targets**\n\n| check | measured | target | |\n|---|---:|---:|---|\n")
		for _, c := range r.Checks {
			mark := "met"
			if !c.Pass {
				mark = "**missed**"
			}
			w("| %s | %s | %s | %s |\n", c.Name, c.Value, c.Target, mark)
		}
		w("\n")
	}
	if len(r.Profiles) > 0 {
		w("**Where the CPU goes** (profiles of this run; `part` is a pprof label: load = the benchmark's clients, limit = the direct baselines (both limits); postgres counts the backends of this run's connections, other processes are whatever else ran on the machine (other users of the PostgreSQL server included)).\n\n")
		w("| phase | machine busy | this process | postgres | other processes | this process's CPU samples by part |\n|---|---:|---:|---:|---:|---|\n")
		for _, p := range r.Profiles {
			w("| %s | %.0f%% | %.2f cores | %.2f cores | %.2f cores | %s |\n", p.Name, p.MachineBusyPct, p.HarnessCores, p.PostgresCores, p.OtherCores, parts(p.CPUByPart))
		}
		w("\n")
	}
	return b.String()
}

func parts(m map[string]float64) string {
	type kv struct {
		k string
		v float64
	}
	var l []kv
	for k, v := range m {
		l = append(l, kv{k, v})
	}
	sort.Slice(l, func(i, j int) bool { return l[i].v > l[j].v })
	var s []string
	for _, e := range l {
		s = append(s, fmt.Sprintf("%s %.0f%%", e.k, e.v))
	}
	return strings.Join(s, ", ")
}

func percentiles(d []time.Duration) (p50, p95, p99 float64) {
	if len(d) == 0 {
		return 0, 0, 0
	}
	slices.Sort(d)
	at := func(q float64) float64 {
		i := int(q * float64(len(d)-1))
		return float64(d[i]) / float64(time.Millisecond)
	}
	return at(0.50), at(0.95), at(0.99)
}

func machineInfo() map[string]string {
	m := map[string]string{"cpus": fmt.Sprint(runtime.NumCPU()), "os": runtime.GOOS + "/" + runtime.GOARCH}
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

// micros lists per-part figures, largest first: "ingest 310, report 90".
func micros(byPart map[string]float64) string {
	parts := slices.Collect(maps.Keys(byPart))
	slices.SortFunc(parts, func(a, b string) int { return cmp.Compare(byPart[b], byPart[a]) })
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = fmt.Sprintf("%s %.0f", p, byPart[p])
	}
	return strings.Join(out, ", ")
}
