// Package templates implements the TemplateService gRPC API (stored,
// versioned email templates, rendered by pkg/mailtemplate) and the Renderer
// the send path uses to turn SendEmailRequest.template into the message's
// subject, HTML and text at acceptance. Every query is scoped to the
// caller's account in the store.
package templates

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/address"
	"github.com/namirasoft/email-sender/pkg/apierr"
	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/mailtemplate"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest/store"
)

// DB is what the service needs of PostgreSQL (a *pgxpool.Pool).
type DB interface {
	store.DBTX
	store.Beginner
}

// Sender accepts a message (the send path's SendEmail), for test sends.
type Sender interface {
	SendEmail(ctx context.Context, req *emailsenderv1.SendEmailRequest) (*emailsenderv1.SendEmailResponse, error)
}

// Server is the TemplateService, and the send path's Renderer.
type Server struct {
	emailsenderv1.UnimplementedTemplateServiceServer
	db     DB
	sender Sender
	log    *slog.Logger
	now    func() time.Time
	lim    mailtemplate.Limits
	cache  *cache
}

// New is a Server; sender may be set later with SetSender (the send path
// needs the Server as its Renderer first).
func New(db DB, log *slog.Logger) *Server {
	return &Server{db: db, log: log, now: time.Now, lim: mailtemplate.DefaultLimits, cache: newCache(4096, 5*time.Second)}
}

// SetSender sets the test sends' Sender.
func (s *Server) SetSender(sender Sender) { s.sender = sender }

// Scopes is the scope each method needs: reads and previews "read",
// changes "admin" (like the account's other configuration), test sends
// "send".
func Scopes() map[string]string {
	m := map[string]string{}
	for _, method := range emailsenderv1.TemplateService_ServiceDesc.Methods {
		need := auth.ScopeAdmin
		switch method.MethodName {
		case "GetTemplate", "ListTemplates", "ListTemplateVersions", "RenderTemplate":
			need = auth.ScopeRead
		case "SendTestTemplate":
			need = auth.ScopeSend
		}
		m["/"+emailsenderv1.TemplateService_ServiceDesc.ServiceName+"/"+method.MethodName] = need
	}
	return m
}

func caller(ctx context.Context) (string, error) {
	p, ok := auth.FromContext(ctx)
	if !ok || p.AccountID == "" {
		return "", status.Error(codes.Unauthenticated, "no authenticated account")
	}
	return p.AccountID, nil
}

var aliasRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

func (s *Server) mapErr(ctx context.Context, op string, err error) error {
	return apierr.Map(ctx, s.log, op, err,
		apierr.Is(store.ErrNotFound, codes.NotFound, "no such template or version in this account"),
		apierr.Is(store.ErrAliasTaken, codes.AlreadyExists, "another template of this account has that alias"),
		templateRule("content."))
}

// templateRule maps pkg/mailtemplate's errors to field errors under prefix.
func templateRule(prefix string) apierr.Rule {
	return func(err error) (*status.Status, bool) {
		if fe := FieldError(prefix, err); fe != nil {
			return fe.GRPCStatus(), true
		}
		return nil, false
	}
}

// FieldError is the INVALID_ARGUMENT field error for a pkg/mailtemplate
// error, its field under prefix ("content." for a template's parts,
// "template." for a send's); nil for other errors.
func FieldError(prefix string, err error) *apierr.FieldError {
	var (
		se *mailtemplate.SyntaxError
		le *mailtemplate.LimitError
		me *mailtemplate.MissingError
		te *mailtemplate.TypeError
	)
	field := func(part string) string { return prefix + part }
	switch {
	case errors.As(err, &se):
		reason := se.Reason
		if se.Line > 0 {
			reason = fmt.Sprintf("line %d, column %d: %s", se.Line, se.Column, se.Reason)
		}
		return &apierr.FieldError{Code: codes.InvalidArgument, Field: field(se.Part), Reason: reason}
	case errors.As(err, &le):
		return &apierr.FieldError{Code: codes.InvalidArgument, Field: field(le.Part), Reason: le.Reason}
	case errors.As(err, &me):
		return &apierr.FieldError{Code: codes.InvalidArgument, Field: "template.variables." + me.Names[0],
			Reason: "required variable missing (missing: " + strings.Join(me.Names, ", ") + ")"}
	case errors.As(err, &te):
		return &apierr.FieldError{Code: codes.InvalidArgument, Field: "template.variables." + te.Name, Reason: "want a " + string(te.Want)}
	case errors.Is(err, mailtemplate.ErrTimeout):
		return &apierr.FieldError{Code: codes.InvalidArgument, Field: strings.TrimSuffix(prefix, "."), Reason: "rendering took too long"}
	}
	return nil
}

// content is c as the store's, its layout resolved to an id, checked by
// compiling it.
func (s *Server) content(ctx context.Context, accountID string, c *emailsenderv1.TemplateContent) (store.TemplateContent, error) {
	out := store.TemplateContent{Subject: c.GetSubject(), HTML: c.GetHtml(), Text: c.GetText(), Partials: c.GetPartials()}
	if strings.TrimSpace(out.Subject) == "" {
		return out, apierr.InvalidField("content.subject", "required")
	}
	if strings.TrimSpace(out.HTML) == "" && strings.TrimSpace(out.Text) == "" {
		return out, apierr.InvalidField("content.html", "an HTML or a text part is required")
	}
	for _, v := range c.GetVariables() {
		mv := mailtemplate.Variable{Name: v.GetName(), Type: mailtemplate.VarType(v.GetType()), Required: v.GetRequired(), Description: v.GetDescription()}
		if v.GetDefaultValue() != nil {
			if _, null := v.GetDefaultValue().GetKind().(*structpb.Value_NullValue); !null {
				mv.Default = v.GetDefaultValue().AsInterface()
			}
		}
		out.Variables = append(out.Variables, mv)
	}
	var (
		layout         *mailtemplate.Layout
		layoutPartials map[string]string
	)
	if ref := c.GetLayout(); ref != "" {
		lt, lv, err := store.GetTemplateVersion(ctx, s.db, accountID, ref, 0)
		if errors.Is(err, store.ErrNotFound) {
			return out, apierr.InvalidField("content.layout", "no published template %q in this account", ref)
		}
		if err != nil {
			return out, err
		}
		if !strings.Contains(lv.HTML, "{{{"+mailtemplate.ContentSlot+"}}}") && !strings.Contains(lv.Text, "{{{"+mailtemplate.ContentSlot+"}}}") {
			return out, apierr.InvalidField("content.layout", "template %q has no {{{content}}} slot", ref)
		}
		out.LayoutID = lt.ID
		layout = &mailtemplate.Layout{HTML: lv.HTML, Text: lv.Text}
		layoutPartials = lv.Partials
	}
	if _, err := mailtemplate.Compile(mailtemplate.Template{Subject: out.Subject, HTML: out.HTML, Text: out.Text,
		Variables: out.Variables, Partials: withPartials(out.Partials, layoutPartials), Layout: layout}, s.lim); err != nil {
		return out, err
	}
	return out, nil
}

// CreateTemplate implements TemplateService.
func (s *Server) CreateTemplate(ctx context.Context, req *emailsenderv1.CreateTemplateRequest) (*emailsenderv1.CreateTemplateResponse, error) {
	accountID, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if !aliasRE.MatchString(req.GetAlias()) {
		return nil, apierr.InvalidField("alias", "want 1 to 64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	if _, err := uuid.Parse(req.GetAlias()); err == nil {
		return nil, apierr.InvalidField("alias", "must not be a UUID (ids and aliases name templates alike)")
	}
	c, err := s.content(ctx, accountID, req.GetContent())
	if err != nil {
		return nil, s.mapErr(ctx, "CreateTemplate", err)
	}
	t, err := store.CreateTemplate(ctx, s.db, accountID, req.GetAlias(), req.GetName(), c, s.now().UTC())
	if err != nil {
		return nil, s.mapErr(ctx, "CreateTemplate", err)
	}
	return &emailsenderv1.CreateTemplateResponse{Template: toProto(t)}, nil
}

// GetTemplate implements TemplateService.
func (s *Server) GetTemplate(ctx context.Context, req *emailsenderv1.GetTemplateRequest) (*emailsenderv1.GetTemplateResponse, error) {
	accountID, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	version := int(req.GetVersion())
	if version == 0 {
		t, err := store.GetTemplate(ctx, s.db, accountID, req.GetTemplate())
		if err != nil {
			return nil, s.mapErr(ctx, "GetTemplate", err)
		}
		version = t.PublishedVersion
		if version == 0 {
			version = t.LatestVersion
		}
	}
	t, v, err := store.GetTemplateVersion(ctx, s.db, accountID, req.GetTemplate(), version)
	if err != nil {
		return nil, s.mapErr(ctx, "GetTemplate", err)
	}
	return &emailsenderv1.GetTemplateResponse{Template: toProto(t), Version: versionProto(ctx, s.db, accountID, v)}, nil
}

// ListTemplates implements TemplateService.
func (s *Server) ListTemplates(ctx context.Context, req *emailsenderv1.ListTemplatesRequest) (*emailsenderv1.ListTemplatesResponse, error) {
	accountID, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	if size <= 0 || size > 100 {
		size = 100
	}
	ts, err := store.ListTemplates(ctx, s.db, accountID, req.GetPageToken(), size+1)
	if err != nil {
		return nil, s.mapErr(ctx, "ListTemplates", err)
	}
	resp := &emailsenderv1.ListTemplatesResponse{}
	if len(ts) > size {
		ts = ts[:size]
		resp.NextPageToken = ts[size-1].Alias
	}
	for _, t := range ts {
		resp.Templates = append(resp.Templates, toProto(t))
	}
	return resp, nil
}

// UpdateTemplate implements TemplateService.
func (s *Server) UpdateTemplate(ctx context.Context, req *emailsenderv1.UpdateTemplateRequest) (*emailsenderv1.UpdateTemplateResponse, error) {
	accountID, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	c, err := s.content(ctx, accountID, req.GetContent())
	if err != nil {
		return nil, s.mapErr(ctx, "UpdateTemplate", err)
	}
	var name *string
	if req.GetName() != "" {
		n := req.GetName()
		name = &n
	}
	t, err := store.UpdateTemplate(ctx, s.db, accountID, req.GetTemplate(), name, c, s.now().UTC())
	if err != nil {
		return nil, s.mapErr(ctx, "UpdateTemplate", err)
	}
	return &emailsenderv1.UpdateTemplateResponse{Template: toProto(t)}, nil
}

// PublishTemplate implements TemplateService.
func (s *Server) PublishTemplate(ctx context.Context, req *emailsenderv1.PublishTemplateRequest) (*emailsenderv1.PublishTemplateResponse, error) {
	accountID, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	t, err := store.PublishTemplate(ctx, s.db, accountID, req.GetTemplate(), int(req.GetVersion()), s.now().UTC())
	if err != nil {
		return nil, s.mapErr(ctx, "PublishTemplate", err)
	}
	s.cache.forget(accountID)
	return &emailsenderv1.PublishTemplateResponse{Template: toProto(t)}, nil
}

// ListTemplateVersions implements TemplateService.
func (s *Server) ListTemplateVersions(ctx context.Context, req *emailsenderv1.ListTemplateVersionsRequest) (*emailsenderv1.ListTemplateVersionsResponse, error) {
	accountID, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	vs, err := store.ListTemplateVersions(ctx, s.db, accountID, req.GetTemplate())
	if err != nil {
		return nil, s.mapErr(ctx, "ListTemplateVersions", err)
	}
	resp := &emailsenderv1.ListTemplateVersionsResponse{}
	for _, v := range vs {
		resp.Versions = append(resp.Versions, versionProto(ctx, s.db, accountID, v))
	}
	return resp, nil
}

// DeleteTemplate implements TemplateService.
func (s *Server) DeleteTemplate(ctx context.Context, req *emailsenderv1.DeleteTemplateRequest) (*emailsenderv1.DeleteTemplateResponse, error) {
	accountID, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := store.DeleteTemplate(ctx, s.db, accountID, req.GetTemplate()); err != nil {
		return nil, s.mapErr(ctx, "DeleteTemplate", err)
	}
	s.cache.forget(accountID)
	return &emailsenderv1.DeleteTemplateResponse{}, nil
}

// RenderTemplate implements TemplateService.
func (s *Server) RenderTemplate(ctx context.Context, req *emailsenderv1.RenderTemplateRequest) (*emailsenderv1.RenderTemplateResponse, error) {
	accountID, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	var c *Compiled
	if req.GetTemplate() != "" {
		c, err = s.compiled(ctx, accountID, req.GetTemplate(), int(req.GetVersion()))
	} else {
		c, err = s.compileContent(ctx, accountID, req.GetContent())
	}
	if err != nil {
		return nil, s.mapErr(ctx, "RenderTemplate", err)
	}
	res, err := c.tpl.Preview(ctx, req.GetData().AsMap())
	if err != nil {
		var te *mailtemplate.TypeError
		if errors.As(err, &te) {
			return nil, apierr.InvalidField("data."+te.Name, "want a %s", te.Want)
		}
		return nil, s.mapErr(ctx, "RenderTemplate", err)
	}
	return &emailsenderv1.RenderTemplateResponse{Subject: res.Subject, Html: res.HTML, Text: res.Text,
		MissingVariables: res.Missing, UnusedVariables: res.Unused}, nil
}

func (s *Server) compileContent(ctx context.Context, accountID string, pc *emailsenderv1.TemplateContent) (*Compiled, error) {
	c, err := s.content(ctx, accountID, pc)
	if err != nil {
		return nil, err
	}
	return s.compile(ctx, accountID, store.Template{}, store.TemplateVersion{TemplateContent: c})
}

// SendTestTemplate implements TemplateService.
func (s *Server) SendTestTemplate(ctx context.Context, req *emailsenderv1.SendTestTemplateRequest) (*emailsenderv1.SendTestTemplateResponse, error) {
	accountID, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if s.sender == nil {
		return nil, status.Error(codes.Unimplemented, "test sends are not available")
	}
	to, err := address.Parse(req.GetTo())
	if err != nil {
		return nil, apierr.InvalidField("to", "%v", err)
	}
	canon := to.Lower()
	grants, err := store.VerifiedSenders(ctx, s.db, accountID, []string{canon})
	if err != nil {
		return nil, s.mapErr(ctx, "SendTestTemplate", err)
	}
	if !grants[canon].Verified() {
		return nil, apierr.InvalidField("to", "%s is not a verified sender of this account", canon)
	}
	resp, err := s.sender.SendEmail(ctx, &emailsenderv1.SendEmailRequest{
		Message: &emailsenderv1.EmailMessage{
			From: &emailsenderv1.Address{Address: canon},
			To:   []*emailsenderv1.Address{{Address: canon}},
			Tags: map[string]string{"template_test": "true"},
		},
		ProviderId: req.GetProviderId(),
		Template:   &emailsenderv1.TemplateRef{Template: req.GetTemplate(), Version: req.GetVersion(), Variables: req.GetData()},
	})
	if err != nil {
		return nil, err
	}
	return &emailsenderv1.SendTestTemplateResponse{MessageId: resp.GetMessageId()}, nil
}

func toProto(t store.Template) *emailsenderv1.Template {
	return &emailsenderv1.Template{Id: t.ID, Alias: t.Alias, Name: t.Name, LatestVersion: int32(t.LatestVersion),
		PublishedVersion: int32(t.PublishedVersion), CreateTime: timestamppb.New(t.CreatedAt), UpdateTime: timestamppb.New(t.UpdatedAt)}
}

func versionProto(ctx context.Context, db store.DBTX, accountID string, v store.TemplateVersion) *emailsenderv1.TemplateVersion {
	c := &emailsenderv1.TemplateContent{Subject: v.Subject, Html: v.HTML, Text: v.Text, Partials: v.Partials}
	for _, mv := range v.Variables {
		pv := &emailsenderv1.TemplateVariable{Name: mv.Name, Type: string(mv.Type), Required: mv.Required, Description: mv.Description}
		if mv.Default != nil {
			if d, err := structpb.NewValue(mv.Default); err == nil {
				pv.DefaultValue = d
			}
		}
		c.Variables = append(c.Variables, pv)
	}
	if v.LayoutID != "" {
		c.Layout = v.LayoutID
		if lt, err := store.GetTemplate(ctx, db, accountID, v.LayoutID); err == nil {
			c.Layout = lt.Alias
		}
	}
	return &emailsenderv1.TemplateVersion{Version: int32(v.Version), State: v.State, Content: c, CreateTime: timestamppb.New(v.CreatedAt)}
}

// withPartials is a template's partials with its layout's: the layout's
// parts may include their own partials; the template's win on a name both
// have.
func withPartials(own, layout map[string]string) map[string]string {
	if len(layout) == 0 {
		return own
	}
	m := make(map[string]string, len(own)+len(layout))
	for k, v := range layout {
		m[k] = v
	}
	for k, v := range own {
		m[k] = v
	}
	return m
}

// Compiled is a stored template version, compiled.
type Compiled struct {
	ID      string
	Alias   string
	Version int
	tpl     *mailtemplate.Compiled
}

// compiled is the template ref's version (0: the published one),
// compiled, from the cache when there.
func (s *Server) compiled(ctx context.Context, accountID, ref string, version int) (*Compiled, error) {
	if c := s.cache.get(accountID, ref, version); c != nil {
		return c, nil
	}
	t, v, err := store.GetTemplateVersion(ctx, s.db, accountID, ref, version)
	if errors.Is(err, store.ErrNotFound) && version == 0 {
		if _, gerr := store.GetTemplate(ctx, s.db, accountID, ref); gerr == nil {
			return nil, status.Errorf(codes.FailedPrecondition, "template %q has no published version: publish one or name a version", ref)
		}
	}
	if err != nil {
		return nil, err
	}
	c, err := s.compile(ctx, accountID, t, v)
	if err != nil {
		return nil, err
	}
	s.cache.put(accountID, ref, version, c)
	return c, nil
}

func (s *Server) compile(ctx context.Context, accountID string, t store.Template, v store.TemplateVersion) (*Compiled, error) {
	mt := mailtemplate.Template{Subject: v.Subject, HTML: v.HTML, Text: v.Text, Variables: v.Variables, Partials: v.Partials}
	if v.LayoutID != "" {
		_, lv, err := store.GetTemplateVersion(ctx, s.db, accountID, v.LayoutID, 0)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if err == nil {
			mt.Layout = &mailtemplate.Layout{HTML: lv.HTML, Text: lv.Text}
			mt.Partials = withPartials(mt.Partials, lv.Partials)
		}
	}
	tpl, err := mailtemplate.Compile(mt, s.lim)
	if err != nil {
		return nil, err
	}
	return &Compiled{ID: t.ID, Alias: t.Alias, Version: v.Version, tpl: tpl}, nil
}

// Rendered is a send's rendered template.
type Rendered struct {
	TemplateID    string
	TemplateAlias string
	Version       int
	mailtemplate.Result
}

// Render renders the template ref of a send with its variables. Errors are
// field errors under "template." (or NOT_FOUND, FAILED_PRECONDITION).
func (s *Server) Render(ctx context.Context, accountID string, ref *emailsenderv1.TemplateRef) (Rendered, error) {
	if ref.GetTemplate() == "" {
		return Rendered{}, apierr.InvalidField("template.template", "required: a template id or alias")
	}
	c, err := s.compiled(ctx, accountID, ref.GetTemplate(), int(ref.GetVersion()))
	if errors.Is(err, store.ErrNotFound) {
		return Rendered{}, &apierr.FieldError{Code: codes.NotFound, Field: "template.template", Reason: fmt.Sprintf("no template %q (version %d) in this account", ref.GetTemplate(), ref.GetVersion())}
	}
	if err != nil {
		if fe := FieldError("template.", err); fe != nil {
			return Rendered{}, fe
		}
		return Rendered{}, err
	}
	res, err := c.tpl.Render(ctx, ref.GetVariables().AsMap())
	if err != nil {
		if fe := FieldError("template.", err); fe != nil {
			return Rendered{}, fe
		}
		return Rendered{}, err
	}
	return Rendered{TemplateID: c.ID, TemplateAlias: c.Alias, Version: c.Version, Result: res}, nil
}

// cache holds compiled template versions by account, ref and version, ttl
// at most: another replica's PublishTemplate, DeleteTemplate (an alias may
// then name a new template) or a publication of the layout is seen within
// ttl (this replica's publications and deletions at once). A named version
// never changes, but the template its ref names, and its layout, may.
type cache struct {
	mu   sync.Mutex
	max  int
	ttl  time.Duration
	data map[cacheKey]cacheEntry
}

type cacheKey struct {
	account, ref string
	version      int
}

type cacheEntry struct {
	c   *Compiled
	exp time.Time
}

func newCache(max int, ttl time.Duration) *cache {
	return &cache{max: max, ttl: ttl, data: map[cacheKey]cacheEntry{}}
}

func (c *cache) get(account, ref string, version int) *Compiled {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.data[cacheKey{account, ref, version}]
	if !ok || time.Now().After(e.exp) {
		return nil
	}
	return e.c
}

func (c *cache) put(account, ref string, version int, v *Compiled) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.data) >= c.max {
		// Crude bound: start over. Compiling is cheap next to a send.
		clear(c.data)
	}
	c.data[cacheKey{account, ref, version}] = cacheEntry{c: v, exp: time.Now().Add(c.ttl)}
}

func (c *cache) forget(account string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.data {
		if k.account == account {
			delete(c.data, k)
		}
	}
}

// RenderMessage is req's message with the subject, HTML and text of its
// template (req.template) rendered with its variables, and the tags
// "template" (the template's id) and "template_version" set: what the send
// path validates and stores. The request's message must leave the subject
// and bodies empty.
func (s *Server) RenderMessage(ctx context.Context, accountID string, req *emailsenderv1.SendEmailRequest) (*emailsenderv1.EmailMessage, error) {
	in := req.GetMessage()
	if in == nil {
		return nil, apierr.InvalidField("message", "is required")
	}
	switch {
	case in.GetSubject() != "":
		return nil, apierr.InvalidField("message.subject", "must be empty with a template: the template renders it")
	case in.GetHtmlBody() != "":
		return nil, apierr.InvalidField("message.html_body", "must be empty with a template: the template renders it")
	case in.GetTextBody() != "":
		return nil, apierr.InvalidField("message.text_body", "must be empty with a template: the template renders it")
	}
	r, err := s.Render(ctx, accountID, req.GetTemplate())
	if err != nil {
		return nil, err
	}
	m := proto.Clone(in).(*emailsenderv1.EmailMessage)
	m.Subject, m.HtmlBody, m.TextBody = r.Subject, r.HTML, r.Text
	if m.Tags == nil {
		m.Tags = map[string]string{}
	}
	m.Tags[TagTemplate] = r.TemplateID
	m.Tags[TagTemplateVersion] = strconv.Itoa(r.Version)
	if r.TemplateAlias != "" {
		m.Tags[TagTemplateAlias] = r.TemplateAlias
	}
	return m, nil
}

// The tags a templated message carries: the template's id, alias (when it
// has one) and version. The message's ACCEPTED event names them too
// (AcceptedDetail).
const (
	TagTemplate        = "template"
	TagTemplateAlias   = "template_alias"
	TagTemplateVersion = "template_version"
)

// AcceptedDetail is the detail of the ACCEPTED (SCHEDULED) event of a
// message with tags: "rendered from template <alias> (<id>) version <n>"
// for a templated message, "" for any other. The timeline (GetMessage, the
// console's Message page) thus records the template version the stored
// content was rendered from.
func AcceptedDetail(tags map[string]string) string {
	id, version := tags[TagTemplate], tags[TagTemplateVersion]
	if id == "" || version == "" {
		return ""
	}
	if alias := tags[TagTemplateAlias]; alias != "" {
		return fmt.Sprintf("rendered from template %s (%s) version %s", alias, id, version)
	}
	return fmt.Sprintf("rendered from template %s version %s", id, version)
}
