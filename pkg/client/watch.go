package client

import (
	"context"
	"errors"
	"io"
	"iter"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// DefaultWatchIdleTimeout is how long Watch waits for any response (an event
// or a heartbeat, which the server sends every 15 s by default) before it
// takes the connection for dead and reconnects.
const DefaultWatchIdleTimeout = time.Minute

// WatchOption configures Watch.
type WatchOption func(*watchSettings)

type watchSettings struct {
	heartbeats  bool
	idle        time.Duration
	giveUpAfter time.Duration
	onReconnect func(Reconnect)
}

// Reconnect describes a broken stream that Watch is about to resume.
type Reconnect struct {
	// Err is why the stream (or the attempt to open it) ended.
	Err error
	// Cursor is where the watch resumes: the last cursor received (empty when
	// no stream was established yet).
	Cursor string
	// Delay is the wait before the next attempt.
	Delay time.Duration
	// Failures is the number of consecutive attempts that failed, this one
	// included (1 after a stream that was established broke).
	Failures int
}

// WatchHeartbeats makes Watch yield heartbeats too (responses without an
// event: the first of each stream and those of an idle stream). Their cursor
// is the position of the watch; a program that stores cursors can store
// these as well so that a resume skips events the filters dropped.
func WatchHeartbeats() WatchOption {
	return func(s *watchSettings) { s.heartbeats = true }
}

// WatchIdleTimeout sets how long a stream may stay silent (no event and no
// heartbeat) before Watch reconnects (DefaultWatchIdleTimeout; 0: never).
// Keep it above the server's REPORT_WATCH_HEARTBEAT.
func WatchIdleTimeout(d time.Duration) WatchOption {
	return func(s *watchSettings) { s.idle = d }
}

// WatchGiveUpAfter makes Watch return the last error once it has failed to
// (re)establish a stream for d (0, the default: it keeps trying while the
// context lives).
func WatchGiveUpAfter(d time.Duration) WatchOption {
	return func(s *watchSettings) { s.giveUpAfter = d }
}

// WatchOnReconnect calls f before each wait between attempts (to log it, say).
func WatchOnReconnect(f func(Reconnect)) WatchOption {
	return func(s *watchSettings) { s.onReconnect = f }
}

// Watch streams the account's events matching req (ReportService.WatchEvents)
// as an iterator, one response per event, in the account's event order, until
// ctx ends or an error the watch cannot get past.
//
// A stream that breaks (the connection dropped, the report service restarted,
// nothing heard for WatchIdleTimeout) is reopened after a backoff (the
// client's RetryPolicy: InitialBackoff growing to MaxBackoff, with jitter,
// without an attempt limit unless WatchGiveUpAfter) from the last cursor
// received, so the events come with no gap and no duplicate. req.Cursor and
// req.FromStart say where the first stream starts; the caller's req is not
// changed.
//
// The iterator yields a non-nil error once, last: ctx's error when ctx ends;
// otherwise a *Error around the gRPC status: OUT_OF_RANGE when the cursor is
// older than the retained events (start a new watch and catch up with
// ListMessages), INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED and the
// other answers that a retry would not change. Each response's cursor is
// where a later Watch (req.Cursor) resumes after it.
func (c *Client) Watch(ctx context.Context, req *v1.WatchEventsRequest, opts ...WatchOption) iter.Seq2[*v1.WatchEventsResponse, error] {
	s := watchSettings{idle: DefaultWatchIdleTimeout}
	for _, o := range opts {
		o(&s)
	}
	return func(yield func(*v1.WatchEventsResponse, error) bool) {
		r := proto.CloneOf(req)
		if r == nil {
			r = &v1.WatchEventsRequest{}
		}
		failures := 0
		downSince := time.Now()
		for {
			got, err := c.watchOnce(ctx, r, &s, yield)
			if got {
				failures, downSince = 0, time.Now()
			}
			if err == nil { // the caller stopped
				return
			}
			if ctx.Err() != nil {
				yield(nil, ctx.Err())
				return
			}
			failures++
			delay, ok := c.watchRetry(err, failures)
			if ok && s.giveUpAfter > 0 && time.Since(downSince)+delay > s.giveUpAfter {
				ok = false
			}
			if !ok {
				yield(nil, wrap("WatchEvents", failures, err))
				return
			}
			if s.onReconnect != nil {
				s.onReconnect(Reconnect{Err: err, Cursor: r.GetCursor(), Delay: delay, Failures: failures})
			}
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				yield(nil, ctx.Err())
				return
			case <-t.C:
			}
		}
	}
}

// The causes that end a stream attempt from the client's side; both are
// retried.
var (
	errNotEstablished = status.Error(codes.DeadlineExceeded, "watch: no first response within the attempt timeout")
	errIdle           = status.Error(codes.Unavailable, "watch: no response within the idle timeout")
)

// watchOnce runs one stream from r.Cursor, advancing r.Cursor with every
// response. It returns whether the stream was established (a first response
// came) and why it ended: nil when the caller stopped iterating.
func (c *Client) watchOnce(ctx context.Context, r *v1.WatchEventsRequest, s *watchSettings, yield func(*v1.WatchEventsResponse, error) bool) (bool, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Until the first response the policy's per-attempt timeout bounds the
	// attempt; then the idle timeout does, from each response on (not while
	// the caller handles one).
	var timer *time.Timer
	arm := func(d time.Duration, cause error) {
		if timer != nil {
			timer.Stop()
			timer = nil
		}
		if d > 0 {
			timer = time.AfterFunc(d, func() { cancel(cause) })
		}
	}
	defer arm(0, nil)
	first := c.retry.PerAttemptTimeout
	if first == 0 {
		first = c.timeout
	}
	arm(first, errNotEstablished)
	stream, err := c.report.WatchEvents(ctx, r)
	if err != nil {
		return false, watchErr(ctx, err)
	}
	established := false
	for {
		resp, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = status.Error(codes.Unavailable, "watch: the server ended the stream")
			}
			return established, watchErr(ctx, err)
		}
		arm(0, nil)
		if resp.GetCursor() != "" {
			r.Cursor = resp.GetCursor()
		}
		established = true
		if resp.GetEvent() != nil || s.heartbeats {
			if !yield(resp, nil) {
				return true, nil
			}
		}
		arm(s.idle, errIdle)
	}
}

// watchErr is the error of a stream attempt: the cause of its own
// cancellation when there was one (a timeout of the attempt), else err.
func watchErr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) && !errors.Is(cause, context.DeadlineExceeded) {
		return cause
	}
	return err
}

// watchRetry says whether a broken watch is reopened, and after how long:
// every failure but the answers that a retry would not change.
func (c *Client) watchRetry(err error, failures int) (time.Duration, bool) {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.InvalidArgument, codes.OutOfRange, codes.Unauthenticated, codes.PermissionDenied, codes.NotFound,
		codes.FailedPrecondition, codes.AlreadyExists, codes.Unimplemented:
		return 0, false
	case codes.ResourceExhausted:
		if delay, fromServer, ok := c.retry.retryDelay(err, once); fromServer {
			return delay + jitter(delay/10), ok
		}
	}
	p := c.retry
	if p.MaxBackoff == 0 {
		p.InitialBackoff, p.MaxBackoff = 100*time.Millisecond, 5*time.Second
	}
	return jitter(p.backoff(failures)), true
}
