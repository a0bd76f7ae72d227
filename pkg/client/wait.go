package client

import (
	"context"
	"errors"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// Terminal reports whether s ends a message's delivery: the provider accepted
// it (SENT; DELIVERED, BOUNCED or COMPLAINED feedback may still follow) or it
// will never be sent (FAILED, CANCELED, SUPPRESSED).
func Terminal(s v1.MessageStatus_Value) bool {
	switch s {
	case v1.MessageStatus_SENT, v1.MessageStatus_DELIVERED, v1.MessageStatus_BOUNCED, v1.MessageStatus_COMPLAINED,
		v1.MessageStatus_FAILED, v1.MessageStatus_CANCELED, v1.MessageStatus_SUPPRESSED:
		return true
	}
	return false
}

// Succeeded reports whether s means the message went out: SENT or DELIVERED.
func Succeeded(s v1.MessageStatus_Value) bool {
	return s == v1.MessageStatus_SENT || s == v1.MessageStatus_DELIVERED
}

// statusWaiter waits until a message reaches a terminal status. watchWaiter
// follows the message's events (ReportService.WatchEvents); pollWaiter polls
// GetMessage, for servers without WatchEvents and to let the report catch up
// with an event the watch saw.
type statusWaiter interface {
	wait(ctx context.Context, id string) (*v1.GetMessageResponse, error)
}

type pollSettings struct{ min, max time.Duration }

var defaultPoll = pollSettings{min: 100 * time.Millisecond, max: 2 * time.Second}

type pollWaiter struct {
	get  func(context.Context, *v1.GetMessageRequest) (*v1.GetMessageResponse, error)
	poll pollSettings
}

func (w *pollWaiter) wait(ctx context.Context, id string) (*v1.GetMessageResponse, error) {
	interval := w.poll.min
	for {
		resp, err := w.get(ctx, &v1.GetMessageRequest{MessageId: id})
		if err != nil {
			return nil, err
		}
		if Terminal(resp.GetMessage().GetStatus()) {
			return resp, nil
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return resp, ctx.Err()
		case <-t.C:
		}
		interval = min(interval*3/2, w.poll.max)
	}
}

// watchWaiter waits on the message's events. It watches the message from the
// oldest retained event (from_start, filtered on the message id: the server
// reads that message's events only), so an event that happened before the
// watch began is not missed; once the watch is established it reads
// GetMessage once (a message older than the retained events, or one that is
// already done). Reports are built from the same events by another consumer
// and may lag the stream by milliseconds: after an event with a terminal
// status it reads GetMessage until the report is terminal, or until the
// report holds that event and the message is still not done (another
// recipient is pending), then watches on.
//
// A server without WatchEvents (UNIMPLEMENTED) is polled instead.
type watchWaiter struct {
	c    *Client
	poll *pollWaiter
}

func (w *watchWaiter) wait(ctx context.Context, id string) (*v1.GetMessageResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var last *v1.GetMessageResponse
	// check reads the report: done when the message is terminal, seen when
	// the report holds event eventID.
	check := func(eventID string) (done, seen bool, err error) {
		resp, err := w.poll.get(ctx, &v1.GetMessageRequest{MessageId: id})
		if err != nil {
			return false, false, err
		}
		last = resp
		seen = slices.ContainsFunc(resp.GetEvents(), func(e *v1.MessageEvent) bool { return e.GetEventId() == eventID })
		return Terminal(resp.GetMessage().GetStatus()), seen, nil
	}
	established := false
	req := &v1.WatchEventsRequest{MessageIds: []string{id}, FromStart: true}
	for resp, err := range w.c.Watch(ctx, req, WatchHeartbeats()) {
		if err != nil {
			if status.Code(err) == codes.Unimplemented {
				return w.poll.wait(ctx, id)
			}
			return last, err
		}
		e := resp.GetEvent()
		switch {
		case !established:
			// Every later event of the message comes on the stream; the
			// report says whether it is done already.
			established = true
			if done, _, err := check(""); err != nil || done {
				return last, err
			}
		case e != nil && Terminal(e.GetStatus()):
			for interval := w.poll.poll.min; ; interval = min(interval*3/2, w.poll.poll.max) {
				done, seen, err := check(e.GetEventId())
				if err != nil || done {
					return last, err
				}
				if seen {
					break // the report has it and the message goes on
				}
				if err := sleep(ctx, interval); err != nil {
					return last, err
				}
			}
		}
	}
	return last, errors.New("watch ended without an error") // Watch ends with an error
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
