package ingest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/namirasoft/email-sender/pkg/mime"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/testkit/mimecheck"
	"github.com/namirasoft/email-sender/pkg/testkit/statustest"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

func vars(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	require.NoError(t, err)
	return s
}

// createWelcome stores a layout and a "welcome" template using it, both
// published, and returns the welcome template.
func createWelcome(t *testing.T, b *testBundle) *emailsenderv1.Template {
	t.Helper()
	ctx := b.ctx(t)
	lay, err := b.tpl.CreateTemplate(ctx, &emailsenderv1.CreateTemplateRequest{Alias: "layout", Content: &emailsenderv1.TemplateContent{
		Subject: "layout", Html: "<html><body>{{{content}}}<footer>{{company}}</footer></body></html>",
	}})
	require.NoError(t, err)
	_, err = b.tpl.PublishTemplate(ctx, &emailsenderv1.PublishTemplateRequest{Template: lay.GetTemplate().GetId()})
	require.NoError(t, err)
	resp, err := b.tpl.CreateTemplate(ctx, &emailsenderv1.CreateTemplateRequest{Alias: "welcome", Name: "Welcome", Content: &emailsenderv1.TemplateContent{
		Subject:  "Welcome, {{name}}!",
		Html:     `<h1>Hi {{name}}</h1><p>Your plan: {{> plan}}</p><p><a href="{{url}}">Start</a></p>`,
		Partials: map[string]string{"plan": "<b>{{plan}}</b>"},
		Layout:   "layout",
		Variables: []*emailsenderv1.TemplateVariable{
			{Name: "name", Type: "string", Required: true},
			{Name: "plan", Type: "string", DefaultValue: structpb.NewStringValue("free")},
			{Name: "url", Type: "string", Required: true},
			{Name: "company", Type: "string", DefaultValue: structpb.NewStringValue("ACME")},
		},
	}})
	require.NoError(t, err)
	_, err = b.tpl.PublishTemplate(ctx, &emailsenderv1.PublishTemplateRequest{Template: "welcome"})
	require.NoError(t, err)
	return resp.GetTemplate()
}

func TestTemplateAPI(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx(t)
	welcome := createWelcome(t, b)

	// A syntax error names the part, with its line and column.
	_, err := b.tpl.CreateTemplate(ctx, &emailsenderv1.CreateTemplateRequest{Alias: "broken", Content: &emailsenderv1.TemplateContent{
		Subject: "ok", Html: "<p>\n{{#if x}}never closed"}})
	statustest.RequireField(t, err, codes.InvalidArgument, "content.html")
	assert.Contains(t, err.Error(), "line 2, column")
	_, err = b.tpl.CreateTemplate(ctx, &emailsenderv1.CreateTemplateRequest{Alias: "welcome", Content: &emailsenderv1.TemplateContent{Subject: "s", Html: "h"}})
	require.Equal(t, codes.AlreadyExists, statusCode(err))

	// A new draft does not change what sends use until it is published.
	up, err := b.tpl.UpdateTemplate(ctx, &emailsenderv1.UpdateTemplateRequest{Template: "welcome", Content: &emailsenderv1.TemplateContent{
		Subject: "v2 {{name}}", Html: "<p>v2 {{name}}</p>", Variables: []*emailsenderv1.TemplateVariable{{Name: "name", Required: true}}}})
	require.NoError(t, err)
	require.Equal(t, int32(2), up.GetTemplate().GetLatestVersion())
	require.Equal(t, int32(1), up.GetTemplate().GetPublishedVersion())
	data := vars(t, map[string]any{"name": "Ana", "url": "https://x.example/start", "extra": 1})
	r, err := b.tpl.RenderTemplate(ctx, &emailsenderv1.RenderTemplateRequest{Template: "welcome", Data: data})
	require.NoError(t, err)
	assert.Equal(t, "Welcome, Ana!", r.GetSubject())
	assert.Equal(t, `<html><body><h1>Hi Ana</h1><p>Your plan: <b>free</b></p><p><a href="https://x.example/start">Start</a></p><footer>ACME</footer></body></html>`, r.GetHtml())
	assert.Equal(t, "Hi Ana\n\nYour plan: free\n\nStart (https://x.example/start)\n\nACME", r.GetText())
	assert.Equal(t, []string{"extra"}, r.GetUnusedVariables())
	r, err = b.tpl.RenderTemplate(ctx, &emailsenderv1.RenderTemplateRequest{Template: welcome.GetId(), Version: 2, Data: data})
	require.NoError(t, err)
	assert.Equal(t, "v2 Ana", r.GetSubject())
	// A preview reports missing variables rather than failing.
	r, err = b.tpl.RenderTemplate(ctx, &emailsenderv1.RenderTemplateRequest{Template: "welcome"})
	require.NoError(t, err)
	assert.Equal(t, []string{"name", "url"}, r.GetMissingVariables())

	vs, err := b.tpl.ListTemplateVersions(ctx, &emailsenderv1.ListTemplateVersionsRequest{Template: "welcome"})
	require.NoError(t, err)
	require.Len(t, vs.GetVersions(), 2)
	assert.Equal(t, "draft", vs.GetVersions()[0].GetState())
	assert.Equal(t, "layout", vs.GetVersions()[1].GetContent().GetLayout())
	_, err = b.tpl.PublishTemplate(ctx, &emailsenderv1.PublishTemplateRequest{Template: "welcome", Version: 2})
	require.NoError(t, err)
	r, err = b.tpl.RenderTemplate(ctx, &emailsenderv1.RenderTemplateRequest{Template: "welcome", Data: data})
	require.NoError(t, err)
	assert.Equal(t, "v2 Ana", r.GetSubject())

	list, err := b.tpl.ListTemplates(ctx, &emailsenderv1.ListTemplatesRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetTemplates(), 2)

	// A test send goes to a verified sender (the bootstrap verified example.com).
	ts, err := b.tpl.SendTestTemplate(ctx, &emailsenderv1.SendTestTemplateRequest{Template: "welcome", Data: data, To: "me@example.com"})
	require.NoError(t, err)
	require.NotEmpty(t, ts.GetMessageId())
	_, err = b.tpl.SendTestTemplate(ctx, &emailsenderv1.SendTestTemplateRequest{Template: "welcome", Data: data, To: "me@elsewhere.example"})
	statustest.RequireField(t, err, codes.InvalidArgument, "to")

	_, err = b.tpl.DeleteTemplate(ctx, &emailsenderv1.DeleteTemplateRequest{Template: "welcome"})
	require.NoError(t, err)
	_, err = b.tpl.GetTemplate(ctx, &emailsenderv1.GetTemplateRequest{Template: "welcome"})
	require.Equal(t, codes.NotFound, statusCode(err))
}

func templatedMessage() *emailsenderv1.EmailMessage {
	m := validMessage()
	m.Subject, m.TextBody, m.HtmlBody = "", "", ""
	return m
}

// TestSendWithTemplate sends templated messages (one, and a batch with
// per-recipient variables) and reads what was stored and queued back; the
// MIME the worker builds from the job is parsed by Python's email package.
func TestSendWithTemplate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx(t)
	welcome := createWelcome(t, b)
	payload := `<script>alert("pwned")</script>`

	// Missing required variable: INVALID_ARGUMENT naming it.
	_, err := b.client.SendEmail(ctx, &emailsenderv1.SendEmailRequest{Message: templatedMessage(),
		Template: &emailsenderv1.TemplateRef{Template: "welcome", Variables: vars(t, map[string]any{"name": "x"})}})
	statustest.RequireField(t, err, codes.InvalidArgument, "template.variables.url")
	// Content and a template together are refused.
	_, err = b.client.SendEmail(ctx, &emailsenderv1.SendEmailRequest{Message: validMessage(),
		Template: &emailsenderv1.TemplateRef{Template: "welcome"}})
	statustest.RequireField(t, err, codes.InvalidArgument, "message.subject")
	_, err = b.client.SendEmail(ctx, &emailsenderv1.SendEmailRequest{Message: templatedMessage(),
		Template: &emailsenderv1.TemplateRef{Template: "nope"}})
	statustest.RequireField(t, err, codes.NotFound, "template.template")

	resp, err := b.client.SendEmail(ctx, &emailsenderv1.SendEmailRequest{Message: templatedMessage(),
		Template: &emailsenderv1.TemplateRef{Template: "welcome", Variables: vars(t, map[string]any{"name": payload, "url": "https://x.example/?a=1&b=2"})}})
	require.NoError(t, err)
	id := resp.GetMessageId()

	var subject, tplTag, verTag string
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT subject, tags->>'template', tags->>'template_version' FROM messages WHERE id = $1`, id).Scan(&subject, &tplTag, &verTag))
	assert.Equal(t, "Welcome, "+payload+"!", subject)
	assert.Equal(t, welcome.GetId(), tplTag)
	assert.Equal(t, "1", verTag)
	// The ACCEPTED event names the template and version: the timeline
	// (GetMessage, the console's Message page) shows them.
	ev := b.acceptedEvent(t, id)
	assert.Equal(t, queue.EventAccepted, ev.GetType())
	assert.Equal(t, "rendered from template welcome ("+welcome.GetId()+") version 1", ev.GetDetail())

	var job *queuev1.SendJob
	require.Eventually(t, func() bool {
		for _, m := range b.sendJobs(t) {
			var j queuev1.SendJob
			require.NoError(t, proto.Unmarshal(m.Data, &j))
			if j.GetMessageId() == id {
				job = &j
				return true
			}
		}
		return false
	}, 5*time.Second, 20*time.Millisecond)
	raw, err := mime.Raw(job.GetMessage(), mime.Options{MessageID: id, Date: time.Unix(1700000000, 0)})
	require.NoError(t, err)
	parsed, err := mimecheck.ParseOne(t.Context(), raw)
	require.NoError(t, err)
	require.Empty(t, parsed.Defects)
	assert.Equal(t, "Welcome, "+payload+"!", parsed.Subject)
	var html, text string
	for _, p := range parsed.Parts {
		switch p.ContentType {
		case "text/html":
			html = p.Text
		case "text/plain":
			if p.Disposition != "attachment" {
				text = p.Text
			}
		}
	}
	assert.Contains(t, html, "<h1>Hi &lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;</h1>")
	assert.NotContains(t, html, "<script>")
	assert.Contains(t, html, `href="https://x.example/?a=1&amp;b=2"`)
	assert.Contains(t, html, "<footer>ACME</footer>")
	assert.Contains(t, text, "Hi "+payload, "verbatim in the text part")
	assert.Contains(t, text, "Start (https://x.example/?a=1&b=2)")

	// A batch with per-recipient variables; one item misses a variable.
	var items []*emailsenderv1.SendEmailRequest
	names := []string{"Ann", "Bob", "", "Dee"}
	for i, n := range names {
		m := templatedMessage()
		m.To = []*emailsenderv1.Address{{Address: strings.ToLower(n) + "@example.org"}}
		v := map[string]any{"url": "https://x.example/" + n}
		if n != "" {
			v["name"] = n
		} else {
			m.To[0].Address = "anon@example.org"
		}
		_ = i
		items = append(items, &emailsenderv1.SendEmailRequest{Message: m, Template: &emailsenderv1.TemplateRef{Template: "welcome", Variables: vars(t, v)}})
	}
	br, err := b.client.SendBatch(ctx, &emailsenderv1.SendBatchRequest{Messages: items})
	require.NoError(t, err)
	for i, r := range br.GetResults() {
		if names[i] == "" {
			assert.Equal(t, int32(codes.InvalidArgument), r.GetErrorCode())
			assert.True(t, strings.HasPrefix(r.GetErrorMessage(), "messages[2].template.variables.name: "), r.GetErrorMessage())
			continue
		}
		require.NotEmpty(t, r.GetAccepted().GetMessageId(), r.GetErrorMessage())
		var subject string
		require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT subject FROM messages WHERE id = $1`, r.GetAccepted().GetMessageId()).Scan(&subject))
		assert.Equal(t, "Welcome, "+names[i]+"!", subject)
	}
}

func statusCode(err error) codes.Code { return status.Code(err) }
