package report_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/client"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// createTemplate stores a template of account a through ingest's API.
func (b *consoleBundle) createTemplate(t *testing.T, a account, alias, subject, html string) *emailsenderv1.Template {
	t.Helper()
	c, err := client.New(context.Background(), b.ingestAddr, client.WithAPIKey(a.key), client.WithInsecure())
	require.NoError(t, err)
	defer c.Close()
	resp, err := c.CreateTemplate(context.Background(), &emailsenderv1.CreateTemplateRequest{Alias: alias, Name: alias + " mail",
		Content: &emailsenderv1.TemplateContent{Subject: subject, Html: html,
			Variables: []*emailsenderv1.TemplateVariable{{Name: "name", Type: "string", Required: true}}}})
	require.NoError(t, err)
	return resp.GetTemplate()
}

// addKey adds a key with scopes to account a and returns it.
func (b *consoleBundle) addKey(t *testing.T, a account, scopes ...string) string {
	t.Helper()
	key, prefix, hash, err := auth.NewKey()
	require.NoError(t, err)
	_, err = b.db.Pool.Exec(context.Background(), `INSERT INTO api_keys (id, account_id, name, prefix, hash, scopes) VALUES ($1, $2, 'read', $3, $4, $5)`,
		uuid.NewString(), a.id, prefix, hash, scopes)
	require.NoError(t, err)
	return key
}

type previewJSON struct {
	Subject, Text, HTMLDoc, Error string
	Missing, Unused               []string
}

// TestConsoleTemplates: the templates pages list, open, preview unsaved
// content, save a draft and publish it, with the API's scopes (read:
// list, open, preview; admin: save, publish), CSRF on every POST, and
// another account's template ids answered 404.
func TestConsoleTemplates(t *testing.T) {
	b := setupConsoleIngest(t)
	admin := b.newAccount(t, auth.ScopeAdmin, auth.ScopeRead)
	ro := b.newAccount(t, auth.ScopeAdmin) // its template is made with this key...
	other := b.newAccount(t, auth.ScopeAdmin, auth.ScopeRead)
	tpl := b.createTemplate(t, admin, "welcome", "Hi {{name}}", "<p>Hello {{name}}</p>")
	roTpl := b.createTemplate(t, ro, "ro-tpl", "RO", "<p>read only</p>")
	otherTpl := b.createTemplate(t, other, "secret-tpl", "Other's secret subject", "<p>other-body</p>")
	ro.key = b.addKey(t, ro, auth.ScopeRead) // ...and the console signed in with a read-only one

	br := b.browser(t)
	br.signIn(admin.key)
	got := br.get("/console/")
	require.Contains(t, got.body, `href="/console/templates"`)
	got = br.get("/console/templates")
	require.Equal(t, http.StatusOK, got.code, got.body)
	require.Contains(t, got.body, `href="/console/templates/`+tpl.GetId()+`">welcome</a>`)
	require.NotContains(t, got.body, "secret-tpl")
	got = br.get("/console/templates/" + tpl.GetId())
	require.Equal(t, http.StatusOK, got.code, got.body)
	require.Contains(t, got.body, "Save as draft")
	require.Contains(t, got.body, `action="/console/templates/`+tpl.GetId()+`/publish"`)
	require.Contains(t, got.header.Get("Content-Security-Policy"), "default-src 'none'")
	require.Regexp(t, `<iframe class="body" id="pv-html" title="HTML preview" sandbox="" `, got.body)
	token := csrfRE.FindStringSubmatch(got.body)[1]

	preview := func(br *browser, token string, form url.Values) (int, previewJSON) {
		t.Helper()
		form.Set("csrf", token)
		a := br.post("/console/templates/preview", form, br.origin)
		var p previewJSON
		require.NoError(t, json.Unmarshal([]byte(a.body), &p), a.body)
		return a.code, p
	}
	// The live preview of unsaved content: escaped HTML in a document with
	// its own CSP, missing and unused variables, syntax errors with line
	// and column.
	code, p := preview(br, token, url.Values{"subject": {"Hi {{name}}"}, "html": {"<p>{{name}} {{city}}</p>"},
		"variables": {`[{"name": "name", "type": "string", "required": true}]`}, "data": {`{"name": "<b>Ann</b>", "extra": 1}`}})
	require.Equal(t, http.StatusOK, code)
	assert.Empty(t, p.Error)
	assert.Equal(t, "Hi <b>Ann</b>", p.Subject)
	assert.True(t, strings.HasPrefix(p.HTMLDoc, `<!doctype html><meta http-equiv="Content-Security-Policy" content="default-src 'none';`), p.HTMLDoc)
	assert.Contains(t, p.HTMLDoc, "<p>&lt;b&gt;Ann&lt;/b&gt; </p>")
	assert.Contains(t, p.Text, "<b>Ann</b>")
	assert.Equal(t, []string{"city"}, p.Missing)
	assert.Equal(t, []string{"extra"}, p.Unused)
	// A large template (more than the console's other forms take) previews.
	code, p = preview(br, token, url.Values{"subject": {"big"}, "html": {"<p>" + strings.Repeat("x", 200<<10) + "</p>"}})
	require.Equal(t, http.StatusOK, code)
	assert.Empty(t, p.Error)
	_, p = preview(br, token, url.Values{"subject": {"x"}, "html": {"<p>\n  {{#each items}}x{{/if}}"}})
	assert.Contains(t, p.Error, "line 2, column")
	// CSRF: the preview and every action refuse a POST without the token.
	for _, path := range []string{"/console/templates/preview", "/console/templates/" + tpl.GetId(), "/console/templates/" + tpl.GetId() + "/publish"} {
		require.Equal(t, http.StatusForbidden, br.post(path, url.Values{"subject": {"x"}, "version": {"1"}}, br.origin).code, path)
		require.Equal(t, http.StatusForbidden, br.post(path, url.Values{"csrf": {token}, "subject": {"x"}, "version": {"1"}}, "http://evil.example").code, path)
	}

	// Save as draft (version 2), publish it.
	got = br.post("/console/templates/"+tpl.GetId(), url.Values{"csrf": {token}, "subject": {"Welcome {{name}}"}, "html": {"<h1>Welcome {{name}}</h1>"},
		"variables": {`[{"name": "name", "type": "string", "required": true}]`}}, br.origin)
	require.Equal(t, http.StatusSeeOther, got.code, got.body)
	got = br.get("/console/templates/" + tpl.GetId())
	require.Contains(t, got.body, "<td>v2</td><td>draft</td>")
	require.Contains(t, got.body, "Welcome {{name}}")
	got = br.post("/console/templates/"+tpl.GetId()+"/publish", url.Values{"csrf": {token}, "version": {"2"}}, br.origin)
	require.Equal(t, http.StatusSeeOther, got.code, got.body)
	got = br.get("/console/templates")
	require.Regexp(t, `welcome</a></td><td>welcome mail</td>\s*<td>v2</td>\s*<td>v2</td>`, got.body)
	// Bad input is a 400 naming the field, nothing saved.
	got = br.post("/console/templates/"+tpl.GetId(), url.Values{"csrf": {token}, "subject": {"x"}, "html": {"{{#if}"}}, br.origin)
	require.Equal(t, http.StatusBadRequest, got.code, got.body)

	// Read-only: list, open and preview; no edit or publish, and the
	// server refuses them.
	rb := b.browser(t)
	rb.signIn(ro.key)
	got = rb.get("/console/templates")
	require.Equal(t, http.StatusOK, got.code, got.body)
	require.Contains(t, got.body, "ro-tpl")
	got = rb.get("/console/templates/" + roTpl.GetId())
	require.Equal(t, http.StatusOK, got.code, got.body)
	require.NotContains(t, got.body, "Save as draft")
	require.NotContains(t, got.body, "/publish")
	require.Contains(t, got.body, `name="subject" value="RO" readonly`)
	roToken := csrfRE.FindStringSubmatch(got.body)[1]
	code, p = preview(rb, roToken, url.Values{"subject": {"RO {{name}}"}, "html": {"<p>x</p>"}, "data": {`{"name": "Bo"}`}})
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "RO Bo", p.Subject)
	require.Equal(t, http.StatusForbidden, rb.post("/console/templates/"+roTpl.GetId(), url.Values{"csrf": {roToken}, "subject": {"x"}, "html": {"<p>x</p>"}}, rb.origin).code)
	require.Equal(t, http.StatusForbidden, rb.post("/console/templates/"+roTpl.GetId()+"/publish", url.Values{"csrf": {roToken}, "version": {"1"}}, rb.origin).code)

	// Isolation: the admin (account A here) asks for the other account's
	// template by id and by alias: 404, and nothing of it is shown.
	for _, ref := range []string{otherTpl.GetId(), "secret-tpl"} {
		for what, a := range map[string]answer{
			"page":    br.get("/console/templates/" + ref),
			"save":    br.post("/console/templates/"+ref, url.Values{"csrf": {token}, "subject": {"x"}, "html": {"<p>x</p>"}}, br.origin),
			"publish": br.post("/console/templates/"+ref+"/publish", url.Values{"csrf": {token}, "version": {"1"}}, br.origin),
		} {
			require.Equal(t, http.StatusNotFound, a.code, "%s %s: %s", what, ref, a.body)
			require.NotContains(t, a.body, "other-body")
			require.NotContains(t, a.body, "Other's secret subject")
		}
	}
	var versions int
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `SELECT latest_version FROM templates WHERE id = $1`, otherTpl.GetId()).Scan(&versions))
	require.Equal(t, 1, versions, "the other account's template is unchanged")
}
