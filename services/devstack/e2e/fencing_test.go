package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/netguard"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/smtp"
	"github.com/namirasoft/email-sender/pkg/queue"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/worker"
)

// A delivery that stalls between recording its attempt and calling the
// provider (a PostgreSQL restart while it loads the configuration, a NATS
// outage) outlives its lease; JetStream redelivers the job meanwhile, and the
// next delivery takes the message over once the lease has ended. The stalled
// one must then never reach the provider: one copy at the sink, not two.
func TestStalledAttemptThatLostItsLeaseDoesNotSend(t *testing.T) {
	t.Parallel()
	const ackWait, sendTimeout = time.Second, 2 * time.Second
	s := newStack(t, stackOptions{noWorker: true, ackWait: ackWait, sendTimeout: sendTimeout})
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))

	// The first attempt stalls until the next delivery has taken the message
	// over (its own BeforeSend), then goes on as a worker would once its
	// database or NATS is back.
	var first atomic.Bool
	stalled, takenOver := make(chan struct{}), make(chan struct{})
	var once sync.Once
	stall := &worker.Hooks{BeforeSend: func(_ string, attempt int) {
		if attempt > 1 {
			once.Do(func() { close(takenOver) })
			return
		}
		if first.CompareAndSwap(false, true) {
			close(stalled)
			select {
			case <-takenOver:
				time.Sleep(100 * time.Millisecond)
			case <-time.After(30 * time.Second):
			}
		}
	}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 2 {
		guard, err := netguard.New(netguard.Config{AllowNets: loopbackNets})
		require.NoError(t, err)
		sender := smtp.New(smtp.Options{Logger: log, Guard: guard})
		t.Cleanup(func() { _ = sender.Close() })
		cfg := s.workerConfig()
		cfg.Providers = []string{"smtp"}
		w, err := worker.New(ctx, cfg, worker.Deps{
			Pool: s.db.Pool, JetStream: s.js, Telemetry: s.opts.tel("worker"), Logger: log, Keyring: s.keyring,
			Senders: map[string]provider.Sender{"smtp": sender}, Hooks: stall,
		})
		require.NoError(t, err)
		wg.Add(1)
		go func() { defer wg.Done(); _ = w.Run(ctx) }()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })

	id := s.sendOK("a", simple("jane@example.com"))
	<-stalled
	s.waitStatus("a", id, v1.MessageStatus_SENT)
	select {
	case <-takenOver:
	case <-time.After(30 * time.Second):
		t.Fatal("no second delivery took the message over")
	}
	// Let the stalled delivery wake up and do whatever it would do.
	time.Sleep(2 * sendTimeout)
	require.Len(t, arrivedCopies(s, id), 1, "the message reached the sink more than once")
}

func arrivedCopies(s *stack, id string) [][]string {
	var out [][]string
	for _, m := range s.sink.Messages() {
		if containsID(m.Data, id) {
			out = append(out, m.To)
		}
	}
	return out
}

func containsID(data []byte, id string) bool {
	return bytes.Contains(data, []byte("Message-ID: <"+id+"@"))
}

// A delivery that finds an interrupted attempt but ends early itself (its
// database failed) hands the interruption on: the next delivery reports it,
// so that the timeline shows the possible duplicate.
func TestUnreportedInterruptionIsReportedByTheNextDelivery(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	req := simple("jane@example.com")
	req.SendAt = timestamppb.New(time.Now().Add(2 * time.Second))
	id := s.sendOK("a", req)
	// What a released delivery leaves: attempt 2 found attempt 1 interrupted
	// and could not publish that.
	kv, err := s.js.KeyValue(context.Background(), queue.AttemptsBucket)
	require.NoError(t, err)
	rec, err := json.Marshal(map[string]any{"state": "retry", "attempt": 2, "unreported": 1})
	require.NoError(t, err)
	_, err = kv.Put(context.Background(), id, rec)
	require.NoError(t, err)

	resp := s.waitStatus("a", id, v1.MessageStatus_SENT)
	var interrupted *v1.MessageEvent
	for _, e := range resp.GetEvents() {
		if e.GetType() == queue.EventInterrupted {
			interrupted = e
		}
	}
	require.NotNil(t, interrupted, "timeline: %v", eventTypes(resp))
	require.EqualValues(t, 1, interrupted.GetAttempt())
}
