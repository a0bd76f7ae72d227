package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
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

// dispatch posts due deliveries until ctx ends; a pass runs every Poll, or
// at once when the fan-out recorded new deliveries.
func (s *Service) dispatch(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	for {
		n, err := s.DispatchOnce(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "webhook dispatch pass failed", "error", err)
		}
		if n >= s.cfg.Batch {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.wakeup:
		}
	}
}

// wake makes the dispatcher run a pass now.
func (s *Service) wake() {
	select {
	case s.wakeup <- struct{}{}:
	default:
	}
}

// DispatchOnce claims due deliveries, posts them (Concurrency at a time) and
// records the outcomes. It returns how many it claimed.
func (s *Service) DispatchOnce(ctx context.Context) (int, error) {
	now := s.now()
	cs, err := s.store.claim(ctx, now, s.cfg.Lease, s.cfg.Batch)
	if err != nil || len(cs) == 0 {
		return 0, err
	}
	ids := map[string]bool{}
	for _, c := range cs {
		ids[c.EndpointID] = true
	}
	epIDs := make([]string, 0, len(ids))
	for id := range ids {
		epIDs = append(epIDs, id)
	}
	eps, err := s.store.endpointsByID(ctx, epIDs)
	if err != nil {
		return 0, err
	}
	secrets := map[string][]string{}
	for id, e := range eps {
		if secrets[id], err = s.openSecrets(e, now); err != nil {
			s.log.ErrorContext(ctx, "open webhook secret", "webhook_id", id, "account_id", e.AccountID, "error", err)
		}
	}
	results := make([]attempt, len(cs))
	sem := make(chan struct{}, s.cfg.Concurrency)
	var wg sync.WaitGroup
	for i, c := range cs {
		e := eps[c.EndpointID]
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i] = s.post(ctx, e, secrets[c.EndpointID], c.ID, c.Payload)
			results[i].DeliveryID, results[i].EndpointID, results[i].AccountID = c.ID, c.EndpointID, c.AccountID
			s.settle(&results[i], c.Attempts)
		}()
	}
	wg.Wait()
	// Record with the pass's clock reading after the posts.
	done := s.now()
	if err := s.store.record(context.WithoutCancel(ctx), results, done); err != nil {
		return len(cs), err
	}
	s.disableFailing(context.WithoutCancel(ctx), results, done)
	return len(cs), nil
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
// continuously for DisableAfter.
func (s *Service) disableFailing(ctx context.Context, results []attempt, now time.Time) {
	var failing []string
	seen := map[string]bool{}
	for _, a := range results {
		if a.StatusCode == http.StatusGone && !seen[a.EndpointID] {
			seen[a.EndpointID] = true
			s.disable(ctx, a.EndpointID, a.AccountID, "the endpoint answered 410 Gone", now)
		}
	}
	for _, a := range results {
		if !seen[a.EndpointID] && (a.StatusCode < 200 || a.StatusCode >= 300) {
			seen[a.EndpointID] = true
			failing = append(failing, a.EndpointID)
		}
	}
	if len(failing) == 0 {
		return
	}
	since, err := s.store.failingSince(ctx, failing, now.Add(-s.cfg.DisableAfter))
	if err != nil {
		s.log.WarnContext(ctx, "webhook failure runs", "error", err)
		return
	}
	accounts := map[string]string{}
	for _, a := range results {
		accounts[a.EndpointID] = a.AccountID
	}
	for id, t := range since {
		s.disable(ctx, id, accounts[id], fmt.Sprintf("deliveries failed continuously since %s", t.UTC().Format(time.RFC3339)), now)
	}
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
