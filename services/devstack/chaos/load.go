package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// loadConfig shapes the steady load.
type loadConfig struct {
	Messages int
	Rate     float64 // messages per second
	// CallTimeout bounds one SendEmail call; GiveUpAfter bounds the retries of
	// one message (each with the same idempotency key, as a careful client does).
	CallTimeout time.Duration
	GiveUpAfter time.Duration
	// RunID makes idempotency keys unique per run.
	RunID string
}

// acceptance is one message the service answered OK.
type acceptance struct {
	Seq    int
	ID     string
	At     time.Time
	Calls  int
	Replay bool
}

// loadResult is what the clients saw.
type loadResult struct {
	mu       sync.Mutex
	accepted map[string]acceptance // by message id
	bySeq    map[int]string
	rejected map[string]int // permanent error code -> count
	gaveUp   []int          // seqs never answered OK
	errors   map[string]int // transient error code -> count (each retried)
	calls    atomic.Int64
	replays  int
	start    time.Time
	end      time.Time
}

func (r *loadResult) acceptedIDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return sortedKeys(r.accepted)
}

// retryable reports whether a failed SendEmail may be retried with the same
// idempotency key.
func retryable(c codes.Code) bool {
	switch c {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Internal, codes.Unknown, codes.Aborted,
		codes.ResourceExhausted, codes.Canceled:
		return true
	}
	return false
}

// runLoad sends cfg.Messages messages at cfg.Rate, round-robin over clients,
// each retried with its idempotency key until it is answered OK, it is refused
// for good, or GiveUpAfter passed.
func runLoad(ctx context.Context, clients []v1.SendServiceClient, apiKey string, cfg loadConfig) *loadResult {
	res := &loadResult{accepted: map[string]acceptance{}, bySeq: map[int]string{}, rejected: map[string]int{}, errors: map[string]int{}, start: time.Now()}
	body := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 20)
	authCtx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+apiKey)
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	next := time.Now()
	for seq := range cfg.Messages {
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
		if ctx.Err() != nil {
			break
		}
		next = next.Add(interval)
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := &v1.SendEmailRequest{
				Message: &v1.EmailMessage{
					From:     &v1.Address{Address: "chaos@example.com", Name: "Chaos"},
					To:       []*v1.Address{{Address: fmt.Sprintf("rcpt-%d@example.com", seq)}},
					Subject:  fmt.Sprintf("chaos %s #%d", cfg.RunID, seq),
					TextBody: body,
				},
				IdempotencyKey: fmt.Sprintf("chaos-%s-%d", cfg.RunID, seq),
			}
			first := time.Now()
			for call := 0; ; call++ {
				client := clients[(seq+call)%len(clients)]
				cctx, cancel := context.WithTimeout(authCtx, cfg.CallTimeout)
				resp, err := client.SendEmail(cctx, req)
				cancel()
				res.calls.Add(1)
				if err == nil {
					res.mu.Lock()
					res.accepted[resp.GetMessageId()] = acceptance{Seq: seq, ID: resp.GetMessageId(), At: time.Now(), Calls: call + 1, Replay: resp.GetIdempotentReplay()}
					res.bySeq[seq] = resp.GetMessageId()
					if resp.GetIdempotentReplay() {
						res.replays++
					}
					res.mu.Unlock()
					return
				}
				code := status.Code(err)
				res.mu.Lock()
				if !retryable(code) {
					res.rejected[code.String()+": "+status.Convert(err).Message()]++
					res.mu.Unlock()
					return
				}
				res.errors[code.String()]++
				if time.Since(first) > cfg.GiveUpAfter || ctx.Err() != nil {
					res.gaveUp = append(res.gaveUp, seq)
					res.mu.Unlock()
					return
				}
				res.mu.Unlock()
				select {
				case <-ctx.Done():
				case <-time.After(time.Duration(200+50*min(call, 10)) * time.Millisecond):
				}
			}
		}()
	}
	wg.Wait()
	res.end = time.Now()
	return res
}
