package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/queue"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
)

// snippetBytes is how much of an answer the delivery log keeps.
const snippetBytes = 256

// The dispatcher is a pipeline: a claimer leases due deliveries (a pass
// every Poll, at once when woken or when the last pass was full), the fan-out
// hands over the new deliveries it stored claimed, Concurrency senders post
// them, and a recorder stores the outcomes in batches of what has come in
// meanwhile. Claiming, posting and recording overlap; at most 2×Batch
// deliveries are claimed and not yet recorded.
//
// Order per (endpoint, message, recipient) holds as in one pass: a delivery
// is claimed (or stored claimed) only while no earlier one of its endpoint,
// message and recipient is pending, and a claimed one stays pending (leased)
// until its outcome is recorded.

func (s *Service) newPipeline() *pipeline {
	return &pipeline{
		s:        s,
		jobs:     make(chan job, s.cfg.Batch),
		results:  make(chan attempt, s.cfg.Batch),
		released: make(chan struct{}, 1),
		room:     2 * s.cfg.Batch,
		holds:    newHolds(s.cfg.Lease),
	}
}

// start runs the senders and the recorder until stop (after every producer
// of jobs, the claimer and the fan-out, has returned).
func (p *pipeline) start(ctx context.Context) (stop func()) {
	var senders, recorder sync.WaitGroup
	for range p.s.cfg.Concurrency {
		senders.Go(func() { p.send(ctx) })
	}
	recorder.Go(func() { p.record(context.WithoutCancel(ctx)) })
	return func() {
		close(p.jobs)
		senders.Wait()
		close(p.results)
		recorder.Wait()
	}
}

// wake makes the dispatcher claim now.
func (s *Service) wake() {
	select {
	case s.wakeup <- struct{}{}:
	default:
	}
}

// job is a claimed delivery with what posting it needs.
type job struct {
	claimed
	endpoint endpoint
	secrets  []string
	// claimedAt is when the claim that took it began (holds).
	claimedAt time.Time
}

type pipeline struct {
	s        *Service
	jobs     chan job
	results  chan attempt
	released chan struct{}
	holds    *holds

	mu       sync.Mutex
	inFlight int // claimed, not yet recorded
	room     int // most in flight
}

// claim leases due deliveries and hands them to the senders until ctx ends.
func (p *pipeline) claim(ctx context.Context) {
	s := p.s
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	for ctx.Err() == nil {
		p.mu.Lock()
		limit := min(s.cfg.Batch, p.room-p.inFlight)
		p.mu.Unlock()
		if limit < max(s.cfg.Batch/4, 1) {
			// Full: wait for the recorder.
			select {
			case <-ctx.Done():
			case <-p.released:
			}
			continue
		}
		n, err := p.claimOnce(ctx, limit)
		if err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "webhook dispatch pass failed", "error", err)
		}
		if err == nil && n == limit {
			continue
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-s.wakeup:
		}
	}
}

// claimOnce claims up to limit due deliveries and queues them for the senders.
func (p *pipeline) claimOnce(ctx context.Context, limit int) (int, error) {
	s := p.s
	began := time.Now()
	now := s.now()
	cs, err := s.store.claim(ctx, now, s.cfg.Lease, limit)
	if err != nil || len(cs) == 0 {
		return 0, err
	}
	p.mu.Lock()
	p.inFlight += len(cs)
	p.mu.Unlock()
	return p.queue(ctx, cs, began), nil
}

// reserve takes n in-flight places if there is room for them.
func (p *pipeline) reserve(n int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n == 0 || p.inFlight+n > p.room {
		return false
	}
	p.inFlight += n
	return true
}

// enqueue queues the deliveries of ds the fan-out stored claimed (leased,
// whose places it reserved).
func (p *pipeline) enqueue(ctx context.Context, ds []delivery, leased []string, began time.Time) {
	want := make(map[string]bool, len(leased))
	for _, id := range leased {
		want[id] = true
	}
	cs := make([]claimed, 0, len(leased))
	for _, d := range ds {
		if want[d.ID] {
			delete(want, d.ID) // a delivery is in ds once
			cs = append(cs, claimed{ID: d.ID, EndpointID: d.EndpointID, AccountID: d.AccountID, EventType: d.EventType, Payload: d.Payload})
		}
	}
	p.release(len(leased) - len(cs)) // none, unless ds had a duplicate
	p.queue(ctx, cs, began)
}

// queue hands claimed deliveries (their places taken) to the senders with
// their endpoints and secrets, and returns how many it queued: those not
// queued (ctx ended, or the endpoints could not be read) stay leased and are
// claimed again when the lease ends.
func (p *pipeline) queue(ctx context.Context, cs []claimed, began time.Time) int {
	s := p.s
	now := s.now()
	ids := map[string]bool{}
	for _, c := range cs {
		ids[c.EndpointID] = true
	}
	eps, err := s.store.endpointsByID(context.WithoutCancel(ctx), slices.Collect(maps.Keys(ids)))
	if err != nil {
		s.log.WarnContext(ctx, "webhook endpoints; deliveries wait for their lease", "deliveries", len(cs), "error", err)
		p.release(len(cs))
		return 0
	}
	secrets := map[string][]string{}
	for id, e := range eps {
		if secrets[id], err = s.openSecrets(e, now); err != nil {
			s.log.ErrorContext(ctx, "open webhook secret", "webhook_id", id, "account_id", e.AccountID, "error", err)
		}
	}
	for i, c := range cs {
		select {
		case p.jobs <- job{claimed: c, endpoint: eps[c.EndpointID], secrets: secrets[c.EndpointID], claimedAt: began}:
		case <-ctx.Done():
			p.release(len(cs) - i)
			return i
		}
	}
	return len(cs)
}

// release frees n in-flight places.
func (p *pipeline) release(n int) {
	p.mu.Lock()
	p.inFlight -= n
	p.mu.Unlock()
	select {
	case p.released <- struct{}{}:
	default:
	}
}

// send posts jobs. Once ctx ends, jobs not yet posted are dropped: they stay
// leased and are taken again when the lease ends.
func (p *pipeline) send(ctx context.Context) {
	s := p.s
	for j := range p.jobs {
		if ctx.Err() != nil {
			p.release(1)
			continue
		}
		var a attempt
		if p.holds.held(j.EndpointID, j.claimedAt) {
			// The endpoint is being (or was) disabled since the claim: the
			// delivery is held like the endpoint's others, not attempted.
			a = attempt{At: s.now(), State: "pending", Attempts: j.Attempts, Held: true}
			a.Next = a.At
		} else {
			a = s.post(context.WithoutCancel(ctx), j.endpoint, j.secrets, j.ID, j.Payload)
			s.settle(&a, j.Attempts)
			if a.StatusCode == http.StatusGone {
				p.holds.gone(j.EndpointID)
			}
		}
		a.DeliveryID, a.EndpointID, a.AccountID = j.ID, j.EndpointID, j.AccountID
		p.results <- a
	}
}

// record stores outcomes as they come, in batches of up to Batch.
func (p *pipeline) record(ctx context.Context) {
	s := p.s
	batch := make([]attempt, 0, s.cfg.Batch)
	for a := range p.results {
		batch = append(batch[:0], a)
	more:
		for len(batch) < s.cfg.Batch {
			select {
			case a, ok := <-p.results:
				if !ok {
					break more
				}
				batch = append(batch, a)
			default:
				break more
			}
		}
		done := s.now()
		if err := s.store.record(ctx, batch, done); err != nil {
			// Not recorded: the lease runs out and the deliveries are
			// attempted again (at least once).
			s.log.WarnContext(ctx, "record webhook attempts", "attempts", len(batch), "error", err)
		} else {
			for _, id := range s.disableFailing(ctx, batch, done) {
				p.holds.disabled(id)
			}
		}
		// A 410 is settled either way: disabled now, or (not recorded)
		// attempted again by a later claim.
		for _, a := range batch {
			if !a.Held && a.StatusCode == http.StatusGone {
				p.holds.disabled(a.EndpointID)
			}
		}
		p.release(len(batch))
	}
}

// holds tracks endpoints disabled while their deliveries are in the
// pipeline: a delivery claimed before its endpoint was disabled is held,
// not posted.
type holds struct {
	mu         sync.Mutex
	goneSeen   map[string]bool      // answered 410, not yet disabled
	disabledAt map[string]time.Time // when the recorder disabled it
	// keep: a claim older than this is past its lease, so entries can go.
	keep time.Duration
}

func newHolds(lease time.Duration) *holds {
	return &holds{goneSeen: map[string]bool{}, disabledAt: map[string]time.Time{}, keep: 2 * lease}
}

func (h *holds) gone(id string) {
	h.mu.Lock()
	h.goneSeen[id] = true
	h.mu.Unlock()
}

func (h *holds) disabled(id string) {
	h.mu.Lock()
	delete(h.goneSeen, id)
	h.disabledAt[id] = time.Now()
	for k, t := range h.disabledAt {
		if time.Since(t) > h.keep {
			delete(h.disabledAt, k)
		}
	}
	h.mu.Unlock()
}

// held reports whether a delivery to endpoint id claimed at claimedAt is to
// be held: the endpoint answered 410 and is being disabled, or it was
// disabled after the claim began (a claim that began later saw it disabled,
// or enabled again).
func (h *holds) held(id string, claimedAt time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.goneSeen[id] {
		return true
	}
	t, ok := h.disabledAt[id]
	return ok && claimedAt.Before(t)
}

// settle sets the delivery's state after attempt number attempts+1.
func (s *Service) settle(a *attempt, attempts int) {
	a.Attempts = attempts + 1
	switch {
	case a.StatusCode >= 200 && a.StatusCode < 300:
		a.State, a.Next = "succeeded", a.At
	case a.StatusCode == http.StatusGone:
		// Held (pending) while the endpoint is disabled; re-enabling it sends
		// the delivery again with the attempts it has left.
		a.State, a.Next = "pending", a.At
		a.Attempts = attempts
	case a.Attempts > len(Schedule):
		a.State, a.Next = "failed", a.At
	default:
		a.State, a.Next = "pending", a.At.Add(s.jitter(Schedule[a.Attempts-1]))
	}
}

// jitter varies d by ±Jitter.
func (s *Service) jitter(d time.Duration) time.Duration {
	if s.cfg.Jitter == 0 {
		return d
	}
	f := 1 + s.cfg.Jitter*(2*s.rand()-1)
	return time.Duration(float64(d) * f)
}

// openSecrets are the secrets that sign for e now: its own, and the previous
// one until it expires.
func (s *Service) openSecrets(e endpoint, now time.Time) ([]string, error) {
	if s.keyring == nil {
		return nil, errors.New("no MASTER_KEYS: webhook secrets cannot be opened")
	}
	cur, err := s.keyring.Open(e.Secret, []byte(e.ID))
	if err != nil {
		return nil, fmt.Errorf("open webhook secret: %w", err)
	}
	out := []string{string(cur)}
	if e.PreviousSecret != nil && e.PreviousExpiresAt != nil && now.Before(*e.PreviousExpiresAt) {
		prev, err := s.keyring.Open(e.PreviousSecret, []byte(e.ID))
		if err != nil {
			return nil, fmt.Errorf("open previous webhook secret: %w", err)
		}
		out = append(out, string(prev))
	}
	return out, nil
}

// post makes one attempt.
func (s *Service) post(ctx context.Context, e endpoint, secrets []string, id string, body []byte) attempt {
	at := s.now()
	a := attempt{At: at}
	if e.ID == "" || len(secrets) == 0 {
		a.Error = "endpoint or its secret unavailable"
		return a
	}
	h, err := Headers(secrets, id, at, body)
	if err != nil {
		a.Error = "signing failed"
		return a
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, e.URL, bytes.NewReader(body))
	if err != nil {
		a.Error = "bad endpoint url"
		return a
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Namirasoft-Email-Sender-Webhooks/1")
	start := time.Now()
	resp, err := s.client.Do(req)
	a.Latency = time.Since(start)
	if err != nil {
		a.Error = describe(err)
		return a
	}
	defer resp.Body.Close()
	buf := make([]byte, snippetBytes)
	n, _ := io.ReadFull(resp.Body, buf)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	a.StatusCode = resp.StatusCode
	a.Snippet = validUTF8(buf[:n])
	return a
}

// describe is an attempt's error as the owner may see it: no addresses of
// ours (netguard's refusal names none).
func describe(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case strings.Contains(err.Error(), "connection refused by policy"):
		return "refused: the host is not a public internet address"
	case strings.Contains(err.Error(), "connection refused"):
		return "connection refused"
	case strings.Contains(err.Error(), "no such host"):
		return "host not found"
	default:
		return "connection failed"
	}
}

func validUTF8(b []byte) string {
	for len(b) > 0 && !utf8.Valid(b) {
		b = b[:len(b)-1]
	}
	return strings.ToValidUTF8(string(b), "")
}

// disableFailing disables endpoints that answered 410, and those failing
// continuously for DisableAfter; it returns the endpoints it disabled (or
// tried to). Held deliveries were not attempted and count for neither.
func (s *Service) disableFailing(ctx context.Context, results []attempt, now time.Time) []string {
	var failing, out []string
	seen := map[string]bool{}
	for _, a := range results {
		if !a.Held && a.StatusCode == http.StatusGone && !seen[a.EndpointID] {
			seen[a.EndpointID] = true
			s.disable(ctx, a.EndpointID, a.AccountID, "the endpoint answered 410 Gone", now)
			out = append(out, a.EndpointID)
		}
	}
	for _, a := range results {
		if !a.Held && !seen[a.EndpointID] && (a.StatusCode < 200 || a.StatusCode >= 300) {
			seen[a.EndpointID] = true
			failing = append(failing, a.EndpointID)
		}
	}
	if len(failing) == 0 {
		return out
	}
	since, err := s.store.failingSince(ctx, failing, now.Add(-s.cfg.DisableAfter))
	if err != nil {
		s.log.WarnContext(ctx, "webhook failure runs", "error", err)
		return out
	}
	accounts := map[string]string{}
	for _, a := range results {
		accounts[a.EndpointID] = a.AccountID
	}
	for id, t := range since {
		s.disable(ctx, id, accounts[id], fmt.Sprintf("deliveries failed continuously since %s", t.UTC().Format(time.RFC3339)), now)
		out = append(out, id)
	}
	return out
}

// disable disables an endpoint and tells the owner with a WEBHOOK_DISABLED
// event on the events stream (WatchEvents shows it; the report's consumer
// drops it as an event of no message).
func (s *Service) disable(ctx context.Context, id, account, reason string, now time.Time) {
	did, err := s.store.disable(ctx, id, reason, now)
	if err != nil || !did {
		if err != nil {
			s.log.WarnContext(ctx, "disable webhook", "webhook_id", id, "error", err)
		}
		return
	}
	s.log.InfoContext(ctx, "webhook disabled", "webhook_id", id, "account_id", account, "reason", reason)
	evID := uuid.NewString()
	data, err := proto.Marshal(&queuev1.DeliveryEvent{
		EventId: evID, MessageId: id, AccountId: account, Type: queue.EventWebhookDisabled,
		OccurredAt: timestamppb.New(now), Detail: reason, WebhookId: id,
	})
	if err != nil {
		return
	}
	m := queue.NewMsg(queue.EventSubject(account, id), evID, data)
	if err := queue.PublishAll(ctx, s.js, []*nats.Msg{m}, 5*time.Second)[0]; err != nil {
		s.log.WarnContext(ctx, "publish webhook disabled event", "webhook_id", id, "error", err)
	}
}

// randFloat is the default jitter source.
func randFloat() float64 { return rand.Float64() }
