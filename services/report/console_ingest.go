package report

import (
	"context"
	"fmt"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/client"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/report/console"
)

// consoleIngestScopes are the scopes ingest's API gives the methods the
// console calls there (services/ingest MethodScopes; TestConsoleIngest
// checks they agree). They only decide which buttons a session sees: ingest
// authorizes every call itself.
var consoleIngestScopes = map[string]string{
	emailsenderv1.SendService_CancelScheduled_FullMethodName: auth.ScopeSend,
	emailsenderv1.AccountService_ListApiKeys_FullMethodName:  auth.ScopeAdmin,
	emailsenderv1.AccountService_CreateApiKey_FullMethodName: auth.ScopeAdmin,
	emailsenderv1.AccountService_RevokeApiKey_FullMethodName: auth.ScopeAdmin,

	emailsenderv1.AccountService_ListSuppressions_FullMethodName:  auth.ScopeAdmin,
	emailsenderv1.AccountService_AddSuppression_FullMethodName:    auth.ScopeAdmin,
	emailsenderv1.AccountService_RemoveSuppression_FullMethodName: auth.ScopeAdmin,
	emailsenderv1.AccountService_ListSenders_FullMethodName:       auth.ScopeAdmin,
	emailsenderv1.AccountService_AddSender_FullMethodName:         auth.ScopeAdmin,
	emailsenderv1.AccountService_VerifySender_FullMethodName:      auth.ScopeAdmin,
	emailsenderv1.AccountService_RemoveSender_FullMethodName:      auth.ScopeAdmin,
	emailsenderv1.AccountService_ListUsage_FullMethodName:         auth.ScopeAdmin,
	emailsenderv1.AccountService_DeleteAccountData_FullMethodName: auth.ScopeAdmin,
	emailsenderv1.AccountService_ListProviders_FullMethodName:     auth.ScopeAdmin,
	emailsenderv1.AccountService_VerifyProvider_FullMethodName:    auth.ScopeAdmin,

	emailsenderv1.TemplateService_ListTemplates_FullMethodName:        auth.ScopeRead,
	emailsenderv1.TemplateService_GetTemplate_FullMethodName:          auth.ScopeRead,
	emailsenderv1.TemplateService_ListTemplateVersions_FullMethodName: auth.ScopeRead,
	emailsenderv1.TemplateService_RenderTemplate_FullMethodName:       auth.ScopeRead,
	emailsenderv1.TemplateService_UpdateTemplate_FullMethodName:       auth.ScopeAdmin,
	emailsenderv1.TemplateService_PublishTemplate_FullMethodName:      auth.ScopeAdmin,
}

// ConsoleIngestScopes returns consoleIngestScopes (for the test that
// compares them with ingest's).
func ConsoleIngestScopes() map[string]string {
	out := map[string]string{}
	for k, v := range consoleIngestScopes {
		out[k] = v
	}
	return out
}

// consoleIngest is ingest's API for the console: one pkg/client connection
// whose every call carries the credential of the session it is made for.
type consoleIngest struct{ c *client.Client }

func newConsoleIngest(cfg console.Config) (*consoleIngest, error) {
	opts := []client.Option{client.WithTokenSource(client.TokenSourceFunc(console.CredentialFrom)), client.WithUserAgent("email-sender-console")}
	if cfg.IngestPlaintext {
		opts = append(opts, client.WithInsecure())
	} else {
		opts = append(opts, client.WithTLS(nil))
	}
	c, err := client.New(context.Background(), cfg.IngestAddr, opts...)
	if err != nil {
		return nil, fmt.Errorf("console: ingest client: %w", err)
	}
	return &consoleIngest{c: c}, nil
}

func (i *consoleIngest) CancelScheduled(ctx context.Context, id string) error {
	_, err := i.c.CancelScheduled(ctx, id)
	return err
}

func (i *consoleIngest) ListAPIKeys(ctx context.Context) (*emailsenderv1.ListApiKeysResponse, error) {
	return i.c.ListAPIKeys(ctx)
}

func (i *consoleIngest) CreateAPIKey(ctx context.Context, req *emailsenderv1.CreateApiKeyRequest) (*emailsenderv1.CreateApiKeyResponse, error) {
	return i.c.CreateAPIKey(ctx, req)
}

func (i *consoleIngest) RevokeAPIKey(ctx context.Context, id string) error {
	_, err := i.c.RevokeAPIKey(ctx, id)
	return err
}

func (i *consoleIngest) Close() error { return i.c.Close() }

func (i *consoleIngest) ListSuppressions(ctx context.Context, req *emailsenderv1.ListSuppressionsRequest) (*emailsenderv1.ListSuppressionsResponse, error) {
	return i.c.ListSuppressions(ctx, req)
}

func (i *consoleIngest) AddSuppression(ctx context.Context, req *emailsenderv1.AddSuppressionRequest) error {
	_, err := i.c.AddSuppression(ctx, req)
	return err
}

func (i *consoleIngest) RemoveSuppression(ctx context.Context, address string) error {
	return i.c.RemoveSuppression(ctx, address)
}

func (i *consoleIngest) ListSenders(ctx context.Context) (*emailsenderv1.ListSendersResponse, error) {
	return i.c.ListSenders(ctx)
}

func (i *consoleIngest) AddSender(ctx context.Context, req *emailsenderv1.AddSenderRequest) error {
	_, err := i.c.AddSender(ctx, req)
	return err
}

func (i *consoleIngest) VerifySender(ctx context.Context, id, code string) error {
	_, err := i.c.VerifySender(ctx, id, code)
	return err
}

func (i *consoleIngest) RemoveSender(ctx context.Context, id string) error {
	return i.c.RemoveSender(ctx, id)
}

func (i *consoleIngest) ListUsage(ctx context.Context, req *emailsenderv1.ListUsageRequest) (*emailsenderv1.ListUsageResponse, error) {
	return i.c.ListUsage(ctx, req)
}

func (i *consoleIngest) DeleteAccountData(ctx context.Context, confirm string) (*emailsenderv1.DeleteAccountDataResponse, error) {
	return i.c.DeleteAccountData(ctx, confirm)
}

func (i *consoleIngest) ListProviders(ctx context.Context) (*emailsenderv1.ListProvidersResponse, error) {
	return i.c.ListProviders(ctx)
}

func (i *consoleIngest) VerifyProvider(ctx context.Context, id string) (*emailsenderv1.VerifyProviderResponse, error) {
	return i.c.VerifyProvider(ctx, id)
}
