//go:build e2ebench

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/queue"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/report"
)

// TestWebhookThroughput measures webhook deliveries per second to a local
// receiver (answering 204 at once): events of one real message, each for a
// recipient of its own (so no delivery waits for another), published to
// EMAIL_EVENTS, fanned out, signed and posted. A measurement, not a check:
// it is built only with the e2ebench tag, so make test never compiles it (the
// stack is newStack's, which takes a *testing.T).
//
//	go test -tags e2ebench -count=1 -run TestWebhookThroughput -v ./e2e/
func TestWebhookThroughput(t *testing.T) {
	b := t
	const events = 20_000
	s := newStack(t, stackOptions{noWorker: true, report: func(c *report.Config, _ *report.Deps) {
		if v, err := strconv.Atoi(os.Getenv("E2E_BENCH_WEBHOOK_BATCH")); err == nil {
			c.Webhooks.Batch = v
		}
	}})
	var n atomic.Int64
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rcv.Close()
	ctx := s.ctx("a")
	_, err := s.webhooks.CreateWebhook(ctx, &v1.CreateWebhookRequest{Url: rcv.URL})
	require.NoError(b, err)
	msgID := s.sendOK("a", simple("bench@example.org"))
	account := s.accounts["a"].AccountID
	for range 2 {
		n.Store(0)
		start := time.Now()
		for from := 0; from < events; from += 1000 {
			var batch []*nats.Msg
			for i := from; i < from+1000; i++ {
				id := uuid.NewString()
				data, _ := proto.Marshal(&queuev1.DeliveryEvent{EventId: id, MessageId: msgID, AccountId: account,
					Type: queue.EventDelivered, Status: v1.MessageStatus_DELIVERED, OccurredAt: timestamppb.Now(), Attempt: 1,
					Recipients: []string{fmt.Sprintf("r%d@example.org", i)}})
				batch = append(batch, queue.NewMsg(queue.EventSubject(account, msgID), id, data))
			}
			for _, err := range queue.PublishAll(context.Background(), s.js, batch, 10*time.Second) {
				require.NoError(b, err)
			}
		}
		for n.Load() < events {
			if time.Since(start) > 5*time.Minute {
				b.Fatalf("only %d of %d delivered", n.Load(), events)
			}
			time.Sleep(5 * time.Millisecond)
		}
		el := time.Since(start)
		t.Logf("webhook delivery: %d events in %s: %.0f events/s", events, el.Round(time.Millisecond), float64(events)/el.Seconds())
	}
}
