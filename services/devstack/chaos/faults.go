package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"time"

	"github.com/namirasoft/email-sender/pkg/testkit/smtpsink"
)

// Fault kinds.
const (
	faultWorkerKill  = "worker-kill"  // SIGKILL a worker, start it again
	faultIngestKill  = "ingest-kill"  // SIGKILL an ingest replica, start it again
	faultReportKill  = "report-kill"  // SIGKILL the report, start it again
	faultNATSRestart = "nats-restart" // stop nats-server (SIGTERM or SIGKILL), wait, start it on the same port and store
	faultPGRestart   = "pg-restart"   // pg_ctl stop -m fast|immediate, wait, start
	faultSink4xx     = "sink-4xx"     // the sink answers the next DATA with 421 or 451
	faultSink550     = "sink-550"     // the sink answers the next DATA with 550
	faultSinkDrop    = "sink-drop"    // the sink drops the next connections at MAIL or after DATA
)

// faultKinds in the order of the summary, with their weights in the random part
// of a schedule.
var faultKinds = []struct {
	kind   string
	weight int
}{
	{faultWorkerKill, 6},
	{faultIngestKill, 1},
	{faultReportKill, 1},
	{faultNATSRestart, 2},
	{faultPGRestart, 2},
	{faultSink4xx, 3},
	{faultSink550, 2},
	{faultSinkDrop, 2},
}

// faultRecord is one injected fault.
type faultRecord struct {
	At     float64 `json:"at_s"` // seconds since the load started
	Kind   string  `json:"kind"`
	Detail string  `json:"detail"`
}

// faultLog collects faults and the moments workers were killed.
type faultLog struct {
	mu          sync.Mutex
	start       time.Time
	records     []faultRecord
	workerKills []time.Time
}

func (l *faultLog) add(kind, detail string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, faultRecord{At: time.Since(l.start).Seconds(), Kind: kind, Detail: detail})
}

// schedule returns n fault kinds: every kind once (when n allows), the rest
// drawn by weight, shuffled.
func schedule(rng *rand.Rand, n int) []string {
	var out []string
	for _, k := range faultKinds {
		if len(out) < n {
			out = append(out, k.kind)
		}
	}
	total := 0
	for _, k := range faultKinds {
		total += k.weight
	}
	for len(out) < n {
		x := rng.IntN(total)
		for _, k := range faultKinds {
			if x < k.weight {
				out = append(out, k.kind)
				break
			}
			x -= k.weight
		}
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// runFaults injects the faults of plan one after another, spread over span
// with random gaps, until the plan is done or ctx ends. Every component is
// running again when it returns.
func (s *system) runFaults(ctx context.Context, rng *rand.Rand, plan []string, span time.Duration, log *faultLog) {
	if len(plan) == 0 {
		return
	}
	// Fault i is due at a random moment of the i-th of len(plan) equal slices
	// of span (a late fault goes at once), so faults cover the whole load.
	start := time.Now()
	slice := span / time.Duration(len(plan))
	for i, kind := range plan {
		due := start.Add(time.Duration(i)*slice + time.Duration(rng.Int64N(int64(slice)*9/10+1)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(due)):
		}
		s.inject(ctx, rng, kind, log)
	}
}

// inject applies one fault and waits until the component is back.
func (s *system) inject(ctx context.Context, rng *rand.Rand, kind string, log *faultLog) {
	pause := func(min, max time.Duration) time.Duration {
		return min + time.Duration(rng.Int64N(int64(max-min)+1))
	}
	killAndRestart := func(p *proc) {
		log.mu.Lock()
		if kind == faultWorkerKill {
			log.workerKills = append(log.workerKills, time.Now())
		}
		log.mu.Unlock()
		_ = p.Signal(syscall.SIGKILL, 10*time.Second)
		down := pause(0, 2*time.Second)
		log.add(kind, fmt.Sprintf("SIGKILL %s, restarted after %s", p.name, down.Round(time.Millisecond)))
		s.logf("fault %s: SIGKILL %s (down %s)", kind, p.name, down.Round(time.Millisecond))
		sleepCtx(ctx, down)
		if err := p.Start(); err != nil {
			s.logf("restart %s: %v", p.name, err)
		}
	}
	switch kind {
	case faultWorkerKill:
		killAndRestart(s.workers[rng.IntN(len(s.workers))])
	case faultIngestKill:
		killAndRestart(s.ingests[rng.IntN(len(s.ingests))])
	case faultReportKill:
		killAndRestart(s.report)
	case faultNATSRestart:
		nd := s.nats[rng.IntN(len(s.nats))]
		crash := rng.IntN(2) == 0
		down := pause(500*time.Millisecond, 4*time.Second)
		how := "SIGTERM"
		if crash {
			how = "SIGKILL"
		}
		s.logf("fault %s: %s nats-server %s (down %s)", kind, how, nd.Name, down.Round(time.Millisecond))
		if err := nd.Stop(crash); err != nil {
			s.logf("stop nats %s: %v", nd.Name, err)
		}
		log.add(kind, fmt.Sprintf("%s nats-server %s, started again after %s", how, nd.Name, down.Round(time.Millisecond)))
		sleepCtx(ctx, down)
		if err := nd.Start(context.WithoutCancel(ctx)); err != nil {
			s.logf("start nats %s: %v", nd.Name, err)
		}
	case faultPGRestart:
		if s.pg == nil {
			s.logf("fault %s skipped: the database is not the harness's own", kind)
			return
		}
		mode := "fast"
		if rng.IntN(2) == 0 {
			mode = "immediate"
		}
		down := pause(500*time.Millisecond, 4*time.Second)
		s.logf("fault %s: pg_ctl stop -m %s (down %s)", kind, mode, down.Round(time.Millisecond))
		sctx := context.WithoutCancel(ctx)
		if err := s.pg.Stop(sctx, mode); err != nil {
			s.logf("stop postgres: %v", err)
		}
		log.add(kind, fmt.Sprintf("pg_ctl stop -m %s, started again after %s", mode, down.Round(time.Millisecond)))
		sleepCtx(ctx, down)
		for i := 0; ; i++ {
			err := s.pg.Start(sctx)
			if err == nil {
				break
			}
			s.logf("start postgres: %v", err)
			if i == 5 {
				break
			}
			time.Sleep(time.Second)
		}
	case faultSink4xx:
		n := 3 + rng.IntN(28)
		r := smtpsink.Reply{Code: 451, Enhanced: "4.3.0", Message: "chaos: try again later"}
		if rng.IntN(2) == 0 {
			r = smtpsink.Reply{Code: 421, Enhanced: "4.3.2", Message: "chaos: service not available"}
		}
		s.sink.FailNext(n, r)
		log.add(kind, fmt.Sprintf("next %d transactions answered %d", n, r.Code))
		s.logf("fault %s: next %d transactions answered %d", kind, n, r.Code)
	case faultSink550:
		n := 1 + rng.IntN(10)
		s.sink.FailNext(n, smtpsink.Reply{Code: 550, Enhanced: "5.1.1", Message: "chaos: mailbox unavailable"})
		log.add(kind, fmt.Sprintf("next %d transactions answered 550", n))
		s.logf("fault %s: next %d transactions answered 550", kind, n)
	case faultSinkDrop:
		n := 1 + rng.IntN(10)
		stage, where := smtpsink.AtMail, "at MAIL"
		if rng.IntN(2) == 0 {
			stage, where = smtpsink.AtData, "after DATA (ambiguous)"
		}
		s.sink.DropNext(n, stage)
		log.add(kind, fmt.Sprintf("next %d connections dropped %s", n, where))
		s.logf("fault %s: next %d connections dropped %s", kind, n, where)
	}
}

// heal makes sure every component runs again and the sink answers normally.
func (s *system) heal(ctx context.Context) {
	s.sink.ResetScript()
	for _, nd := range s.nats {
		if !nd.proc.Running() {
			_ = nd.Start(ctx)
		}
	}
	for _, p := range s.allProcs() {
		if !p.Running() {
			_ = p.Start()
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
