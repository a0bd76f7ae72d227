package client

import (
	"context"
	"iter"

	"google.golang.org/protobuf/proto"

	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// GetMessage returns a message's status, recipients and timeline.
func (c *Client) GetMessage(ctx context.Context, req *v1.GetMessageRequest) (*v1.GetMessageResponse, error) {
	return call(ctx, c, "GetMessage", idempotent, func(ctx context.Context) (*v1.GetMessageResponse, error) {
		return c.report.GetMessage(ctx, req)
	})
}

// ListMessages returns one page of messages, newest first.
func (c *Client) ListMessages(ctx context.Context, req *v1.ListMessagesRequest) (*v1.ListMessagesResponse, error) {
	return call(ctx, c, "ListMessages", idempotent, func(ctx context.Context) (*v1.ListMessagesResponse, error) {
		return c.report.ListMessages(ctx, req)
	})
}

// AllMessages yields every message req matches, newest first, page after page
// from req.page_token on. It stops at the first error, which it yields.
func (c *Client) AllMessages(ctx context.Context, req *v1.ListMessagesRequest) iter.Seq2[*v1.MessageSummary, error] {
	return func(yield func(*v1.MessageSummary, error) bool) {
		r := proto.CloneOf(req)
		if r == nil {
			r = &v1.ListMessagesRequest{}
		}
		for {
			page, err := c.ListMessages(ctx, r)
			if err != nil {
				yield(nil, err)
				return
			}
			for _, m := range page.GetMessages() {
				if !yield(m, nil) {
					return
				}
			}
			if page.GetNextPageToken() == "" {
				return
			}
			r.PageToken = page.GetNextPageToken()
		}
	}
}

// GetStats counts messages by status in time buckets.
func (c *Client) GetStats(ctx context.Context, req *v1.GetStatsRequest) (*v1.GetStatsResponse, error) {
	return call(ctx, c, "GetStats", idempotent, func(ctx context.Context) (*v1.GetStatsResponse, error) {
		return c.report.GetStats(ctx, req)
	})
}
