package main

import (
	"bytes"
	"context"
	"fmt"
	"net/mail"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/queue"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// terminalStatuses end a message's delivery for this harness (SMTP gives no
// later feedback, so SENT is where a delivered message stays).
var terminalStatuses = []int16{
	int16(msgstatus.Sent), int16(msgstatus.Delivered), int16(msgstatus.Bounced), int16(msgstatus.Complained),
	int16(msgstatus.Failed), int16(msgstatus.Canceled), int16(msgstatus.Suppressed),
}

// waitQuiescent waits until every accepted message is in a terminal state, the
// outbox is empty and no send job is left on JetStream, or until timeout.
func (s *system) waitQuiescent(ctx context.Context, ids []string, timeout time.Duration) (bool, string) {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		done, state := s.quiescent(ctx, ids)
		if done {
			return true, state
		}
		if state != last {
			s.logf("draining: %s", state)
			last = state
		}
		if time.Now().After(deadline) {
			return false, state
		}
		sleepCtx(ctx, time.Second)
		if ctx.Err() != nil {
			return false, state
		}
	}
}

func (s *system) quiescent(ctx context.Context, ids []string) (bool, string) {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var terminal, outbox int
	err := s.pool.QueryRow(qctx, `SELECT
		(SELECT count(*) FROM messages WHERE id = ANY($1::uuid[]) AND status = ANY($2)),
		(SELECT count(*) FROM outbox)`, ids, terminalStatuses).Scan(&terminal, &outbox)
	if err != nil {
		return false, "query: " + err.Error()
	}
	pending := -1
	if info, err := s.js.Stream(qctx, queue.SendStream); err == nil {
		pending = int(info.CachedInfo().State.Msgs)
	}
	state := fmt.Sprintf("%d/%d terminal, %d outbox rows, %d send jobs on the stream", terminal, len(ids), outbox, pending)
	return terminal == len(ids) && outbox == 0 && pending == 0, state
}

// waitSinkStable waits until the sink got nothing new for quiet (bounded by max).
func (s *system) waitSinkStable(ctx context.Context, quiet, max time.Duration) {
	deadline := time.Now().Add(max)
	n, since := s.sink.Count(), time.Now()
	for time.Now().Before(deadline) && time.Since(since) < quiet {
		sleepCtx(ctx, 200*time.Millisecond)
		if c := s.sink.Count(); c != n {
			n, since = c, time.Now()
		}
	}
}

// Invariant is one checked property.
type Invariant struct {
	Name   string   `json:"name"`
	OK     bool     `json:"ok"`
	Detail string   `json:"detail"`
	Sample []string `json:"sample,omitempty"`
}

// Counts are the figures of a run.
type Counts struct {
	Requested         int            `json:"requested"`
	Accepted          int            `json:"accepted"`
	Sent              int            `json:"sent"`
	Failed            int            `json:"failed"`
	FailedBy          map[string]int `json:"failed_by_class"`
	OtherTerminal     int            `json:"other_terminal"`
	NotTerminal       int            `json:"not_terminal"`
	Lost              int            `json:"lost"`
	Rejected          int            `json:"rejected"`
	GaveUp            int            `json:"gave_up"`
	Calls             int64          `json:"calls"`
	CallErrors        map[string]int `json:"call_errors"`
	IdempotentReplays int            `json:"idempotent_replays"`
	SinkMessages      int            `json:"sink_messages"`
	SinkDistinct      int            `json:"sink_distinct"`
	Duplicates        int            `json:"duplicates"`
	DupInWindow       int            `json:"duplicates_in_kill_window"`
	DupOutside        int            `json:"duplicates_outside_window"`
	UnknownAtSink     int            `json:"sink_not_accepted"`
	SentMissing       int            `json:"sent_missing_at_sink"`
	FailedAtSink      int            `json:"failed_but_at_sink"`
	Interrupted       int            `json:"messages_with_interrupted_attempt"`
	MaxAttempts       int            `json:"max_attempts"`
}

// sinkCopy is one message the sink accepted.
type sinkCopy struct {
	at time.Time
}

// messageIDOf extracts the service's message id from the Message-ID header
// "<id@domain>".
func messageIDOf(data []byte) string {
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return ""
	}
	v := strings.Trim(strings.TrimSpace(m.Header.Get("Message-Id")), "<>")
	if i := strings.IndexByte(v, '@'); i >= 0 {
		v = v[:i]
	}
	return v
}

// check compares what the clients were told, what PostgreSQL says and what
// the sink got, and returns the counts and the invariants.
func (s *system) check(ctx context.Context, load *loadResult, faults *faultLog, requested int) (Counts, []Invariant, error) {
	ids := load.acceptedIDs()
	c := Counts{Requested: requested, Accepted: len(ids), FailedBy: map[string]int{}, CallErrors: load.errors,
		Calls: load.calls.Load(), IdempotentReplays: load.replays, GaveUp: len(load.gaveUp)}
	for _, n := range load.rejected {
		c.Rejected += n
	}
	qctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	status := map[string]v1.MessageStatus_Value{}
	rows, err := s.pool.Query(qctx, `SELECT id::text, status, attempts FROM messages WHERE id = ANY($1::uuid[])`, ids)
	if err != nil {
		return c, nil, err
	}
	var (
		id       string
		st       int16
		attempts int32
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &st, &attempts}, func() error {
		status[id] = v1.MessageStatus_Value(st)
		c.MaxAttempts = max(c.MaxAttempts, int(attempts))
		return nil
	}); err != nil {
		return c, nil, err
	}
	interrupted := map[string]bool{}
	failClass := map[string]string{}
	rows, err = s.pool.Query(qctx, `SELECT message_id::text, type, error_class FROM events
		WHERE message_id = ANY($1::uuid[]) AND type IN ($2, $3) ORDER BY occurred_at`, ids, queue.EventInterrupted, queue.EventFailed)
	if err != nil {
		return c, nil, err
	}
	var typ, class string
	if _, err := pgx.ForEachRow(rows, []any{&id, &typ, &class}, func() error {
		if typ == queue.EventInterrupted {
			interrupted[id] = true
		} else {
			failClass[id] = class
		}
		return nil
	}); err != nil {
		return c, nil, err
	}
	c.Interrupted = len(interrupted)

	copies := map[string][]sinkCopy{}
	var unknown, unparsable []string
	accepted := map[string]bool{}
	for _, id := range ids {
		accepted[id] = true
	}
	for _, m := range s.sink.Messages() {
		c.SinkMessages++
		mid := messageIDOf(m.Data)
		if mid == "" {
			unparsable = append(unparsable, m.QueueID)
			continue
		}
		copies[mid] = append(copies[mid], sinkCopy{at: m.ReceivedAt})
	}
	c.SinkDistinct = len(copies)

	var lost, notTerminal, sentMissing, failedAtSink, dupOutside []string
	for _, id := range ids {
		st, ok := status[id]
		switch {
		case !ok:
			lost = append(lost, id)
		case st == msgstatus.Sent || st == msgstatus.Delivered:
			c.Sent++
			if len(copies[id]) == 0 {
				sentMissing = append(sentMissing, id)
			}
		case st == msgstatus.Failed:
			c.Failed++
			cl := failClass[id]
			if cl == "" {
				cl = "unknown"
			}
			c.FailedBy[cl]++
			if len(copies[id]) > 0 {
				failedAtSink = append(failedAtSink, id)
			}
		case msgstatus.Terminal(st):
			c.OtherTerminal++
		default:
			notTerminal = append(notTerminal, id+" "+st.String())
		}
	}
	for mid, cs := range copies {
		if !accepted[mid] {
			unknown = append(unknown, mid)
		}
		for i := 1; i < len(cs); i++ {
			c.Duplicates++
			if interrupted[mid] && killBetween(faults, cs[i-1].at.Add(-time.Second), cs[i].at) {
				c.DupInWindow++
			} else {
				c.DupOutside++
				dupOutside = append(dupOutside, mid)
			}
		}
	}
	sort.Strings(unknown)
	c.Lost, c.NotTerminal, c.SentMissing, c.FailedAtSink = len(lost), len(notTerminal), len(sentMissing), len(failedAtSink)
	c.UnknownAtSink = len(unknown) + len(unparsable)

	load.mu.Lock()
	unclear := load.errors[codes.Internal.String()] + load.errors[codes.Unknown.String()]
	load.mu.Unlock()
	inv := []Invariant{
		{Name: "every accepted message is stored", OK: len(lost) == 0, Detail: fmt.Sprintf("%d of %d accepted ids missing from PostgreSQL", len(lost), len(ids)), Sample: sample(lost)},
		{Name: "every accepted message is in a terminal state", OK: len(notTerminal) == 0, Detail: fmt.Sprintf("%d not terminal", len(notTerminal)), Sample: sample(notTerminal)},
		{Name: "every message the sink got was accepted", OK: len(unknown)+len(unparsable) == 0, Detail: fmt.Sprintf("%d sink messages with an id nobody was given, %d without a Message-ID", len(unknown), len(unparsable)), Sample: sample(append(unknown, unparsable...))},
		{Name: "every SENT message is at the sink", OK: len(sentMissing) == 0, Detail: fmt.Sprintf("%d SENT but never received", len(sentMissing)), Sample: sample(sentMissing)},
		{Name: "no duplicate outside the kill-after-accept window", OK: len(dupOutside) == 0, Detail: fmt.Sprintf("%d duplicates: %d in the window (interrupted attempt, worker SIGKILLed between the copies), %d outside", c.Duplicates, c.DupInWindow, c.DupOutside), Sample: sample(dupOutside)},
		{Name: "every request was answered", OK: c.Rejected == 0 && c.GaveUp == 0, Detail: fmt.Sprintf("%d refused for good, %d given up after retries", c.Rejected, c.GaveUp), Sample: sample(sortedKeys(load.rejected))},
		{Name: "infrastructure failures are answered UNAVAILABLE", OK: unclear == 0,
			Detail: fmt.Sprintf("%d calls answered INTERNAL or UNKNOWN (a client cannot tell whether to retry); retried: %s", unclear, formatCodes(load.errors))},
	}
	return c, inv, nil
}

// killBetween reports whether a worker was SIGKILLed within [from, to].
func killBetween(faults *faultLog, from, to time.Time) bool {
	if faults == nil {
		return false
	}
	faults.mu.Lock()
	defer faults.mu.Unlock()
	for _, k := range faults.workerKills {
		if !k.Before(from) && !k.After(to) {
			return true
		}
	}
	return false
}

func sample(list []string) []string {
	if len(list) > 5 {
		return list[:5]
	}
	return list
}

// formatCodes is "Unavailable 12, DeadlineExceeded 3" (most first).
func formatCodes(m map[string]int) string {
	type kv struct {
		k string
		v int
	}
	var l []kv
	for k, v := range m {
		l = append(l, kv{k, v})
	}
	sort.Slice(l, func(i, j int) bool { return l[i].v > l[j].v || l[i].v == l[j].v && l[i].k < l[j].k })
	parts := make([]string, 0, len(l))
	for _, e := range l {
		parts = append(parts, fmt.Sprintf("%s %d", e.k, e.v))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
