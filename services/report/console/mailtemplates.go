package console

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// The templates pages: the account's mail templates (ingest's
// TemplateService), a template's versions, and an editor of a new draft with
// a live preview. Scopes are the API's: "read" lists, opens and previews;
// "admin" saves drafts and publishes.

// TemplateIngest is ingest's TemplateService as the console calls it (with
// the session's credential, like Ingest).
type TemplateIngest interface {
	ListTemplates(ctx context.Context, req *emailsenderv1.ListTemplatesRequest) (*emailsenderv1.ListTemplatesResponse, error)
	GetTemplate(ctx context.Context, template string, version int32) (*emailsenderv1.GetTemplateResponse, error)
	ListTemplateVersions(ctx context.Context, template string) (*emailsenderv1.ListTemplateVersionsResponse, error)
	UpdateTemplate(ctx context.Context, req *emailsenderv1.UpdateTemplateRequest) (*emailsenderv1.UpdateTemplateResponse, error)
	PublishTemplate(ctx context.Context, template string, version int32) (*emailsenderv1.PublishTemplateResponse, error)
	RenderTemplate(ctx context.Context, req *emailsenderv1.RenderTemplateRequest) (*emailsenderv1.RenderTemplateResponse, error)
}

const (
	mListTemplates        = emailsenderv1.TemplateService_ListTemplates_FullMethodName
	mGetTemplate          = emailsenderv1.TemplateService_GetTemplate_FullMethodName
	mListTemplateVersions = emailsenderv1.TemplateService_ListTemplateVersions_FullMethodName
	mUpdateTemplate       = emailsenderv1.TemplateService_UpdateTemplate_FullMethodName
	mPublishTemplate      = emailsenderv1.TemplateService_PublishTemplate_FullMethodName
	mRenderTemplate       = emailsenderv1.TemplateService_RenderTemplate_FullMethodName
)

// templatesRoutes adds the templates pages to m.
func (c *Console) templatesRoutes(m *http.ServeMux) {
	m.HandleFunc("GET /console/templates", c.authed(c.templatesList))
	m.HandleFunc("POST /console/templates/preview", c.authed(c.templatePreview))
	m.HandleFunc("GET /console/templates/{tpl}", c.authed(c.templatePage))
	m.HandleFunc("POST /console/templates/{tpl}", c.authed(c.saveTemplate))
	m.HandleFunc("POST /console/templates/{tpl}/publish", c.authed(c.publishTemplate))
}

// maxTemplateFormBytes bounds the POST body of a template's editor (its
// preview and save): a part may be 256 KiB (pkg/mailtemplate's limit), more
// than the console's other forms (maxFormBytes).
const maxTemplateFormBytes = 1 << 20

// formLimit is the POST body limit of path.
func formLimit(path string) int64 {
	if strings.HasPrefix(path, "/console/templates/") {
		return maxTemplateFormBytes
	}
	return maxFormBytes
}

// templatesAPI is the TemplateService of Deps.Ingest (nil when ingest is
// off or its client has none).
func (c *Console) templatesAPI() TemplateIngest {
	t, _ := c.deps.Ingest.(TemplateIngest)
	return t
}

// canTemplates reports whether sess may call method of the TemplateService.
func (c *Console) canTemplates(sess *Session, method string) bool {
	return c.templatesAPI() != nil && c.canIngest(sess, method)
}

func (c *Console) templatesList(w http.ResponseWriter, r *http.Request, sess *Session) {
	ctx, err := c.callIngest(r.Context(), sess, mListTemplates)
	if err != nil || c.templatesAPI() == nil {
		c.failCall(w, r, sess, "ListTemplates", orPermission(c, sess, mListTemplates, err))
		return
	}
	resp, err := c.templatesAPI().ListTemplates(ctx, &emailsenderv1.ListTemplatesRequest{PageSize: 100, PageToken: r.URL.Query().Get("page")})
	if err != nil {
		c.failCall(w, r, sess, "ListTemplates", err)
		return
	}
	c.render(w, r, http.StatusOK, "templates", page{Title: "Templates", Session: sess, Data: resp})
}

type templateData struct {
	Template *emailsenderv1.Template
	Versions []*emailsenderv1.TemplateVersion
	// Draft is the content the editor starts from: the latest version's.
	Draft *emailsenderv1.TemplateVersion
	// Variables is Draft's variables as JSON, Data sample data for them.
	Variables string
	Data      string
	// Partials is Draft's partials as JSON, kept as they are by a save.
	Partials    string
	NextVersion int32
	CanEdit     bool
	CanPub      bool
}

func (c *Console) templatePage(w http.ResponseWriter, r *http.Request, sess *Session) {
	ref := r.PathValue("tpl")
	ctx, err := c.callIngest(r.Context(), sess, mGetTemplate)
	if err != nil || c.templatesAPI() == nil {
		c.failCall(w, r, sess, "GetTemplate", orPermission(c, sess, mGetTemplate, err))
		return
	}
	api := c.templatesAPI()
	got, err := api.GetTemplate(ctx, ref, 0)
	if err != nil {
		c.failCall(w, r, sess, "GetTemplate", err)
		return
	}
	if l := got.GetTemplate().GetLatestVersion(); got.GetVersion().GetVersion() != l {
		if got, err = api.GetTemplate(ctx, ref, l); err != nil {
			c.failCall(w, r, sess, "GetTemplate", err)
			return
		}
	}
	vs, err := api.ListTemplateVersions(ctx, ref)
	if err != nil {
		c.failCall(w, r, sess, "ListTemplateVersions", err)
		return
	}
	d := templateData{Template: got.GetTemplate(), Versions: vs.GetVersions(), Draft: got.GetVersion(),
		CanEdit: c.canTemplates(sess, mUpdateTemplate), CanPub: c.canTemplates(sess, mPublishTemplate)}
	d.Variables, d.Data = variablesJSON(got.GetVersion().GetContent().GetVariables())
	d.NextVersion = got.GetTemplate().GetLatestVersion() + 1
	if p := got.GetVersion().GetContent().GetPartials(); len(p) > 0 {
		b, err := json.Marshal(p)
		if err != nil {
			c.failCall(w, r, sess, "GetTemplate", err)
			return
		}
		d.Partials = string(b)
	}
	w.Header().Set("Content-Security-Policy", messageCSP) // the preview is styled inline
	c.render(w, r, http.StatusOK, "template", page{Title: "Template " + got.GetTemplate().GetAlias(), Session: sess, Data: d})
}

// variablesJSON is vars as the editor shows them, and sample data: each
// variable's default, or its name.
func variablesJSON(vars []*emailsenderv1.TemplateVariable) (string, string) {
	parts := make([]string, 0, len(vars))
	data := map[string]any{}
	for _, v := range vars {
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(v)
		if err == nil {
			parts = append(parts, "  "+string(b))
		}
		if dv := v.GetDefaultValue(); dv != nil {
			data[v.GetName()] = dv.AsInterface()
		} else {
			data[v.GetName()] = v.GetName()
		}
	}
	sample, _ := json.MarshalIndent(data, "", "  ")
	if len(parts) == 0 {
		return "[]", string(sample)
	}
	return "[\n" + strings.Join(parts, ",\n") + "\n]", string(sample)
}

// contentForm is the editor's content: subject, html, text, variables (a
// JSON array of TemplateVariable), layout and partials as stored.
func contentForm(r *http.Request) (*emailsenderv1.TemplateContent, error) {
	content := &emailsenderv1.TemplateContent{
		Subject: r.PostFormValue("subject"), Html: r.PostFormValue("html"), Text: r.PostFormValue("text"),
		Layout: r.PostFormValue("layout"),
	}
	if p := r.PostFormValue("partials"); p != "" {
		if err := json.Unmarshal([]byte(p), &content.Partials); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "partials: %v", err)
		}
	}
	if v := strings.TrimSpace(r.PostFormValue("variables")); v != "" {
		var raw []json.RawMessage
		if err := json.Unmarshal([]byte(v), &raw); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "variables: a JSON array of {name, type, required, default_value}: %v", err)
		}
		for i, m := range raw {
			var tv emailsenderv1.TemplateVariable
			if err := protojson.Unmarshal(m, &tv); err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "variables[%d]: %v", i, err)
			}
			content.Variables = append(content.Variables, &tv)
		}
	}
	return content, nil
}

// previewAnswer is the preview endpoint's JSON.
type previewAnswer struct {
	Subject string   `json:"subject"`
	Text    string   `json:"text"`
	HTMLDoc string   `json:"htmlDoc"`
	Missing []string `json:"missing"`
	Unused  []string `json:"unused"`
	Error   string   `json:"error,omitempty"`
}

// templatePreview renders the editor's unsaved content with its sample data
// (RenderTemplate on content) and answers JSON; the page shows the HTML in
// a sandboxed srcdoc iframe under bodyCSP, as the Message page does.
func (c *Console) templatePreview(w http.ResponseWriter, r *http.Request, sess *Session) {
	writeJSON := func(code int, a previewAnswer) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(a)
	}
	ctx, err := c.callIngest(r.Context(), sess, mRenderTemplate)
	if err != nil || c.templatesAPI() == nil {
		writeJSON(http.StatusForbidden, previewAnswer{Error: status.Convert(orPermission(c, sess, mRenderTemplate, err)).Message()})
		return
	}
	content, err := contentForm(r)
	if err != nil {
		writeJSON(http.StatusOK, previewAnswer{Error: status.Convert(err).Message()})
		return
	}
	req := &emailsenderv1.RenderTemplateRequest{Content: content}
	if d := strings.TrimSpace(r.PostFormValue("data")); d != "" {
		req.Data = &structpb.Struct{}
		if err := protojson.Unmarshal([]byte(d), req.Data); err != nil {
			writeJSON(http.StatusOK, previewAnswer{Error: "sample data: a JSON object: " + err.Error()})
			return
		}
	}
	resp, err := c.templatesAPI().RenderTemplate(ctx, req)
	if err != nil {
		st := status.Convert(err)
		switch st.Code() {
		case codes.InvalidArgument, codes.FailedPrecondition, codes.NotFound:
			// A syntax error names the part, line and column.
			writeJSON(http.StatusOK, previewAnswer{Error: st.Message()})
		default:
			c.log.ErrorContext(r.Context(), "console call failed", "op", "RenderTemplate", "error", err)
			writeJSON(http.StatusBadGateway, previewAnswer{Error: "the preview failed on our side; try again"})
		}
		return
	}
	a := previewAnswer{Subject: resp.GetSubject(), Text: resp.GetText(), Missing: resp.GetMissingVariables(), Unused: resp.GetUnusedVariables()}
	if h := resp.GetHtml(); h != "" {
		a.HTMLDoc = `<!doctype html><meta http-equiv="Content-Security-Policy" content="` + bodyCSP + `">` + h
	}
	writeJSON(http.StatusOK, a)
}

// saveTemplate stores the editor's content as a new draft version.
func (c *Console) saveTemplate(w http.ResponseWriter, r *http.Request, sess *Session) {
	ref := r.PathValue("tpl")
	ctx, err := c.callIngest(r.Context(), sess, mUpdateTemplate)
	if err != nil || c.templatesAPI() == nil {
		c.failCall(w, r, sess, "UpdateTemplate", orPermission(c, sess, mUpdateTemplate, err))
		return
	}
	content, err := contentForm(r)
	if err != nil {
		c.failCall(w, r, sess, "UpdateTemplate", err)
		return
	}
	resp, err := c.templatesAPI().UpdateTemplate(ctx, &emailsenderv1.UpdateTemplateRequest{Template: ref, Content: content})
	if err != nil {
		c.failCall(w, r, sess, "UpdateTemplate", err)
		return
	}
	http.Redirect(w, r, "/console/templates/"+resp.GetTemplate().GetId(), http.StatusSeeOther)
}

// publishTemplate makes a version the one sends use.
func (c *Console) publishTemplate(w http.ResponseWriter, r *http.Request, sess *Session) {
	ref := r.PathValue("tpl")
	ctx, err := c.callIngest(r.Context(), sess, mPublishTemplate)
	if err != nil || c.templatesAPI() == nil {
		c.failCall(w, r, sess, "PublishTemplate", orPermission(c, sess, mPublishTemplate, err))
		return
	}
	v, err := strconv.Atoi(r.PostFormValue("version"))
	if err != nil || v <= 0 {
		c.failCall(w, r, sess, "PublishTemplate", status.Error(codes.InvalidArgument, "version: a positive number"))
		return
	}
	resp, err := c.templatesAPI().PublishTemplate(ctx, ref, int32(v))
	if err != nil {
		c.failCall(w, r, sess, "PublishTemplate", err)
		return
	}
	http.Redirect(w, r, "/console/templates/"+resp.GetTemplate().GetId(), http.StatusSeeOther)
}

// orPermission is err, or the refusal of method when the templates are off.
func orPermission(c *Console, sess *Session, method string, err error) error {
	if err != nil {
		return err
	}
	return errPermission(c, sess, method)
}
