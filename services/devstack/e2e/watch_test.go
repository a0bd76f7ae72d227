package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/queue"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/report/watch"
)

// publishEvents puts n DELIVERED events of account on the events stream (ten
// messages' worth), occurred_at = now, and returns their ids in order.
func publishEvents(t *testing.T, s *stack, account string, n int) []string {
	t.Helper()
	msgs := make([]string, 10)
	for i := range msgs {
		msgs[i] = uuid.Must(uuid.NewV7()).String()
	}
	ids := make([]string, 0, n)
	for start := 0; start < n; start += 500 {
		var batch []*nats.Msg
		for i := start; i < min(n, start+500); i++ {
			id := uuid.NewString()
			mid := msgs[i%len(msgs)]
			data, err := proto.Marshal(&queuev1.DeliveryEvent{EventId: id, MessageId: mid, AccountId: account,
				Type: queue.EventDelivered, Status: v1.MessageStatus_DELIVERED, OccurredAt: timestamppb.Now(), Attempt: 1})
			require.NoError(t, err)
			batch = append(batch, queue.NewMsg(queue.EventSubject(account, mid), id, data))
			ids = append(ids, id)
		}
		for _, err := range queue.PublishAll(context.Background(), s.js, batch, 10*time.Second) {
			require.NoError(t, err)
		}
	}
	return ids
}

// TestWatchEventsResumesAfterKilledConnection: 10,000 events of account a,
// published while a watcher reads them and its connection is killed four
// times (the client connection closed under the stream); each time it
// resumes with the last cursor it got. It receives every event exactly once,
// in stream order, and none of account b's (published in between). A cursor
// from before the stream's first retained event is OUT_OF_RANGE, a forged one
// INVALID_ARGUMENT. Then the event-to-client latency of a live watch is
// measured (logged).
func TestWatchEventsResumesAfterKilledConnection(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{noWorker: true})
	a, b := s.accounts["a"].AccountID, s.accounts["b"].AccountID
	const total = 10_000

	var (
		mu        sync.Mutex
		published []string
	)
	start := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-start
		for range total / 1000 {
			ids := publishEvents(t, s, a, 1000)
			publishEvents(t, s, b, 100)
			mu.Lock()
			published = append(published, ids...)
			mu.Unlock()
		}
	}()

	var (
		got     []string
		seqs    []uint64
		cursor  string
		kills   int
		started bool
	)
	for len(got) < total {
		conn := dial(t, s.reportAddr)
		client := v1.NewReportServiceClient(conn)
		ctx, cancel := context.WithTimeout(s.ctx("a"), time.Minute)
		st, err := client.WatchEvents(ctx, &v1.WatchEventsRequest{Cursor: cursor})
		require.NoError(t, err)
		first, err := st.Recv()
		require.NoError(t, err)
		require.Nil(t, first.GetEvent(), "the first response is a heartbeat")
		if cursor != "" {
			require.Equal(t, cursor, first.GetCursor(), "a resumed watch starts at its cursor")
		}
		cursor = first.GetCursor()
		if !started {
			started = true
			close(start)
		}
		limit := len(got) + 2000 + 37*kills
		for len(got) < total {
			r, err := st.Recv()
			require.NoError(t, err)
			cursor = r.GetCursor()
			if r.GetEvent() == nil {
				continue
			}
			require.Empty(t, r.GetWebhookId())
			got = append(got, r.GetEvent().GetEventId())
			seq, err := watch.DecodeCursor(r.GetCursor())
			require.NoError(t, err)
			seqs = append(seqs, seq)
			if len(got) >= limit && kills < 4 {
				break
			}
		}
		// Killed: the connection goes away under the stream.
		require.NoError(t, conn.Close())
		cancel()
		kills++
	}
	<-done
	require.Equal(t, 5, kills, "four kills and the last connection")
	require.Len(t, got, total)
	require.True(t, slices.IsSorted(seqs), "cursors grow")
	require.Len(t, slices.Compact(slices.Clone(seqs)), total, "no duplicate position")
	mu.Lock()
	require.Equal(t, published, got, "every event of a, once, in order")
	mu.Unlock()

	// Cursors the stream cannot honour.
	stream, err := s.js.Stream(context.Background(), queue.EventStream)
	require.NoError(t, err)
	require.NoError(t, stream.Purge(context.Background(), jetstream.WithPurgeKeep(1)))
	for _, c := range []struct {
		cursor string
		code   codes.Code
	}{
		{watch.EncodeCursor(1), codes.OutOfRange},
		{watch.EncodeCursor(1 << 40), codes.InvalidArgument},
		{"not-a-cursor", codes.InvalidArgument},
	} {
		_, err := watchFirst(s, &v1.WatchEventsRequest{Cursor: c.cursor})(s.ctx("a"))
		require.Equal(t, c.code, status.Code(err), "cursor %q: %v", c.cursor, err)
	}

	// Latency: events published one by one to a live watch.
	lat := watchLatency(t, s, a, 1000)
	t.Logf("WatchEvents event-to-client latency over %d events: p50 %s, p99 %s, max %s", len(lat), lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1])
}

// watchLatency publishes n events of account one at a time (each awaited)
// while a watch reads them, and returns the sorted publish-to-receipt times.
func watchLatency(t *testing.T, s *stack, account string, n int) []time.Duration {
	t.Helper()
	ctx, cancel := context.WithCancel(s.ctx("a"))
	defer cancel()
	st, err := s.report.WatchEvents(ctx, &v1.WatchEventsRequest{Types: []string{queue.EventDelivered}})
	require.NoError(t, err)
	_, err = st.Recv()
	require.NoError(t, err)
	sent := make(map[string]time.Time, n)
	var mu sync.Mutex
	go func() {
		mid := uuid.Must(uuid.NewV7()).String()
		for range n {
			id := uuid.NewString()
			data, _ := proto.Marshal(&queuev1.DeliveryEvent{EventId: id, MessageId: mid, AccountId: account,
				Type: queue.EventDelivered, Status: v1.MessageStatus_DELIVERED, OccurredAt: timestamppb.Now(), Attempt: 1})
			mu.Lock()
			sent[id] = time.Now()
			mu.Unlock()
			if _, err := s.js.PublishMsg(ctx, queue.NewMsg(queue.EventSubject(account, mid), id, data)); err != nil {
				return
			}
		}
	}()
	out := make([]time.Duration, 0, n)
	for len(out) < n {
		r, err := st.Recv()
		require.NoError(t, err)
		if r.GetEvent() == nil {
			continue
		}
		now := time.Now()
		mu.Lock()
		out = append(out, now.Sub(sent[r.GetEvent().GetEventId()]))
		mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// TestWatchEventsOverSSE: GET /v1/events:sse streams a real message's events
// as Server-Sent Events (id = cursor), behind the same gate (no key: 401).
func TestWatchEventsOverSSE(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{http: true})
	code, _ := httpRaw(t, "GET", s.reportURL+watch.SSEPath, "", nil)
	require.Equal(t, http.StatusUnauthorized, code)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", s.reportURL+watch.SSEPath+"?types=SENT&types=ACCEPTED", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+s.accounts["a"].APIKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))

	id := s.sendOK("a", simple("sse@example.org"))
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var events []string
	for sc.Scan() && len(events) < 2 {
		line := sc.Text()
		if typ, ok := strings.CutPrefix(line, "event: "); ok && typ != "heartbeat" {
			events = append(events, typ)
		}
		if data, ok := strings.CutPrefix(line, "data: "); ok && len(events) > 0 {
			require.Contains(t, data, id, "the event is the message's")
		}
	}
	require.Equal(t, []string{queue.EventAccepted, queue.EventSent}, events, fmt.Sprint(sc.Err()))
}
