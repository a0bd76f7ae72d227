package client

import (
	"context"
	"iter"

	"google.golang.org/protobuf/proto"

	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// The WebhookService calls (served by the report service: WithReportTarget);
// every one needs the "admin" scope. Calls that would act twice when repeated
// (creating an endpoint, rotating its secret, a test post, a replay, a
// deletion) are not retried after an answer that leaves open whether the
// server acted; reads and updates are.

// CreateWebhook adds an endpoint. The answer holds its signing secret, which
// is never returned again.
func (c *Client) CreateWebhook(ctx context.Context, req *v1.CreateWebhookRequest) (*v1.CreateWebhookResponse, error) {
	return call(ctx, c, "CreateWebhook", once, func(ctx context.Context) (*v1.CreateWebhookResponse, error) {
		return c.webhook.CreateWebhook(ctx, req)
	})
}

// ListWebhooks lists the account's endpoints (never their secrets).
func (c *Client) ListWebhooks(ctx context.Context) (*v1.ListWebhooksResponse, error) {
	return call(ctx, c, "ListWebhooks", idempotent, func(ctx context.Context) (*v1.ListWebhooksResponse, error) {
		return c.webhook.ListWebhooks(ctx, &v1.ListWebhooksRequest{})
	})
}

// UpdateWebhook changes an endpoint's URL, description or filters, or enables
// or disables it.
func (c *Client) UpdateWebhook(ctx context.Context, req *v1.UpdateWebhookRequest) (*v1.UpdateWebhookResponse, error) {
	return call(ctx, c, "UpdateWebhook", idempotent, func(ctx context.Context) (*v1.UpdateWebhookResponse, error) {
		return c.webhook.UpdateWebhook(ctx, req)
	})
}

// DeleteWebhook removes an endpoint and its pending deliveries.
func (c *Client) DeleteWebhook(ctx context.Context, id string) error {
	_, err := call(ctx, c, "DeleteWebhook", once, func(ctx context.Context) (*v1.DeleteWebhookResponse, error) {
		return c.webhook.DeleteWebhook(ctx, &v1.DeleteWebhookRequest{Id: id})
	})
	return err
}

// RotateWebhookSecret makes a new signing secret (in the answer only); the
// previous one keeps signing too for req.previous_secret_ttl (default 24 h).
func (c *Client) RotateWebhookSecret(ctx context.Context, req *v1.RotateWebhookSecretRequest) (*v1.RotateWebhookSecretResponse, error) {
	return call(ctx, c, "RotateWebhookSecret", once, func(ctx context.Context) (*v1.RotateWebhookSecretResponse, error) {
		return c.webhook.RotateWebhookSecret(ctx, req)
	})
}

// SendTestWebhook posts a "webhook.test" event to the endpoint once, now, and
// returns the delivery with its attempt.
func (c *Client) SendTestWebhook(ctx context.Context, id string) (*v1.SendTestWebhookResponse, error) {
	return call(ctx, c, "SendTestWebhook", once, func(ctx context.Context) (*v1.SendTestWebhookResponse, error) {
		return c.webhook.SendTestWebhook(ctx, &v1.SendTestWebhookRequest{Id: id})
	})
}

// ListWebhookDeliveries returns one page of an endpoint's delivery log,
// newest first.
func (c *Client) ListWebhookDeliveries(ctx context.Context, req *v1.ListWebhookDeliveriesRequest) (*v1.ListWebhookDeliveriesResponse, error) {
	return call(ctx, c, "ListWebhookDeliveries", idempotent, func(ctx context.Context) (*v1.ListWebhookDeliveriesResponse, error) {
		return c.webhook.ListWebhookDeliveries(ctx, req)
	})
}

// AllWebhookDeliveries yields every delivery req matches, newest first, page
// after page from req.page_token on. It stops at the first error, which it
// yields.
func (c *Client) AllWebhookDeliveries(ctx context.Context, req *v1.ListWebhookDeliveriesRequest) iter.Seq2[*v1.WebhookDelivery, error] {
	return func(yield func(*v1.WebhookDelivery, error) bool) {
		r := proto.CloneOf(req)
		if r == nil {
			r = &v1.ListWebhookDeliveriesRequest{}
		}
		for {
			page, err := c.ListWebhookDeliveries(ctx, r)
			if err != nil {
				yield(nil, err)
				return
			}
			for _, d := range page.GetDeliveries() {
				if !yield(d, nil) {
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

// ReplayWebhookDeliveries sends deliveries again: one (delivery_id) or those
// of the endpoint created in [start, end). Not retried after a lost answer: a
// repeat would queue them once more (receivers deduplicate by webhook-id,
// which a replay keeps).
func (c *Client) ReplayWebhookDeliveries(ctx context.Context, req *v1.ReplayWebhookDeliveriesRequest) (*v1.ReplayWebhookDeliveriesResponse, error) {
	return call(ctx, c, "ReplayWebhookDeliveries", once, func(ctx context.Context) (*v1.ReplayWebhookDeliveriesResponse, error) {
		return c.webhook.ReplayWebhookDeliveries(ctx, req)
	})
}
