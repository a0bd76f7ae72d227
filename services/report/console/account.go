package console

import (
	"net/http"
	"net/url"
	"strings"

	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// The account pages whose actions belong to ingest: suppressions, senders,
// usage records, account deletion.

type suppressionsData struct {
	Suppressions []*emailsenderv1.Suppression
	// Search is the address text searched for ("" lists them all).
	Search  string
	Next    string
	CanEdit bool
}

func (c *Console) suppressions(w http.ResponseWriter, r *http.Request, sess *Session) {
	ctx, err := c.callIngest(r.Context(), sess, emailsenderv1.AccountService_ListSuppressions_FullMethodName)
	if err != nil {
		c.failCall(w, r, sess, "ListSuppressions", err)
		return
	}
	search := strings.TrimSpace(r.URL.Query().Get("q"))
	resp, err := c.deps.Ingest.ListSuppressions(ctx, &emailsenderv1.ListSuppressionsRequest{PageSize: 100,
		PageToken: r.URL.Query().Get("page"), AddressContains: search})
	if err != nil {
		c.failCall(w, r, sess, "ListSuppressions", err)
		return
	}
	d := suppressionsData{Suppressions: resp.GetSuppressions(), Search: search,
		CanEdit: c.canIngest(sess, emailsenderv1.AccountService_AddSuppression_FullMethodName) && c.canIngest(sess, emailsenderv1.AccountService_RemoveSuppression_FullMethodName)}
	if tok := resp.GetNextPageToken(); tok != "" {
		q := url.Values{"page": {tok}}
		if search != "" {
			q.Set("q", search)
		}
		d.Next = "/console/suppressions?" + q.Encode()
	}
	c.render(w, r, http.StatusOK, "suppressions", page{Title: "Suppressions", Session: sess, Data: d})
}

func (c *Console) addSuppression(w http.ResponseWriter, r *http.Request, sess *Session) {
	ctx, err := c.callIngest(r.Context(), sess, emailsenderv1.AccountService_AddSuppression_FullMethodName)
	if err == nil {
		err = c.deps.Ingest.AddSuppression(ctx, &emailsenderv1.AddSuppressionRequest{
			Address: strings.TrimSpace(r.PostFormValue("address")), Reason: strings.TrimSpace(r.PostFormValue("reason")),
		})
	}
	if err != nil {
		c.failCall(w, r, sess, "AddSuppression", err)
		return
	}
	http.Redirect(w, r, "/console/suppressions", http.StatusSeeOther)
}

func (c *Console) removeSuppression(w http.ResponseWriter, r *http.Request, sess *Session) {
	ctx, err := c.callIngest(r.Context(), sess, emailsenderv1.AccountService_RemoveSuppression_FullMethodName)
	if err == nil {
		err = c.deps.Ingest.RemoveSuppression(ctx, strings.TrimSpace(r.PostFormValue("address")))
	}
	if err != nil {
		c.failCall(w, r, sess, "RemoveSuppression", err)
		return
	}
	http.Redirect(w, r, "/console/suppressions", http.StatusSeeOther)
}

type sendersData struct {
	Senders []*emailsenderv1.Sender
	CanEdit bool
}

func (c *Console) senders(w http.ResponseWriter, r *http.Request, sess *Session) {
	ctx, err := c.callIngest(r.Context(), sess, emailsenderv1.AccountService_ListSenders_FullMethodName)
	if err != nil {
		c.failCall(w, r, sess, "ListSenders", err)
		return
	}
	resp, err := c.deps.Ingest.ListSenders(ctx)
	if err != nil {
		c.failCall(w, r, sess, "ListSenders", err)
		return
	}
	c.render(w, r, http.StatusOK, "senders", page{Title: "Senders", Session: sess, Data: sendersData{
		Senders: resp.GetSenders(), CanEdit: c.canIngest(sess, emailsenderv1.AccountService_AddSender_FullMethodName),
	}})
}

func (c *Console) addSender(w http.ResponseWriter, r *http.Request, sess *Session) {
	ctx, err := c.callIngest(r.Context(), sess, emailsenderv1.AccountService_AddSender_FullMethodName)
	if err == nil {
		err = c.deps.Ingest.AddSender(ctx, &emailsenderv1.AddSenderRequest{
			Address: strings.TrimSpace(r.PostFormValue("address")), ProviderId: strings.TrimSpace(r.PostFormValue("provider_id")),
		})
	}
	if err != nil {
		c.failCall(w, r, sess, "AddSender", err)
		return
	}
	http.Redirect(w, r, "/console/senders", http.StatusSeeOther)
}

func (c *Console) verifySender(w http.ResponseWriter, r *http.Request, sess *Session) {
	ctx, err := c.callIngest(r.Context(), sess, emailsenderv1.AccountService_VerifySender_FullMethodName)
	if err == nil {
		err = c.deps.Ingest.VerifySender(ctx, r.PathValue("id"), strings.TrimSpace(r.PostFormValue("code")))
	}
	if err != nil {
		c.failCall(w, r, sess, "VerifySender", err)
		return
	}
	http.Redirect(w, r, "/console/senders", http.StatusSeeOther)
}

func (c *Console) removeSender(w http.ResponseWriter, r *http.Request, sess *Session) {
	ctx, err := c.callIngest(r.Context(), sess, emailsenderv1.AccountService_RemoveSender_FullMethodName)
	if err == nil {
		err = c.deps.Ingest.RemoveSender(ctx, r.PathValue("id"))
	}
	if err != nil {
		c.failCall(w, r, sess, "RemoveSender", err)
		return
	}
	http.Redirect(w, r, "/console/senders", http.StatusSeeOther)
}

type usageData struct {
	Records []*emailsenderv1.UsageRecord
	Next    string
}

func (c *Console) usage(w http.ResponseWriter, r *http.Request, sess *Session) {
	ctx, err := c.callIngest(r.Context(), sess, emailsenderv1.AccountService_ListUsage_FullMethodName)
	if err != nil {
		c.failCall(w, r, sess, "ListUsage", err)
		return
	}
	resp, err := c.deps.Ingest.ListUsage(ctx, &emailsenderv1.ListUsageRequest{PageSize: 100, PageToken: r.URL.Query().Get("page")})
	if err != nil {
		c.failCall(w, r, sess, "ListUsage", err)
		return
	}
	d := usageData{Records: resp.GetRecords()}
	if tok := resp.GetNextPageToken(); tok != "" {
		d.Next = "/console/usage?" + url.Values{"page": {tok}}.Encode()
	}
	c.render(w, r, http.StatusOK, "usage", page{Title: "Usage", Session: sess, Data: d})
}

type accountData struct {
	Deleted *emailsenderv1.DeleteAccountDataResponse
}

func (c *Console) accountPage(w http.ResponseWriter, r *http.Request, sess *Session) {
	if !c.canIngest(sess, emailsenderv1.AccountService_DeleteAccountData_FullMethodName) {
		c.failCall(w, r, sess, "DeleteAccountData", errPermission(c, sess, emailsenderv1.AccountService_DeleteAccountData_FullMethodName))
		return
	}
	c.render(w, r, http.StatusOK, "account", page{Title: "Delete the account", Session: sess, Data: accountData{}})
}

// deleteAccount deletes the account's data behind a typed confirmation: the
// form must carry the account id, typed (ingest checks it again). The
// session goes with the account.
func (c *Console) deleteAccount(w http.ResponseWriter, r *http.Request, sess *Session) {
	ctx, err := c.callIngest(r.Context(), sess, emailsenderv1.AccountService_DeleteAccountData_FullMethodName)
	if err != nil {
		c.failCall(w, r, sess, "DeleteAccountData", err)
		return
	}
	confirm := strings.TrimSpace(r.PostFormValue("confirm"))
	if confirm != sess.AccountID {
		c.render(w, r, http.StatusBadRequest, "account", page{Title: "Delete the account", Session: sess, Data: accountData{},
			Error: "Type the account id exactly to confirm."})
		return
	}
	resp, err := c.deps.Ingest.DeleteAccountData(ctx, confirm)
	if err != nil {
		c.failCall(w, r, sess, "DeleteAccountData", err)
		return
	}
	c.log.InfoContext(r.Context(), "console account deletion", "account", sess.AccountID, "audit", resp.GetAuditId())
	// Every session of the account ends (lookup refuses a deleted account's
	// anyway; the rows go with the account's row at the final sweep).
	if err := c.sessions.revokeAccount(r.Context(), sess.AccountID); err != nil {
		c.log.WarnContext(r.Context(), "console account deletion", "error", err)
	}
	c.clearSessionCookie(w, r)
	c.render(w, r, http.StatusOK, "account", page{Title: "Account deleted", Data: accountData{Deleted: resp}})
}

type providersData struct {
	Providers []*emailsenderv1.Provider
	CanVerify bool
	// Verified is the answer of a verification just made.
	Verified *emailsenderv1.VerifyResult
}

// providers lists the provider configurations: health, last verification,
// fallback.
func (c *Console) providers(w http.ResponseWriter, r *http.Request, sess *Session) {
	c.renderProviders(w, r, sess, nil)
}

func (c *Console) renderProviders(w http.ResponseWriter, r *http.Request, sess *Session, verified *emailsenderv1.VerifyResult) {
	ctx, err := c.callIngest(r.Context(), sess, emailsenderv1.AccountService_ListProviders_FullMethodName)
	if err != nil {
		c.failCall(w, r, sess, "ListProviders", err)
		return
	}
	resp, err := c.deps.Ingest.ListProviders(ctx)
	if err != nil {
		c.failCall(w, r, sess, "ListProviders", err)
		return
	}
	c.render(w, r, http.StatusOK, "providers", page{Title: "Providers", Session: sess, Data: providersData{
		Providers: resp.GetProviders(), Verified: verified,
		CanVerify: c.canIngest(sess, emailsenderv1.AccountService_VerifyProvider_FullMethodName),
	}})
}

func (c *Console) verifyProvider(w http.ResponseWriter, r *http.Request, sess *Session) {
	ctx, err := c.callIngest(r.Context(), sess, emailsenderv1.AccountService_VerifyProvider_FullMethodName)
	if err != nil {
		c.failCall(w, r, sess, "VerifyProvider", err)
		return
	}
	resp, err := c.deps.Ingest.VerifyProvider(ctx, r.PathValue("id"))
	if err != nil {
		c.failCall(w, r, sess, "VerifyProvider", err)
		return
	}
	c.renderProviders(w, r, sess, resp.GetResult())
}
