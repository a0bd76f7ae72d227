package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/auth"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// scopeRow is the scope an RPC needs (README, "Scopes") and a call that
// passes the gate and then changes nothing of consequence: a list, or an
// identifier that exists nowhere, or a field the handler refuses.
type scopeRow struct {
	need string
	call callFunc
}

func scopeRows(s *stack) map[string]scopeRow {
	missing := uuid.NewString()
	missingV7 := uuid.Must(uuid.NewV7()).String()
	sandbox := &v1.PutProviderRequest_Sandbox{Sandbox: &v1.SandboxSettings{}}
	send, read, admin := auth.ScopeSend, auth.ScopeRead, auth.ScopeAdmin
	return map[string]scopeRow{
		v1.SendService_SendEmail_FullMethodName:       {send, rpc(s.send.SendEmail, simple("scope@example.org"))},
		v1.SendService_SendBatch_FullMethodName:       {send, rpc(s.send.SendBatch, &v1.SendBatchRequest{Messages: []*v1.SendEmailRequest{simple("scope@example.org")}})},
		v1.SendService_CancelScheduled_FullMethodName: {send, rpc(s.send.CancelScheduled, &v1.CancelScheduledRequest{MessageId: missingV7})},

		v1.TemplateService_CreateTemplate_FullMethodName: {admin, rpc(s.templates.CreateTemplate, &v1.CreateTemplateRequest{Alias: "scope-made",
			Name: "made in the scope test", Content: &v1.TemplateContent{Subject: "s", Html: "<p>h</p>"}})},
		v1.TemplateService_GetTemplate_FullMethodName:          {read, rpc(s.templates.GetTemplate, &v1.GetTemplateRequest{Template: missing})},
		v1.TemplateService_ListTemplates_FullMethodName:        {read, rpc(s.templates.ListTemplates, &v1.ListTemplatesRequest{})},
		v1.TemplateService_ListTemplateVersions_FullMethodName: {read, rpc(s.templates.ListTemplateVersions, &v1.ListTemplateVersionsRequest{Template: missing})},
		v1.TemplateService_RenderTemplate_FullMethodName: {read, rpc(s.templates.RenderTemplate, &v1.RenderTemplateRequest{
			Content: &v1.TemplateContent{Subject: "s", Html: "<p>{{name}}</p>"}})},
		v1.TemplateService_UpdateTemplate_FullMethodName: {admin, rpc(s.templates.UpdateTemplate, &v1.UpdateTemplateRequest{Template: missing,
			Content: &v1.TemplateContent{Subject: "s", Html: "<p>h</p>"}})},
		v1.TemplateService_PublishTemplate_FullMethodName:  {admin, rpc(s.templates.PublishTemplate, &v1.PublishTemplateRequest{Template: missing, Version: 1})},
		v1.TemplateService_DeleteTemplate_FullMethodName:   {admin, rpc(s.templates.DeleteTemplate, &v1.DeleteTemplateRequest{Template: missing})},
		v1.TemplateService_SendTestTemplate_FullMethodName: {send, rpc(s.templates.SendTestTemplate, &v1.SendTestTemplateRequest{Template: missing, To: "scope@example.org"})},

		v1.ReportService_GetMessage_FullMethodName:   {read, rpc(s.report.GetMessage, &v1.GetMessageRequest{MessageId: missingV7})},
		v1.ReportService_ListMessages_FullMethodName: {read, rpc(s.report.ListMessages, &v1.ListMessagesRequest{})},
		v1.ReportService_GetStats_FullMethodName:     {read, rpc(s.report.GetStats, &v1.GetStatsRequest{})},
		v1.ReportService_WatchEvents_FullMethodName:  {read, watchFirst(s, &v1.WatchEventsRequest{})},

		v1.WebhookService_CreateWebhook_FullMethodName:           {admin, rpc(s.webhooks.CreateWebhook, &v1.CreateWebhookRequest{Url: "not a url"})},
		v1.WebhookService_ListWebhooks_FullMethodName:            {admin, rpc(s.webhooks.ListWebhooks, &v1.ListWebhooksRequest{})},
		v1.WebhookService_UpdateWebhook_FullMethodName:           {admin, rpc(s.webhooks.UpdateWebhook, &v1.UpdateWebhookRequest{Id: missing})},
		v1.WebhookService_DeleteWebhook_FullMethodName:           {admin, rpc(s.webhooks.DeleteWebhook, &v1.DeleteWebhookRequest{Id: missing})},
		v1.WebhookService_RotateWebhookSecret_FullMethodName:     {admin, rpc(s.webhooks.RotateWebhookSecret, &v1.RotateWebhookSecretRequest{Id: missing})},
		v1.WebhookService_SendTestWebhook_FullMethodName:         {admin, rpc(s.webhooks.SendTestWebhook, &v1.SendTestWebhookRequest{Id: missing})},
		v1.WebhookService_ListWebhookDeliveries_FullMethodName:   {admin, rpc(s.webhooks.ListWebhookDeliveries, &v1.ListWebhookDeliveriesRequest{WebhookId: missing})},
		v1.WebhookService_ReplayWebhookDeliveries_FullMethodName: {admin, rpc(s.webhooks.ReplayWebhookDeliveries, &v1.ReplayWebhookDeliveriesRequest{WebhookId: missing, DeliveryId: missing})},
		// Admin: usage records show every key's client addresses and agents.
		v1.AccountService_ListUsage_FullMethodName: {admin, rpc(s.account.ListUsage, &v1.ListUsageRequest{})},

		v1.AccountService_CreateApiKey_FullMethodName:       {admin, rpc(s.account.CreateApiKey, &v1.CreateApiKeyRequest{Name: "made-in-scope-test", Scopes: []string{read}})},
		v1.AccountService_ListApiKeys_FullMethodName:        {admin, rpc(s.account.ListApiKeys, &v1.ListApiKeysRequest{})},
		v1.AccountService_RevokeApiKey_FullMethodName:       {admin, rpc(s.account.RevokeApiKey, &v1.RevokeApiKeyRequest{Id: missing})},
		v1.AccountService_PutProvider_FullMethodName:        {admin, rpc(s.account.PutProvider, &v1.PutProviderRequest{Id: missing, Settings: sandbox})},
		v1.AccountService_ListProviders_FullMethodName:      {admin, rpc(s.account.ListProviders, &v1.ListProvidersRequest{})},
		v1.AccountService_DeleteProvider_FullMethodName:     {admin, rpc(s.account.DeleteProvider, &v1.DeleteProviderRequest{Id: missing})},
		v1.AccountService_VerifyProvider_FullMethodName:     {admin, rpc(s.account.VerifyProvider, &v1.VerifyProviderRequest{Id: missing})},
		v1.AccountService_ResumeProvider_FullMethodName:     {admin, rpc(s.account.ResumeProvider, &v1.ResumeProviderRequest{Id: missing})},
		v1.AccountService_AddSender_FullMethodName:          {admin, rpc(s.account.AddSender, &v1.AddSenderRequest{Address: "not an address"})},
		v1.AccountService_VerifySender_FullMethodName:       {admin, rpc(s.account.VerifySender, &v1.VerifySenderRequest{Id: missing, Code: "12345678"})},
		v1.AccountService_ListSenders_FullMethodName:        {admin, rpc(s.account.ListSenders, &v1.ListSendersRequest{})},
		v1.AccountService_RemoveSender_FullMethodName:       {admin, rpc(s.account.RemoveSender, &v1.RemoveSenderRequest{Id: missing})},
		v1.AccountService_SetBounceDomain_FullMethodName:    {admin, rpc(s.account.SetBounceDomain, &v1.SetBounceDomainRequest{Domain: "not a domain"})},
		v1.AccountService_GetBounceDomain_FullMethodName:    {admin, rpc(s.account.GetBounceDomain, &v1.GetBounceDomainRequest{})},
		v1.AccountService_VerifyBounceDomain_FullMethodName: {admin, rpc(s.account.VerifyBounceDomain, &v1.VerifyBounceDomainRequest{})},
		v1.AccountService_RemoveBounceDomain_FullMethodName: {admin, rpc(s.account.RemoveBounceDomain, &v1.RemoveBounceDomainRequest{})},
		v1.AccountService_AddSuppression_FullMethodName:     {admin, rpc(s.account.AddSuppression, &v1.AddSuppressionRequest{Address: "scope@example.org"})},
		v1.AccountService_ListSuppressions_FullMethodName:   {admin, rpc(s.account.ListSuppressions, &v1.ListSuppressionsRequest{})},
		v1.AccountService_RemoveSuppression_FullMethodName:  {admin, rpc(s.account.RemoveSuppression, &v1.RemoveSuppressionRequest{Address: "never@example.org"})},
		// Empty: INVALID_ARGUMENT once past the gate (another account's id
		// would be PERMISSION_DENIED from the handler, indistinguishable here).
		v1.AccountService_DeleteAccountData_FullMethodName: {admin, rpc(s.account.DeleteAccountData, &v1.DeleteAccountDataRequest{})},
	}
}

// TestScopeMatrix: every RPC with keys of one account holding only send, only
// read, only admin, send+read (a new key's default) and all three: where the
// key lacks the RPC's scope the call is PERMISSION_DENIED naming the scope and
// changes nothing; where it holds it (admin holds every scope) the call is not
// PERMISSION_DENIED. The rows are checked against the service descriptors.
// Over HTTP/JSON, GetMessage, RevokeApiKey and DeleteProvider get the same
// answers (403 where denied).
func TestScopeMatrix(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{http: true})
	rows := scopeRows(s)
	methods := apiMethods(t)
	for _, m := range methods {
		if _, ok := rows[m]; !ok {
			t.Errorf("%s has no scope row: add one to scopeRows", m)
		}
	}
	for m := range rows {
		require.Contains(t, methods, m, "scope row for an RPC that does not exist")
	}
	if t.Failed() {
		return
	}

	type key struct {
		name   string
		scopes []string
		secret string
	}
	keys := []key{
		{name: "send", scopes: []string{auth.ScopeSend}},
		{name: "read", scopes: []string{auth.ScopeRead}},
		{name: "admin", scopes: []string{auth.ScopeAdmin}},
		{name: "send+read", scopes: []string{auth.ScopeSend, auth.ScopeRead}},
		{name: "bootstrap", scopes: []string{auth.ScopeSend, auth.ScopeRead, auth.ScopeAdmin}, secret: s.accounts["a"].APIKey},
	}
	for i := range keys {
		if keys[i].secret != "" {
			continue
		}
		r, err := s.account.CreateApiKey(s.ctx("a"), &v1.CreateApiKeyRequest{Name: "scope-" + keys[i].name, Scopes: keys[i].scopes})
		require.NoError(t, err)
		require.ElementsMatch(t, keys[i].scopes, r.GetKey().GetScopes())
		keys[i].secret = r.GetSecret()
	}
	holds := func(k key, need string) bool {
		return slices.Contains(k.scopes, need) || slices.Contains(k.scopes, auth.ScopeAdmin)
	}
	account := s.accounts["a"].AccountID
	// Denied calls are recorded as usage (result PERMISSION_DENIED), so the
	// usage records are left out of "changes nothing".
	settle(t, s, account)
	before := snapshotAccount(t, s, account, []string{"usage_records"})

	denied, allowed := 0, 0
	for _, phase := range []string{"denied", "allowed"} {
		if phase == "allowed" {
			require.Equal(t, before, snapshotAccount(t, s, account, []string{"usage_records"}), "denied calls changed the account")
		}
		for _, m := range methods {
			row := rows[m]
			for _, k := range keys {
				if holds(k, row.need) != (phase == "allowed") {
					continue
				}
				name := fmt.Sprintf("%s/%s key", m[strings.LastIndex(m, ".")+1:], k.name)
				resp, err := row.call(withKey(t, k.secret))
				st := status.Convert(err)
				if phase == "denied" {
					denied++
					require.Equal(t, codes.PermissionDenied, st.Code(), "%s: %s", name, answerText(resp, err))
					require.Contains(t, st.Message(), fmt.Sprintf("%q", row.need), "%s: the answer names the scope", name)
				} else {
					allowed++
					require.NotEqual(t, codes.PermissionDenied, st.Code(), "%s: %s", name, answerText(resp, err))
					require.NotEqual(t, codes.Unauthenticated, st.Code(), "%s: %s", name, answerText(resp, err))
				}
			}
		}
	}
	t.Logf("scope matrix: %d RPCs x %d keys: %d denied, %d allowed", len(methods), len(keys), denied, allowed)

	t.Run("HTTP", func(t *testing.T) {
		missing := uuid.NewString()
		for _, c := range []struct {
			rpc, method, url, need string
			body                   any
		}{
			{v1.ReportService_GetMessage_FullMethodName, "GET", s.reportURL + "/v1/messages/" + uuid.Must(uuid.NewV7()).String(), auth.ScopeRead, nil},
			{v1.AccountService_RevokeApiKey_FullMethodName, "POST", s.ingestURL + "/v1/apiKeys/" + missing + ":revoke", auth.ScopeAdmin, map[string]any{}},
			{v1.AccountService_DeleteProvider_FullMethodName, "DELETE", s.ingestURL + "/v1/providers/" + missing, auth.ScopeAdmin, nil},
		} {
			require.Equal(t, c.need, rows[c.rpc].need, c.rpc)
			for _, k := range keys {
				code, body := httpRaw(t, c.method, c.url, k.secret, c.body)
				if holds(k, c.need) {
					require.Equal(t, 404, code, "%s with the %s key: %s", c.rpc, k.name, body)
				} else {
					require.Equal(t, 403, code, "%s with the %s key: %s", c.rpc, k.name, body)
					var st struct{ Code int }
					require.NoError(t, json.Unmarshal(body, &st), "%s", body)
					require.Equal(t, int(codes.PermissionDenied), st.Code, "%s with the %s key: %s", c.rpc, k.name, body)
				}
			}
		}
	})
}
