package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Markdown renders the summary table of a result.
func (r *Result) Markdown() string {
	var b strings.Builder
	verdict := "PASS"
	if !r.Pass {
		verdict = "FAIL"
	}
	c := r.Counts
	fmt.Fprintf(&b, "Scenario `%s`, seed `%d`, %s UTC: **%s** in %s (load %s at %.0f msg/s, drain %s).  \n",
		r.Scenario, r.Seed, r.StartedAt.Format("2006-01-02 15:04"), verdict,
		secs(r.Duration), secs(r.LoadDuration), r.Rate, secs(r.DrainTime))
	fmt.Fprintf(&b, "System: %s.\n\n", r.Topology)
	fmt.Fprintf(&b, "| | |\n|---|---|\n")
	row := func(k, v string) { fmt.Fprintf(&b, "| %s | %s |\n", k, v) }
	row("requests", fmt.Sprintf("%d (%d calls: %s; %d idempotent replays)", c.Requested, c.Calls, kv(c.CallErrors, "no errors"), c.IdempotentReplays))
	row("accepted", fmt.Sprint(c.Accepted))
	row("sent", fmt.Sprint(c.Sent))
	row("failed", fmt.Sprintf("%d (%s)", c.Failed, kv(c.FailedBy, "none")))
	if c.OtherTerminal > 0 {
		row("other terminal", fmt.Sprint(c.OtherTerminal))
	}
	row("not terminal / lost", fmt.Sprintf("%d / %d", c.NotTerminal, c.Lost))
	row("sink received", fmt.Sprintf("%d (%d distinct; %d not accepted)", c.SinkMessages, c.SinkDistinct, c.UnknownAtSink))
	row("SENT missing at sink", fmt.Sprint(c.SentMissing))
	row("duplicates", fmt.Sprintf("%d (%d in the kill-after-accept window, %d outside)", c.Duplicates, c.DupInWindow, c.DupOutside))
	row("interrupted attempts", fmt.Sprintf("%d messages (most attempts for one message: %d)", c.Interrupted, c.MaxAttempts))
	if c.FailedAtSink > 0 {
		row("FAILED but at sink", fmt.Sprint(c.FailedAtSink))
	}
	total := 0
	for _, n := range r.FaultCounts {
		total += n
	}
	row("faults injected", fmt.Sprintf("%d (%s)", total, kv(r.FaultCounts, "none")))
	if cf := r.Cluster; cf != nil {
		row("node stopped", fmt.Sprintf("%s at %.1fs (leader of %s: %v), left down", cf.StoppedNode, cf.StoppedAt, "EMAIL_SEND", cf.WasLeaderOf != ""))
		row("after the stop", fmt.Sprintf("%d accepted, %d received by the sink; longest sink pause %.1fs", cf.AcceptedAfterStop, cf.SentAfterStop, cf.LongestSinkGap))
	}
	row("unexpected process exits", fmt.Sprint(len(r.Unexpected)))
	b.WriteString("\n")
	for _, i := range r.Invariants {
		mark := "ok"
		if !i.OK {
			mark = "**FAILED**"
		}
		fmt.Fprintf(&b, "- %s: %s (%s)", i.Name, mark, i.Detail)
		if !i.OK && len(i.Sample) > 0 {
			fmt.Fprintf(&b, "; e.g. %s", strings.Join(i.Sample, ", "))
		}
		b.WriteString("\n")
	}
	if !r.Drained {
		fmt.Fprintf(&b, "- drain did not finish: %s\n", r.DrainState)
	}
	for _, u := range r.Unexpected {
		fmt.Fprintf(&b, "- unexpected exit: %s\n", u)
	}
	return b.String()
}

// FaultTimeline lists the injected faults.
func (r *Result) FaultTimeline() string {
	var b strings.Builder
	for _, f := range r.Faults {
		fmt.Fprintf(&b, "  %6.1fs  %-13s %s\n", f.At, f.Kind, f.Detail)
	}
	return b.String()
}

// Write saves the result as <dir>/<name>.json and <name>.md.
func (r *Result) Write(dir, name string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	j, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), append(j, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name+".md"), []byte(r.Markdown()), 0o644)
}

func kv(m map[string]int, empty string) string {
	if len(m) == 0 {
		return empty
	}
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func secs(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Second).String()
}
