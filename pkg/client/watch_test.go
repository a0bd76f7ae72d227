package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// fakeReport is a ReportService in the process: an event stream of n events
// (cursor "c<seq>") whose streams break after perStream events, and a
// message whose report the test scripts.
type fakeReport struct {
	v1.UnimplementedReportServiceServer
	n, perStream int
	// silent: streams send their heartbeat and nothing more.
	silent bool
	// refuse: every WatchEvents call fails with this status.
	refuse error
	// events: when set, the stream's events instead of n generated ones.
	events []*v1.WatchEventsResponse
	// report answers GetMessage (call counts from 1).
	report func(call int) *v1.GetMessageResponse

	mu       sync.Mutex
	requests []*v1.WatchEventsRequest
	gets     int
}

func (f *fakeReport) WatchEvents(req *v1.WatchEventsRequest, st grpc.ServerStreamingServer[v1.WatchEventsResponse]) error {
	f.mu.Lock()
	f.requests = append(f.requests, req)
	f.mu.Unlock()
	if f.refuse != nil {
		return f.refuse
	}
	seq := 0
	if req.GetCursor() != "" {
		seq, _ = strconv.Atoi(strings.TrimPrefix(req.GetCursor(), "c"))
	}
	if err := st.Send(&v1.WatchEventsResponse{Cursor: "c" + strconv.Itoa(seq)}); err != nil {
		return err
	}
	if f.silent {
		<-st.Context().Done()
		return nil
	}
	events := f.events
	if events == nil {
		for i := 1; i <= f.n; i++ {
			events = append(events, &v1.WatchEventsResponse{Event: &v1.MessageEvent{EventId: fmt.Sprint("e", i), Type: "DELIVERED"}})
		}
	}
	sent := 0
	for ; seq < len(events); seq++ {
		if f.perStream > 0 && sent == f.perStream {
			if seq%2 == 0 {
				return status.Error(codes.Unavailable, "connection reset")
			}
			return nil // a clean end of the stream is resumed too
		}
		e := events[seq]
		e.Cursor = "c" + strconv.Itoa(seq+1)
		if err := st.Send(e); err != nil {
			return err
		}
		sent++
	}
	<-st.Context().Done()
	return nil
}

func (f *fakeReport) GetMessage(_ context.Context, req *v1.GetMessageRequest) (*v1.GetMessageResponse, error) {
	f.mu.Lock()
	f.gets++
	n := f.gets
	f.mu.Unlock()
	return f.report(n), nil
}

func startFake(t *testing.T, f v1.ReportServiceServer, opts ...Option) *Client {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	v1.RegisterReportServiceServer(srv, f)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	opts = append([]Option{WithAPIKey("es_test"), WithInsecure(), WithPollInterval(5*time.Millisecond, 20*time.Millisecond),
		WithRetry(RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, PerAttemptTimeout: 5 * time.Second})}, opts...)
	c, err := New(context.Background(), l.Addr().String(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Streams that break every 7 events (with UNAVAILABLE or a clean end) are
// resumed from the last cursor: every event once, in order.
func TestWatchResumesFromTheLastCursor(t *testing.T) {
	f := &fakeReport{n: 50, perStream: 7}
	c := startFake(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []string
	reconnects := 0
	for ev, err := range c.Watch(ctx, &v1.WatchEventsRequest{Types: []string{"DELIVERED"}}, WatchOnReconnect(func(r Reconnect) {
		reconnects++
		if r.Failures != 1 {
			t.Errorf("reconnect %d: %d failures, want 1 (each stream was established)", reconnects, r.Failures)
		}
	})) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev.GetEvent().GetEventId())
		if len(got) == 50 {
			break
		}
	}
	for i, id := range got {
		if want := fmt.Sprint("e", i+1); id != want {
			t.Fatalf("event %d = %s, want %s (got %v)", i, id, want, got)
		}
	}
	if reconnects != 7 {
		t.Errorf("%d reconnects, want 7", reconnects)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, r := range f.requests {
		if want := "c" + strconv.Itoa(7*i); i > 0 && r.GetCursor() != want {
			t.Errorf("request %d: cursor %q, want %q", i, r.GetCursor(), want)
		}
		if len(r.GetTypes()) != 1 {
			t.Errorf("request %d lost its filter: %v", i, r)
		}
	}
}

// Answers a retry would not change end the watch at once, with the status;
// the context's end ends it with the context's error.
func TestWatchEnds(t *testing.T) {
	for _, code := range []codes.Code{codes.OutOfRange, codes.InvalidArgument, codes.Unauthenticated, codes.PermissionDenied} {
		t.Run(code.String(), func(t *testing.T) {
			f := &fakeReport{refuse: status.Error(code, "no")}
			c := startFake(t, f)
			n := 0
			for _, err := range c.Watch(context.Background(), &v1.WatchEventsRequest{Cursor: "c1"}) {
				n++
				var ce *Error
				if status.Code(err) != code || !errors.As(err, &ce) || ce.Method != "WatchEvents" {
					t.Fatalf("err %v, want a *Error with %s", err, code)
				}
			}
			if n != 1 || len(f.requests) != 1 {
				t.Fatalf("%d yields, %d calls; want 1, 1", n, len(f.requests))
			}
		})
	}
	t.Run("context", func(t *testing.T) {
		c := startFake(t, &fakeReport{silent: true})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		for _, err := range c.Watch(ctx, nil) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err %v, want the context's", err)
			}
		}
	})
	t.Run("give up", func(t *testing.T) {
		f := &fakeReport{refuse: status.Error(codes.Unavailable, "down")}
		c := startFake(t, f)
		start := time.Now()
		for _, err := range c.Watch(context.Background(), nil, WatchGiveUpAfter(200*time.Millisecond)) {
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("err %v, want UNAVAILABLE", err)
			}
		}
		if d := time.Since(start); d > 2*time.Second || len(f.requests) < 3 {
			t.Fatalf("gave up after %s and %d calls", d, len(f.requests))
		}
	})
}

// A stream that goes silent past the idle timeout is reopened.
func TestWatchIdleTimeoutReconnects(t *testing.T) {
	f := &fakeReport{silent: true}
	c := startFake(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	beats := 0
	for ev, err := range c.Watch(ctx, &v1.WatchEventsRequest{Cursor: "c3"}, WatchIdleTimeout(50*time.Millisecond), WatchHeartbeats()) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetEvent() != nil || ev.GetCursor() != "c3" {
			t.Fatalf("got %v, want the heartbeat at c3", ev)
		}
		if beats++; beats == 3 {
			break
		}
	}
	if len(f.requests) != 3 {
		t.Fatalf("%d calls, want 3", len(f.requests))
	}
}

// Wait follows the message's events from the oldest retained one; after a
// terminal event it reads the report until the report has caught up.
func TestWaitFollowsTheMessageEvents(t *testing.T) {
	msg := func(s v1.MessageStatus_Value, events ...string) *v1.GetMessageResponse {
		r := &v1.GetMessageResponse{Message: &v1.MessageSummary{MessageId: "m1", Status: s}}
		for _, e := range events {
			r.Events = append(r.Events, &v1.MessageEvent{EventId: e})
		}
		return r
	}
	f := &fakeReport{
		events: []*v1.WatchEventsResponse{
			{MessageId: "m1", Event: &v1.MessageEvent{EventId: "acc", Status: v1.MessageStatus_QUEUED}},
			{MessageId: "m1", Event: &v1.MessageEvent{EventId: "sent", Status: v1.MessageStatus_SENT}},
		},
		// Established: QUEUED; then the report lags the SENT event twice.
		report: func(n int) *v1.GetMessageResponse {
			if n <= 3 {
				return msg(v1.MessageStatus_SENDING, "acc")
			}
			return msg(v1.MessageStatus_SENT, "acc", "sent")
		},
	}
	c := startFake(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := c.Wait(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	if got.GetMessage().GetStatus() != v1.MessageStatus_SENT || f.gets != 4 {
		t.Fatalf("status %v after %d reads, want SENT after 4", got.GetMessage().GetStatus(), f.gets)
	}
	r := f.requests[0]
	if !r.GetFromStart() || len(r.GetMessageIds()) != 1 || r.GetMessageIds()[0] != "m1" {
		t.Fatalf("watch request %v, want from_start on m1", r)
	}
}

// Against a report without WatchEvents, Wait polls.
func TestWaitPollsWithoutWatchEvents(t *testing.T) {
	f := &fakeReport{refuse: status.Error(codes.Unimplemented, "unknown method"), report: func(n int) *v1.GetMessageResponse {
		s := v1.MessageStatus_QUEUED
		if n >= 3 {
			s = v1.MessageStatus_FAILED
		}
		return &v1.GetMessageResponse{Message: &v1.MessageSummary{Status: s}}
	}}
	c := startFake(t, f)
	got, err := c.Wait(context.Background(), "m1")
	if err != nil || got.GetMessage().GetStatus() != v1.MessageStatus_FAILED || f.gets != 3 {
		t.Fatalf("got %v, %v after %d reads; want FAILED after 3", got, err, f.gets)
	}
}
