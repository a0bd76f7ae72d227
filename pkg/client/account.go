package client

import (
	"context"

	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// The AccountService calls; every one needs the "admin" scope. Calls that
// would act twice when repeated (CreateApiKey, AddSender mailing a code,
// creating a provider, deletions) are not retried after an answer that leaves
// open whether the server acted; the others are.

// CreateAPIKey makes an API key; the secret is in the answer only.
func (c *Client) CreateAPIKey(ctx context.Context, req *v1.CreateApiKeyRequest) (*v1.CreateApiKeyResponse, error) {
	return call(ctx, c, "CreateApiKey", once, func(ctx context.Context) (*v1.CreateApiKeyResponse, error) {
		return c.account.CreateApiKey(ctx, req)
	})
}

// ListAPIKeys lists the account's keys (never their secrets).
func (c *Client) ListAPIKeys(ctx context.Context) (*v1.ListApiKeysResponse, error) {
	return call(ctx, c, "ListApiKeys", idempotent, func(ctx context.Context) (*v1.ListApiKeysResponse, error) {
		return c.account.ListApiKeys(ctx, &v1.ListApiKeysRequest{})
	})
}

// RevokeAPIKey revokes a key at once on every replica.
func (c *Client) RevokeAPIKey(ctx context.Context, id string) (*v1.RevokeApiKeyResponse, error) {
	return call(ctx, c, "RevokeApiKey", idempotent, func(ctx context.Context) (*v1.RevokeApiKeyResponse, error) {
		return c.account.RevokeApiKey(ctx, &v1.RevokeApiKeyRequest{Id: id})
	})
}

// PutProvider creates a provider configuration (id empty) or replaces one.
// Replacing is retried; creating is not.
func (c *Client) PutProvider(ctx context.Context, req *v1.PutProviderRequest) (*v1.PutProviderResponse, error) {
	s := once
	if req.GetId() != "" {
		s = idempotent
	}
	return call(ctx, c, "PutProvider", s, func(ctx context.Context) (*v1.PutProviderResponse, error) {
		return c.account.PutProvider(ctx, req)
	})
}

// ListProviders lists provider configurations, secrets redacted.
func (c *Client) ListProviders(ctx context.Context) (*v1.ListProvidersResponse, error) {
	return call(ctx, c, "ListProviders", idempotent, func(ctx context.Context) (*v1.ListProvidersResponse, error) {
		return c.account.ListProviders(ctx, &v1.ListProvidersRequest{})
	})
}

// DeleteProvider deletes a provider configuration.
func (c *Client) DeleteProvider(ctx context.Context, id string) error {
	_, err := call(ctx, c, "DeleteProvider", once, func(ctx context.Context) (*v1.DeleteProviderResponse, error) {
		return c.account.DeleteProvider(ctx, &v1.DeleteProviderRequest{Id: id})
	})
	return err
}

// VerifyProvider logs in to the provider, sends nothing, and returns the result.
func (c *Client) VerifyProvider(ctx context.Context, id string) (*v1.VerifyProviderResponse, error) {
	return call(ctx, c, "VerifyProvider", idempotent, func(ctx context.Context) (*v1.VerifyProviderResponse, error) {
		return c.account.VerifyProvider(ctx, &v1.VerifyProviderRequest{Id: id})
	})
}

// AddSender registers a sender and mails it a verification code.
func (c *Client) AddSender(ctx context.Context, req *v1.AddSenderRequest) (*v1.AddSenderResponse, error) {
	return call(ctx, c, "AddSender", once, func(ctx context.Context) (*v1.AddSenderResponse, error) {
		return c.account.AddSender(ctx, req)
	})
}

// VerifySender confirms a sender with the mailed code.
func (c *Client) VerifySender(ctx context.Context, id, code string) (*v1.VerifySenderResponse, error) {
	return call(ctx, c, "VerifySender", once, func(ctx context.Context) (*v1.VerifySenderResponse, error) {
		return c.account.VerifySender(ctx, &v1.VerifySenderRequest{Id: id, Code: code})
	})
}

// ListSenders lists the account's senders.
func (c *Client) ListSenders(ctx context.Context) (*v1.ListSendersResponse, error) {
	return call(ctx, c, "ListSenders", idempotent, func(ctx context.Context) (*v1.ListSendersResponse, error) {
		return c.account.ListSenders(ctx, &v1.ListSendersRequest{})
	})
}

// RemoveSender removes a sender.
func (c *Client) RemoveSender(ctx context.Context, id string) error {
	_, err := call(ctx, c, "RemoveSender", once, func(ctx context.Context) (*v1.RemoveSenderResponse, error) {
		return c.account.RemoveSender(ctx, &v1.RemoveSenderRequest{Id: id})
	})
	return err
}

// AddSuppression adds an address nothing is sent to.
func (c *Client) AddSuppression(ctx context.Context, req *v1.AddSuppressionRequest) (*v1.AddSuppressionResponse, error) {
	return call(ctx, c, "AddSuppression", once, func(ctx context.Context) (*v1.AddSuppressionResponse, error) {
		return c.account.AddSuppression(ctx, req)
	})
}

// ListSuppressions returns one page of suppressions.
func (c *Client) ListSuppressions(ctx context.Context, req *v1.ListSuppressionsRequest) (*v1.ListSuppressionsResponse, error) {
	return call(ctx, c, "ListSuppressions", idempotent, func(ctx context.Context) (*v1.ListSuppressionsResponse, error) {
		return c.account.ListSuppressions(ctx, req)
	})
}

// RemoveSuppression removes an address from the suppression list.
func (c *Client) RemoveSuppression(ctx context.Context, address string) error {
	_, err := call(ctx, c, "RemoveSuppression", once, func(ctx context.Context) (*v1.RemoveSuppressionResponse, error) {
		return c.account.RemoveSuppression(ctx, &v1.RemoveSuppressionRequest{Address: address})
	})
	return err
}

// ListUsage returns one page of the account's API call records.
func (c *Client) ListUsage(ctx context.Context, req *v1.ListUsageRequest) (*v1.ListUsageResponse, error) {
	return call(ctx, c, "ListUsage", idempotent, func(ctx context.Context) (*v1.ListUsageResponse, error) {
		return c.account.ListUsage(ctx, req)
	})
}

// DeleteAccountData deletes everything of the account; confirmAccountID must
// be the caller's account id. Never retried.
func (c *Client) DeleteAccountData(ctx context.Context, confirmAccountID string) (*v1.DeleteAccountDataResponse, error) {
	return call(ctx, c, "DeleteAccountData", once, func(ctx context.Context) (*v1.DeleteAccountDataResponse, error) {
		return c.account.DeleteAccountData(ctx, &v1.DeleteAccountDataRequest{ConfirmAccountId: confirmAccountID})
	})
}
