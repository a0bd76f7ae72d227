package client

import (
	"context"

	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// SetBounceDomain registers the account's own bounce domain (pending until
// VerifyBounceDomain finds its TXT record).
func (c *Client) SetBounceDomain(ctx context.Context, domain string) (*v1.BounceDomain, error) {
	resp, err := call(ctx, c, "SetBounceDomain", once, func(ctx context.Context) (*v1.SetBounceDomainResponse, error) {
		return c.account.SetBounceDomain(ctx, &v1.SetBounceDomainRequest{Domain: domain})
	})
	return resp.GetBounceDomain(), err
}

// GetBounceDomain returns the account's bounce domain (NOT_FOUND when none).
func (c *Client) GetBounceDomain(ctx context.Context) (*v1.BounceDomain, error) {
	resp, err := call(ctx, c, "GetBounceDomain", idempotent, func(ctx context.Context) (*v1.GetBounceDomainResponse, error) {
		return c.account.GetBounceDomain(ctx, &v1.GetBounceDomainRequest{})
	})
	return resp.GetBounceDomain(), err
}

// VerifyBounceDomain looks up the domain's TXT record now; the answer says
// what it found.
func (c *Client) VerifyBounceDomain(ctx context.Context) (*v1.BounceDomain, error) {
	resp, err := call(ctx, c, "VerifyBounceDomain", idempotent, func(ctx context.Context) (*v1.VerifyBounceDomainResponse, error) {
		return c.account.VerifyBounceDomain(ctx, &v1.VerifyBounceDomainRequest{})
	})
	return resp.GetBounceDomain(), err
}

// RemoveBounceDomain removes the account's bounce domain.
func (c *Client) RemoveBounceDomain(ctx context.Context) error {
	_, err := call(ctx, c, "RemoveBounceDomain", once, func(ctx context.Context) (*v1.RemoveBounceDomainResponse, error) {
		return c.account.RemoveBounceDomain(ctx, &v1.RemoveBounceDomainRequest{})
	})
	return err
}
