package console

import (
	"net/http"
	"strings"

	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// cancelMessage cancels a scheduled message through ingest's API.
func (c *Console) cancelMessage(w http.ResponseWriter, r *http.Request, sess *Session) {
	id := r.PathValue("id")
	ctx, err := c.callIngest(r.Context(), sess, emailsenderv1.SendService_CancelScheduled_FullMethodName)
	if err != nil {
		c.failCall(w, r, sess, "CancelScheduled", err)
		return
	}
	if err := c.deps.Ingest.CancelScheduled(ctx, id); err != nil {
		c.failCall(w, r, sess, "CancelScheduled", err)
		return
	}
	http.Redirect(w, r, "/console/messages/"+id, http.StatusSeeOther)
}

type keysData struct {
	Keys      []*emailsenderv1.ApiKey
	CanCreate bool
	CanRevoke bool
	// Created is the key just made, whose secret this answer shows once.
	Created *emailsenderv1.CreateApiKeyResponse
}

func (c *Console) apiKeys(w http.ResponseWriter, r *http.Request, sess *Session) {
	c.renderKeys(w, r, sess, http.StatusOK, nil)
}

func (c *Console) renderKeys(w http.ResponseWriter, r *http.Request, sess *Session, code int, created *emailsenderv1.CreateApiKeyResponse) {
	ctx, err := c.callIngest(r.Context(), sess, emailsenderv1.AccountService_ListApiKeys_FullMethodName)
	if err != nil {
		c.failCall(w, r, sess, "ListApiKeys", err)
		return
	}
	resp, err := c.deps.Ingest.ListAPIKeys(ctx)
	if err != nil {
		c.failCall(w, r, sess, "ListApiKeys", err)
		return
	}
	c.render(w, r, code, "keys", page{Title: "API keys", Session: sess, Data: keysData{
		Keys:      resp.GetKeys(),
		CanCreate: c.canIngest(sess, emailsenderv1.AccountService_CreateApiKey_FullMethodName),
		CanRevoke: c.canIngest(sess, emailsenderv1.AccountService_RevokeApiKey_FullMethodName),
		Created:   created,
	}})
}

// createAPIKey makes a key and shows its secret in this answer only (the
// page is not cached and not redirected to).
func (c *Console) createAPIKey(w http.ResponseWriter, r *http.Request, sess *Session) {
	ctx, err := c.callIngest(r.Context(), sess, emailsenderv1.AccountService_CreateApiKey_FullMethodName)
	if err != nil {
		c.failCall(w, r, sess, "CreateApiKey", err)
		return
	}
	req := &emailsenderv1.CreateApiKeyRequest{Name: strings.TrimSpace(r.PostFormValue("name")), Scopes: r.PostForm["scope"]}
	created, err := c.deps.Ingest.CreateAPIKey(ctx, req)
	if err != nil {
		c.failCall(w, r, sess, "CreateApiKey", err)
		return
	}
	c.renderKeys(w, r, sess, http.StatusCreated, created)
}

func (c *Console) revokeAPIKey(w http.ResponseWriter, r *http.Request, sess *Session) {
	ctx, err := c.callIngest(r.Context(), sess, emailsenderv1.AccountService_RevokeApiKey_FullMethodName)
	if err != nil {
		c.failCall(w, r, sess, "RevokeApiKey", err)
		return
	}
	if err := c.deps.Ingest.RevokeAPIKey(ctx, r.PathValue("id")); err != nil {
		c.failCall(w, r, sess, "RevokeApiKey", err)
		return
	}
	http.Redirect(w, r, "/console/keys", http.StatusSeeOther)
}
