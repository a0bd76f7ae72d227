package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/namirasoft/email-sender/pkg/queue"
)

// Config is one harness run.
type Config struct {
	// Scenario: "chaos" (faults on one nats-server and the harness's own
	// PostgreSQL) or "cluster" (a 3-node NATS cluster with R3 streams, one node
	// stopped under load).
	Scenario string
	Seed     uint64
	Messages int
	Rate     float64
	// Faults is the number of faults injected during the load (chaos).
	Faults int
	// DrainTimeout bounds the wait for every accepted message to end.
	DrainTimeout time.Duration
	Ingests      int
	Workers      int
	// SinkLatency delays each answer of the SMTP sink to DATA (default 50ms).
	SinkLatency time.Duration
	// WorkDir holds the logs, the PostgreSQL cluster and the NATS stores.
	WorkDir string
	Bins    Binaries
	// DatabaseURL, when set, is used instead of a PostgreSQL of the harness's own
	// (the cluster scenario only: the chaos scenario restarts its database).
	DatabaseURL string
	// Log receives progress lines.
	Log io.Writer
}

func (c Config) withDefaults() Config {
	if c.Scenario == "" {
		c.Scenario = "chaos"
	}
	// The default load is what a real tenant brings: about half of what
	// `make bench` measures ingest taking on a 2-core machine.
	if c.Messages == 0 {
		c.Messages = 12000
	}
	if c.Rate == 0 {
		c.Rate = 150
	}
	if c.Faults == 0 && c.Scenario == "chaos" {
		c.Faults = 30
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 3 * time.Minute
	}
	if c.Ingests == 0 {
		c.Ingests = 2
	}
	if c.Workers == 0 {
		c.Workers = 2
	}
	if c.SinkLatency == 0 {
		c.SinkLatency = 50 * time.Millisecond
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return c
}

// Result is what a run found.
type Result struct {
	Scenario     string         `json:"scenario"`
	Seed         uint64         `json:"seed"`
	StartedAt    time.Time      `json:"started_at"`
	Duration     float64        `json:"duration_s"`
	LoadDuration float64        `json:"load_s"`
	DrainTime    float64        `json:"drain_s"`
	Drained      bool           `json:"drained"`
	DrainState   string         `json:"drain_state"`
	Rate         float64        `json:"rate_per_s"`
	Topology     string         `json:"topology"`
	Counts       Counts         `json:"counts"`
	Faults       []faultRecord  `json:"faults"`
	FaultCounts  map[string]int `json:"fault_counts"`
	Unexpected   []string       `json:"unexpected_exits"`
	Invariants   []Invariant    `json:"invariants"`
	Cluster      *ClusterFacts  `json:"cluster,omitempty"`
	Pass         bool           `json:"pass"`
}

// ClusterFacts are what the cluster scenario adds.
type ClusterFacts struct {
	StoppedNode       string  `json:"stopped_node"`
	StoppedAt         float64 `json:"stopped_at_s"`
	WasLeaderOf       string  `json:"was_leader_of"`
	NewLeader         string  `json:"new_leader"`
	AcceptedAfterStop int     `json:"accepted_after_stop"`
	SentAfterStop     int     `json:"sent_after_stop"`
	LongestSinkGap    float64 `json:"longest_sink_gap_s"`
}

// Run runs one scenario and returns its result; an error means the harness
// itself could not run (a failed invariant is in Result.Pass).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano())
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	begin := time.Now()
	fmt.Fprintf(cfg.Log, "chaos: scenario %s, seed %d, %d messages at %.0f/s, work dir %s\n", cfg.Scenario, cfg.Seed, cfg.Messages, cfg.Rate, cfg.WorkDir)

	sc := systemConfig{WorkDir: cfg.WorkDir, Bins: cfg.Bins, Ingests: cfg.Ingests, Workers: cfg.Workers, Log: cfg.Log, NATSNodes: 1, SinkLatency: cfg.SinkLatency}
	if cfg.Scenario == "cluster" {
		sc.NATSNodes = 3
		sc.DatabaseURL = cfg.DatabaseURL
	}
	ctx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	s, err := startSystem(ctx, sc)
	if err != nil {
		return nil, err
	}
	defer s.Close()

	res := &Result{Scenario: cfg.Scenario, Seed: cfg.Seed, StartedAt: begin.UTC(), Rate: cfg.Rate, FaultCounts: map[string]int{},
		Topology: fmt.Sprintf("%d ingest, %d worker (smtp), 1 report, %d nats-server, PostgreSQL, SMTP sink answering in %s", cfg.Ingests, cfg.Workers, sc.NATSNodes, cfg.SinkLatency)}
	loadSpan := time.Duration(float64(cfg.Messages) / cfg.Rate * float64(time.Second))
	lcfg := loadConfig{Messages: cfg.Messages, Rate: cfg.Rate, CallTimeout: 5 * time.Second, GiveUpAfter: 2 * time.Minute,
		RunID: fmt.Sprintf("%x", cfg.Seed)}
	faults := &faultLog{start: time.Now()}

	loadCtx, cancelLoad := context.WithCancel(ctx)
	defer cancelLoad()
	loadDone := make(chan *loadResult, 1)
	go func() { loadDone <- runLoad(loadCtx, s.clients, s.account.APIKey, lcfg) }()

	var cluster *ClusterFacts
	switch cfg.Scenario {
	case "chaos":
		s.logf("load started: %d messages over %s; %d faults", cfg.Messages, loadSpan.Round(time.Second), cfg.Faults)
		s.runFaults(ctx, rng, schedule(rng, cfg.Faults), loadSpan, faults)
	case "cluster":
		s.logf("load started: %d messages over %s; one NATS node is stopped at a third of it", cfg.Messages, loadSpan.Round(time.Second))
		cluster = s.stopLeader(ctx, loadSpan/3, faults)
	default:
		return nil, fmt.Errorf("unknown scenario %q", cfg.Scenario)
	}
	load := <-loadDone
	res.LoadDuration = load.end.Sub(load.start).Seconds()
	s.logf("load done: %d accepted in %.1fs (%d calls)", len(load.accepted), res.LoadDuration, load.calls.Load())

	if cfg.Scenario == "chaos" {
		s.heal(ctx)
	}
	drainStart := time.Now()
	ids := load.acceptedIDs()
	res.Drained, res.DrainState = s.waitQuiescent(ctx, ids, cfg.DrainTimeout)
	s.waitSinkStable(ctx, 3*time.Second, 30*time.Second)
	res.DrainTime = time.Since(drainStart).Seconds()
	s.logf("drain: %s after %.1fs", res.DrainState, res.DrainTime)

	counts, inv, err := s.check(ctx, load, faults, cfg.Messages)
	if err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	res.Counts, res.Invariants = counts, inv
	res.Faults = faults.records
	for _, f := range faults.records {
		res.FaultCounts[f.Kind]++
	}
	res.Unexpected = s.unexpectedExits()
	if cluster != nil {
		s.clusterFacts(cluster, load, faults)
		res.Cluster = cluster
		res.Invariants = append(res.Invariants,
			Invariant{Name: "sending continued after the node stopped", OK: cluster.StoppedNode != "" && cluster.AcceptedAfterStop > 0 && cluster.SentAfterStop > 0,
				Detail: fmt.Sprintf("node %s stopped at %.1fs; %d accepted and %d received by the sink after it; longest pause at the sink %.1fs",
					cluster.StoppedNode, cluster.StoppedAt, cluster.AcceptedAfterStop, cluster.SentAfterStop, cluster.LongestSinkGap)})
	}
	res.Invariants = append(res.Invariants, Invariant{Name: "no service process exited on its own", OK: len(res.Unexpected) == 0,
		Detail: fmt.Sprintf("%d unexpected exits (each restarted by the harness after 1s)", len(res.Unexpected)), Sample: sample(res.Unexpected)})
	res.Pass = true
	for _, i := range res.Invariants {
		res.Pass = res.Pass && i.OK
	}
	res.Duration = time.Since(begin).Seconds()
	if !res.Pass {
		fmt.Fprintf(cfg.Log, "chaos: invariants failed; service logs:\n%s\n", s.logTails())
	}
	return res, nil
}

// stopLeader waits for after, then SIGKILLs the node leading the send stream
// (the one whose loss hurts most) and leaves it down.
func (s *system) stopLeader(ctx context.Context, after time.Duration, faults *faultLog) *ClusterFacts {
	facts := &ClusterFacts{}
	sleepCtx(ctx, after)
	if ctx.Err() != nil {
		return facts
	}
	leader := ""
	if info, err := s.js.Stream(ctx, queue.SendStream); err == nil && info.CachedInfo().Cluster != nil {
		leader = info.CachedInfo().Cluster.Leader
	}
	target := s.nats[0]
	for _, nd := range s.nats {
		if nd.Name == leader {
			target = nd
			facts.WasLeaderOf = queue.SendStream
		}
	}
	s.logf("stopping nats node %s (SIGKILL; leader of %s: %q)", target.Name, queue.SendStream, leader)
	facts.StoppedAt = time.Since(faults.start).Seconds()
	facts.StoppedNode = target.Name
	if err := target.Stop(true); err != nil {
		s.logf("stop %s: %v", target.Name, err)
	}
	faults.add("nats-node-stop", fmt.Sprintf("SIGKILL nats-server %s (leader of %s: %v); left down", target.Name, queue.SendStream, facts.WasLeaderOf != ""))
	// Report the new leader once there is one.
	go func() {
		for range 60 {
			sleepCtx(ctx, 500*time.Millisecond)
			if info, err := s.js.Stream(ctx, queue.SendStream); err == nil && info.CachedInfo().Cluster != nil && info.CachedInfo().Cluster.Leader != "" && info.CachedInfo().Cluster.Leader != target.Name {
				s.logf("%s has a new leader: %s", queue.SendStream, info.CachedInfo().Cluster.Leader)
				return
			}
		}
	}()
	return facts
}

// clusterFacts counts what happened after the node stopped.
func (s *system) clusterFacts(f *ClusterFacts, load *loadResult, faults *faultLog) {
	stopped := faults.start.Add(time.Duration(f.StoppedAt * float64(time.Second)))
	load.mu.Lock()
	for _, a := range load.accepted {
		if a.At.After(stopped) {
			f.AcceptedAfterStop++
		}
	}
	load.mu.Unlock()
	var times []time.Time
	for _, m := range s.sink.Messages() {
		times = append(times, m.ReceivedAt)
		if m.ReceivedAt.After(stopped) {
			f.SentAfterStop++
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	prev := stopped
	for _, t := range times {
		if t.Before(stopped) {
			continue
		}
		if g := t.Sub(prev).Seconds(); g > f.LongestSinkGap {
			f.LongestSinkGap = g
		}
		prev = t
	}
}
