package e2e

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/client"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/testkit/tcprelay"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/report/watch"
)

// The client's Watch reaches the report through a TCP relay that cuts every
// connection three times while 3,000 events of account a (and some of b) are
// published: each time the client reconnects by itself and resumes from its
// last cursor, and the caller gets every event of a once, in stream order,
// none of b's. A cursor older than the retained events then ends the watch
// with OUT_OF_RANGE, returned to the caller.
func TestClientWatchResumesAfterCutConnections(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{noWorker: true})
	relay := tcprelay.Start(t, "127.0.0.1:0", s.reportAddr)
	c := s.newClient("a", client.WithReportTarget(relay.Addr),
		client.WithRetry(client.RetryPolicy{MaxAttempts: 3, InitialBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, PerAttemptTimeout: 10 * time.Second}))
	a, b := s.accounts["a"].AccountID, s.accounts["b"].AccountID
	const total, cuts = 3000, 3
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var (
		mu        sync.Mutex
		published []string
	)
	start := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-start
		for range total / 500 {
			ids := publishEvents(t, s, a, 500)
			publishEvents(t, s, b, 50)
			mu.Lock()
			published = append(published, ids...)
			mu.Unlock()
		}
	}()

	var reconnects atomic.Int32
	var got, cursors []string
	started := false
	for ev, err := range c.Watch(ctx, &v1.WatchEventsRequest{}, client.WatchHeartbeats(), client.WatchOnReconnect(func(r client.Reconnect) {
		reconnects.Add(1)
		require.NotEmpty(t, r.Cursor, "resumed from a cursor")
	})) {
		require.NoError(t, err)
		if !started {
			started = true
			close(start)
		}
		if ev.GetEvent() == nil {
			continue
		}
		got = append(got, ev.GetEvent().GetEventId())
		cursors = append(cursors, ev.GetCursor())
		if n := len(got); n%(total/(cuts+1)) == 0 && n < total {
			relay.Cut() // the network fails under the stream
		}
		if len(got) == total {
			break
		}
	}
	<-done
	require.EqualValues(t, cuts, reconnects.Load(), "one reconnect per cut")
	require.GreaterOrEqual(t, relay.Conns(), int64(cuts+1))
	mu.Lock()
	require.Equal(t, published, got, "every event of a, once, in order")
	mu.Unlock()
	seqs := make([]uint64, len(cursors))
	for i, cur := range cursors {
		var err error
		seqs[i], err = watch.DecodeCursor(cur)
		require.NoError(t, err)
	}
	require.True(t, slices.IsSorted(seqs))
	require.Len(t, slices.Compact(seqs), total, "no duplicate position")

	// The events before the last one are gone: the first cursor is out of range.
	stream, err := s.js.Stream(ctx, queue.EventStream)
	require.NoError(t, err)
	require.NoError(t, stream.Purge(ctx, jetstream.WithPurgeKeep(1)))
	n := 0
	for _, err := range c.Watch(ctx, &v1.WatchEventsRequest{Cursor: cursors[0]}) {
		n++
		require.Equal(t, codes.OutOfRange, status.Code(err), "%v", err)
	}
	require.Equal(t, 1, n)
}

// SendAndWait and Wait follow WatchEvents: the message's own events from the
// oldest retained one (so a message already done, or done before the watch
// began, is not missed), ending at the terminal status with the report's
// timeline; GetMessage is read only when the watch is established and to let
// the report catch up with a terminal event.
func TestClientSendAndWaitFollowsWatchEvents(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	var (
		mu      sync.Mutex
		streams []string
		gets    atomic.Int32
	)
	intercept := client.WithDialOptions(
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			mu.Lock()
			streams = append(streams, method)
			mu.Unlock()
			return streamer(ctx, desc, cc, method, opts...)
		}),
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			if strings.HasSuffix(method, "/GetMessage") {
				gets.Add(1)
			}
			return invoker(ctx, method, req, reply, cc, opts...)
		}))
	c := s.newClient("a", intercept)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	got, sent, err := c.SendAndWait(ctx, simple("watched@example.com"))
	require.NoError(t, err)
	require.Equal(t, v1.MessageStatus_SENT, got.GetMessage().GetStatus())
	require.Equal(t, sent.GetMessageId(), got.GetMessage().GetMessageId())
	require.Contains(t, eventTypes(got), "SENT", "the report caught up with the SENT event")
	mu.Lock()
	require.Equal(t, []string{"/emailsender.v1.ReportService/WatchEvents"}, streams)
	mu.Unlock()
	require.LessOrEqual(t, gets.Load(), int32(10), "GetMessage read %d times", gets.Load())

	// A message that is done before anyone waits: Wait returns it at once.
	id := s.sendOK("a", simple("earlier@example.com"))
	s.waitStatus("a", id, v1.MessageStatus_SENT)
	began := time.Now()
	done, err := c.Wait(ctx, id)
	require.NoError(t, err)
	require.Equal(t, v1.MessageStatus_SENT, done.GetMessage().GetStatus())
	require.Less(t, time.Since(began), 5*time.Second)

	// A final failure is terminal too (the sandbox fails reject@…).
	sb := s.newClient("sandbox", intercept)
	failed, _, err := sb.SendAndWait(ctx, &v1.SendEmailRequest{Message: &v1.EmailMessage{
		From: &v1.Address{Address: "dev@example.com"}, To: []*v1.Address{{Address: "reject@example.com"}}, Subject: "x", TextBody: "x"}})
	require.NoError(t, err)
	require.Equal(t, v1.MessageStatus_FAILED, failed.GetMessage().GetStatus())

	// Another account's message is NOT_FOUND, not waited on.
	_, err = s.newClient("b").Wait(ctx, id)
	require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
}
