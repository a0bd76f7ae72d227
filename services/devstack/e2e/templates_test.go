package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/namirasoft/email-sender/pkg/testkit/mimecheck"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// TestTemplatesEndToEnd pushes a directory of templates with the CLI (as a
// process), pulls it back, and sends with the template through the whole
// pipeline (ingest, worker, SMTP): the mail the sink received is read by
// Python's email package.
func TestTemplatesEndToEnd(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{http: true})
	key := s.accounts["a"].APIKey
	c := newCLI(t, "EMAILSENDER_ADDR="+s.ingestAddr, "EMAILSENDER_REPORT_ADDR="+s.reportAddr,
		"EMAILSENDER_API_KEY="+key, "EMAILSENDER_TLS=false")
	dir := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(dir, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
	write("base/template.json", `{"name": "Base layout"}`)
	write("base/subject.txt", "layout\n")
	write("base/body.html", "<html><body>{{{content}}}{{> footer}}</body></html>")
	write("base/partials/footer.html", "<footer>{{company}}</footer>")
	write("welcome/template.json", `{"name": "Welcome", "layout": "base", "variables": [
		{"name": "name", "type": "string", "required": true},
		{"name": "company", "type": "string", "default": "ACME"}]}`)
	write("welcome/subject.txt", "Welcome, {{name}}!\n")
	write("welcome/body.html", "<h1>Hi {{name}}</h1><p>Glad you are here.</p>")
	write("welcome/partials/footer.html", "<footer>{{company}}</footer>")

	out := c.ok("templates", "push", dir, "--publish")
	assert.Regexp(t, `base\s+created, published\s+1\s+1`, out)
	assert.Regexp(t, `welcome\s+created, published\s+1\s+1`, out)
	out = c.ok("templates", "push", dir)
	assert.Regexp(t, `welcome\s+unchanged\s+1\s+1`, out)
	write("welcome/body.html", "<h1>Hello {{name}}</h1><p>Glad you are here.</p>")
	out = c.ok("templates", "push", dir)
	assert.Regexp(t, `welcome\s+updated\s+2\s+1`, out, "a new draft; v1 stays published")
	out = c.ok("templates", "publish", "welcome")
	assert.Contains(t, out, "published  2")

	pulled := t.TempDir()
	c.ok("templates", "pull", pulled)
	for _, f := range []string{"welcome/subject.txt", "welcome/body.html", "welcome/partials/footer.html", "base/body.html"} {
		want, err := os.ReadFile(filepath.Join(dir, f))
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(pulled, f))
		require.NoError(t, err, f)
		assert.Equal(t, string(want), string(got), f)
	}
	meta, err := os.ReadFile(filepath.Join(pulled, "welcome/template.json"))
	require.NoError(t, err)
	assert.Contains(t, string(meta), `"layout": "base"`)
	out = c.ok("templates", "push", pulled)
	assert.Regexp(t, `welcome\s+unchanged\s+2\s+2`, out, "a pulled directory pushes as unchanged")

	// Over HTTP/JSON (the grpc-gateway): a live preview of unsaved content,
	// a syntax error naming the part, line and column, and a get by alias.
	code, body := httpCall{method: "POST", url: s.ingestURL + "/v1/templates:render", key: key, body: map[string]any{
		"content": map[string]any{"subject": "Hi {{name}}", "html": "<p>{{name}}</p>", "layout": "base"},
		"data":    map[string]any{"name": "<Ann>", "extra": 1},
	}}.do(t)
	require.Equal(t, 200, code, "%v", body)
	assert.Equal(t, "Hi <Ann>", body["subject"])
	assert.Equal(t, "<html><body><p>&lt;Ann&gt;</p><footer></footer></body></html>", body["html"])
	assert.Equal(t, []any{"extra"}, body["unusedVariables"])
	code, body = httpCall{method: "POST", url: s.ingestURL + "/v1/templates", key: key, body: map[string]any{
		"alias": "broken", "content": map[string]any{"subject": "ok", "html": "<p>\n  {{#each items}}x{{/if}}"},
	}}.do(t)
	require.Equal(t, 400, code, "%v", body)
	assert.Contains(t, body["message"], "content.html: line 2, column")
	code, body = httpCall{method: "GET", url: s.ingestURL + "/v1/templates/welcome", key: key}.do(t)
	require.Equal(t, 200, code, "%v", body)
	assert.Equal(t, float64(2), body["version"].(map[string]any)["version"])

	// Send with the template, through the worker to the SMTP sink.
	payload := `<script>alert(1)</script> & "friends"`
	vars, err := structpb.NewStruct(map[string]any{"name": payload})
	require.NoError(t, err)
	id := s.sendOK("a", &v1.SendEmailRequest{
		Message:  &v1.EmailMessage{From: &v1.Address{Address: "sender@example.com"}, To: []*v1.Address{{Address: "jane@example.com"}}},
		Template: &v1.TemplateRef{Template: "welcome", Variables: vars},
	})
	got := s.waitStatus("a", id, v1.MessageStatus_SENT)
	assert.Equal(t, "2", got.GetMessage().GetTags()["template_version"])
	// The timeline records the template version the content was rendered from.
	require.NotEmpty(t, got.GetEvents())
	accepted := got.GetEvents()[0]
	assert.Equal(t, "ACCEPTED", accepted.GetType())
	assert.Regexp(t, `^rendered from template welcome \([0-9a-f-]{36}\) version 2$`, accepted.GetDetail())
	var raw []byte
	for _, m := range s.sink.Messages() {
		if containsID(m.Data, id) {
			raw = m.Data
		}
	}
	require.NotNil(t, raw)
	msg, err := mimecheck.ParseOne(t.Context(), raw)
	require.NoError(t, err)
	require.Empty(t, msg.Defects)
	assert.Equal(t, "Welcome, "+payload+"!", msg.Subject)
	var html, text string
	for _, p := range msg.Parts {
		switch p.ContentType {
		case "text/html":
			html = p.Text
		case "text/plain":
			text = p.Text
		}
	}
	assert.Equal(t, "<html><body><h1>Hello &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;friends&quot;</h1><p>Glad you are here.</p><footer>ACME</footer></body></html>", strings.TrimSpace(html))
	assert.Equal(t, "Hello "+payload+"\n\nGlad you are here.\n\nACME", strings.TrimSpace(text), "generated from the HTML, verbatim")
}
