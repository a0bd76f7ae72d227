package client

import (
	"context"
	"time"

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

// statusWaiter waits until a message reaches a terminal status. pollWaiter
// polls GetMessage; a waiter on ReportService.WatchEvents (server streaming)
// takes its place once the service has that call.
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
