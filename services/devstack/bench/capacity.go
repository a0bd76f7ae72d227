package main

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/namirasoft/email-sender/pkg/queue"
)

// Footprint is what one message left behind in an end-to-end run, measured
// around its flood: PostgreSQL's write-ahead log (server-wide: other writers
// of a shared server count too), the growth of the partitioned tables, and
// the growth of the event stream.
type Footprint struct {
	WALBytes      float64 `json:"wal_bytes_per_msg"`
	MetadataBytes float64 `json:"metadata_bytes_per_msg"` // messages, recipients, events, usage, stats (indexes included)
	ContentBytes  float64 `json:"content_bytes_per_msg"`  // message_contents (kept RETENTION_PERIOD)
	EventBytes    float64 `json:"event_stream_bytes_per_msg"`
}

type footprintMark struct {
	wal      int64
	metadata int64
	content  int64
	events   uint64
}

// metadataTables are the tables a message's metadata grows, partitioned or
// not; pg_partition_tree sums a partitioned table's leaves.
var metadataTables = []string{"messages", "recipients", "events", "usage_records", "message_stats", "message_stats_pending"}

func (e *env) footprintMark(ctx context.Context) (footprintMark, error) {
	var m footprintMark
	sum := func(table string) (int64, error) {
		var n int64
		err := e.db.QueryRow(ctx, `SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::bigint
			FROM pg_partition_tree(to_regclass($1))`, table).Scan(&n)
		return n, err
	}
	if err := e.db.QueryRow(ctx, `SELECT pg_current_wal_lsn() - '0/0'::pg_lsn`).Scan(&m.wal); err != nil {
		return m, fmt.Errorf("wal position: %w", err)
	}
	for _, t := range metadataTables {
		n, err := sum(t)
		if err != nil {
			return m, fmt.Errorf("size of %s: %w", t, err)
		}
		m.metadata += n
	}
	n, err := sum("message_contents")
	if err != nil {
		return m, fmt.Errorf("size of message_contents: %w", err)
	}
	m.content = n
	nc, js, err := e.jetstream("bench-footprint")
	if err != nil {
		return m, err
	}
	defer nc.Close()
	s, err := js.Stream(ctx, queue.EventStream)
	if err != nil {
		return m, fmt.Errorf("event stream: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return m, fmt.Errorf("event stream info: %w", err)
	}
	m.events = info.State.Bytes
	return m, nil
}

func (a footprintMark) per(b footprintMark, n int) *Footprint {
	if n == 0 {
		return nil
	}
	f := float64(n)
	return &Footprint{
		WALBytes:      float64(b.wal-a.wal) / f,
		MetadataBytes: float64(b.metadata-a.metadata) / f,
		ContentBytes:  float64(b.content-a.content) / f,
		EventBytes:    float64(int64(b.events)-int64(a.events)) / f,
	}
}

// partMicros splits a phase's process CPU per message by pprof part, the
// unlabelled share (GC, runtime) spread over the parts in proportion.
func partMicros(p ProfileSummary, perSecond float64) map[string]float64 {
	if perSecond <= 0 {
		return nil
	}
	const unlabelled = "unlabelled (GC, runtime)"
	labelled := 0.0
	for k, v := range p.CPUByPart {
		if k != unlabelled {
			labelled += v
		}
	}
	if labelled == 0 {
		return nil
	}
	out := map[string]float64{}
	total := p.HarnessCores / perSecond * 1e6
	for k, v := range p.CPUByPart {
		if k != unlabelled {
			out[k] = total * v / labelled
		}
	}
	return out
}

// Capacity is the model the README states: from this run's costs per
// message, what a day's volume takes at a peak of PeakFactor times its
// average, each part running at Utilisation of its cores.
type Capacity struct {
	PeakFactor  float64 `json:"peak_factor"`
	Utilisation float64 `json:"utilisation"`
	// Per message (1 KB, one recipient, delivered), in CPU µs.
	IngestMicros   float64 `json:"ingest_cpu_us"` // SendEmail one call per message (the costlier way in)
	WorkerMicros   float64 `json:"worker_cpu_us"`
	ReportMicros   float64 `json:"report_cpu_us"`
	NATSMicros     float64 `json:"nats_cpu_us"`
	PostgresMicros float64 `json:"postgres_cpu_us"`
	Footprint      Footprint
	// Retention the storage figures assume (the defaults).
	MetadataDays, ContentDays, EventDays int
	Rows                                 []CapacityRow `json:"rows"`
}

type CapacityRow struct {
	PerDay        float64 `json:"per_day"`
	PeakPerSecond float64 `json:"peak_per_second"`
	Ingest        float64 `json:"ingest_cores"`
	Worker        float64 `json:"worker_cores"`
	Report        float64 `json:"report_cores"`
	NATS          float64 `json:"nats_cores"`
	Postgres      float64 `json:"postgres_cores"`
	WALMBps       float64 `json:"wal_mb_per_s_peak"`
	PostgresGB    float64 `json:"postgres_gb"`
	NATSGB        float64 `json:"nats_gb_per_replica"`
}

// capacity builds the model from the 1 KB end-to-end run (worker, report,
// nats, PostgreSQL and the footprint) and the 64-client SendEmail phase
// (ingest's process and PostgreSQL cost per call).
func (r *Results) capacity() *Capacity {
	var e2e *E2EResult
	for i := range r.E2E {
		if r.E2E[i].Name == "1 KB" {
			e2e = &r.E2E[i]
		}
	}
	if e2e == nil || e2e.Footprint == nil || len(e2e.ProcessMicrosByPart) == 0 {
		return nil
	}
	c := &Capacity{PeakFactor: 10, Utilisation: 0.6, MetadataDays: 90, ContentDays: 30, EventDays: 7,
		Footprint:    *e2e.Footprint,
		WorkerMicros: e2e.ProcessMicrosByPart["worker"], ReportMicros: e2e.ProcessMicrosByPart["report"],
		NATSMicros: e2e.ProcessMicrosByPart["nats"], IngestMicros: e2e.ProcessMicrosByPart["ingest"],
		PostgresMicros: e2e.PostgresMicros}
	// SendEmail, one message per call, costs more than the flood's SendBatch:
	// take ingest's process and PostgreSQL cost from the 64-client phase.
	for _, p := range r.Profiles {
		if p.Name != "ingest-sendemail-c64" {
			continue
		}
		for _, pt := range r.Ingest {
			if pt.Clients != 64 || pt.Ingest.PerSecond <= 0 {
				continue
			}
			byPart := partMicros(p, pt.Ingest.PerSecond)
			if v := byPart["ingest"]; v > c.IngestMicros {
				c.PostgresMicros += p.PostgresByPart["ingest"]/pt.Ingest.PerSecond*1e6 - e2e.PostgresMicrosByPart["ingest"]
				c.IngestMicros = v
			}
		}
	}
	for _, perDay := range []float64{10e6, 100e6, 1e9} {
		peak := perDay / 86400 * c.PeakFactor
		cores := func(us float64) float64 { return peak * us / 1e6 / c.Utilisation }
		c.Rows = append(c.Rows, CapacityRow{
			PerDay: perDay, PeakPerSecond: peak,
			Ingest: cores(c.IngestMicros), Worker: cores(c.WorkerMicros), Report: cores(c.ReportMicros),
			NATS: cores(c.NATSMicros), Postgres: cores(c.PostgresMicros),
			WALMBps: peak * c.Footprint.WALBytes / 1e6,
			PostgresGB: perDay * (c.Footprint.MetadataBytes*float64(c.MetadataDays) +
				c.Footprint.ContentBytes*float64(c.ContentDays)) / 1e9,
			NATSGB: perDay * c.Footprint.EventBytes * float64(c.EventDays) / 1e9,
		})
	}
	return c
}

// replicas of a service of the given cores at 2 cores each, at least 2.
func replicas(cores float64) int { return max(2, int(math.Ceil(cores/2))) }

func (c *Capacity) markdown() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	f := c.Footprint
	w("**Capacity model** (computed by this run from its own costs: the 1 KB end-to-end run for the worker, the report, nats-server, PostgreSQL and the footprint, the 64-client SendEmail phase for ingest; the README's \"Capacity\" section reasons about it). ")
	w("Per message: ingest %.0f µs, worker %.0f µs, report %.0f µs, nats-server %.0f µs of CPU (GC shared out in proportion), PostgreSQL %.0f µs; ", c.IngestMicros, c.WorkerMicros, c.ReportMicros, c.NATSMicros, c.PostgresMicros)
	w("WAL %.1f KB, metadata %.1f KB (tables and indexes), content %.1f KB, EMAIL_EVENTS %.1f KB. ", f.WALBytes/1e3, f.MetadataBytes/1e3, f.ContentBytes/1e3, f.EventBytes/1e3)
	w("Peak = %.0f× the day's average; cores at %.0f%% busy; replicas of 2 cores, at least 2; storage for the default retention (metadata %d days, content %d days, events on the stream %d days, per NATS replica).\n\n",
		c.PeakFactor, 100*c.Utilisation, c.MetadataDays, c.ContentDays, c.EventDays)
	w("| mails/day | peak msg/s | ingest cores (replicas) | worker cores (replicas) | report cores (replicas) | nats-server cores | PostgreSQL cores | WAL at peak | PostgreSQL storage | NATS storage per replica |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range c.Rows {
		w("| %s | %.0f | %.1f (%d) | %.1f (%d) | %.1f (%d) | %.1f | %.1f | %.0f MB/s | %s | %s |\n", count(r.PerDay), r.PeakPerSecond,
			r.Ingest, replicas(r.Ingest), r.Worker, replicas(r.Worker), r.Report, replicas(r.Report), r.NATS, r.Postgres, r.WALMBps,
			gb(r.PostgresGB), gb(r.NATSGB))
	}
	w("\n")
	return b.String()
}

func count(n float64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.0f billion", n/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.0f million", n/1e6)
	}
	return fmt.Sprintf("%.0f", n)
}

func gb(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.1f TB", v/1000)
	}
	return fmt.Sprintf("%.0f GB", v)
}
