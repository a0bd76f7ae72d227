package client

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"

	"google.golang.org/protobuf/proto"

	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// idempotencyKeyPrefix marks the keys the client made.
const idempotencyKeyPrefix = "esc_"

func newIdempotencyKey() (string, error) {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("idempotency key: %w", err)
	}
	return idempotencyKeyPrefix + base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]), nil
}

// withKey returns req, or a copy of it with a new idempotency key when it has
// none: the caller's request is not changed.
func (c *Client) withKey(req *v1.SendEmailRequest) (*v1.SendEmailRequest, error) {
	if req.GetIdempotencyKey() != "" {
		return req, nil
	}
	key, err := c.newKey()
	if err != nil {
		return nil, err
	}
	cp := proto.CloneOf(req)
	if cp == nil {
		cp = &v1.SendEmailRequest{}
	}
	cp.IdempotencyKey = key
	return cp, nil
}

// Send accepts one message (SendService.SendEmail). Without an
// idempotency_key it gets a random one, used by every retry of this call: a
// retry after a lost answer returns the first answer (IdempotentReplay true)
// and sends nothing new. To make retries of your own safe too (after a crash
// of your process, say), set idempotency_key yourself from something stable.
func (c *Client) Send(ctx context.Context, req *v1.SendEmailRequest) (*v1.SendEmailResponse, error) {
	r, err := c.withKey(req)
	if err != nil {
		return nil, err
	}
	return call(ctx, c, "SendEmail", idempotent, func(ctx context.Context) (*v1.SendEmailResponse, error) {
		return c.send.SendEmail(ctx, r)
	})
}

// SendBatch accepts several messages in one call (SendService.SendBatch);
// each item is accepted or rejected on its own (see SendBatchResult). Items
// without an idempotency_key get one each, as in Send.
func (c *Client) SendBatch(ctx context.Context, req *v1.SendBatchRequest) (*v1.SendBatchResponse, error) {
	r := &v1.SendBatchRequest{Messages: make([]*v1.SendEmailRequest, len(req.GetMessages()))}
	for i, m := range req.GetMessages() {
		var err error
		if r.Messages[i], err = c.withKey(m); err != nil {
			return nil, err
		}
	}
	return call(ctx, c, "SendBatch", idempotent, func(ctx context.Context) (*v1.SendBatchResponse, error) {
		return c.send.SendBatch(ctx, r)
	})
}

// CancelScheduled cancels a SCHEDULED message before delivery starts. It is
// not retried on a lost answer: a repeat would report FAILED_PRECONDITION for
// the message the first call canceled. GetMessage tells what happened.
func (c *Client) CancelScheduled(ctx context.Context, messageID string) (*v1.CancelScheduledResponse, error) {
	return call(ctx, c, "CancelScheduled", once, func(ctx context.Context) (*v1.CancelScheduledResponse, error) {
		return c.send.CancelScheduled(ctx, &v1.CancelScheduledRequest{MessageId: messageID})
	})
}

// SendAndWait sends req as Send does, then waits until the message reaches a
// terminal status (Terminal: SENT or later) and returns its report. The
// context bounds the whole wait; each call made while waiting is bounded by
// the client's default timeout. On error after the send, the returned
// response still holds the send's answer when there was one.
//
// It follows the message's events on ReportService.WatchEvents (from the
// oldest retained one, so nothing that happened before the watch began is
// missed), reading GetMessage once the watch is established and after an
// event with a terminal status; a server without WatchEvents is polled
// (WithPollInterval). A broken watch is resumed as Watch resumes.
func (c *Client) SendAndWait(ctx context.Context, req *v1.SendEmailRequest) (*v1.GetMessageResponse, *v1.SendEmailResponse, error) {
	sent, err := c.Send(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	got, err := c.waiter.wait(ctx, sent.GetMessageId())
	if err != nil {
		return nil, sent, fmt.Errorf("wait for message %s: %w", sent.GetMessageId(), err)
	}
	return got, sent, nil
}

// Wait waits until message id reaches a terminal status, as SendAndWait does
// after its send.
func (c *Client) Wait(ctx context.Context, id string) (*v1.GetMessageResponse, error) {
	got, err := c.waiter.wait(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("wait for message %s: %w", id, err)
	}
	return got, nil
}
