package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// A template directory holds one folder per template, named for its alias:
//
//	welcome/template.json   {"name", "layout", "variables": [...]}
//	welcome/subject.txt     the subject (a final newline is not part of it)
//	welcome/body.html       the HTML part
//	welcome/body.txt        the text part (optional: generated from the HTML)
//	welcome/partials/N.html the partial N (optional)
const (
	tplMeta     = "template.json"
	tplSubject  = "subject.txt"
	tplHTML     = "body.html"
	tplText     = "body.txt"
	tplPartials = "partials"
)

// templateMeta is template.json.
type templateMeta struct {
	Alias     string             `json:"alias,omitempty"`
	Name      string             `json:"name,omitempty"`
	Layout    string             `json:"layout,omitempty"`
	Variables []templateVariable `json:"variables,omitempty"`
}

type templateVariable struct {
	Name        string `json:"name"`
	Type        string `json:"type,omitempty"`
	Required    bool   `json:"required,omitempty"`
	Default     any    `json:"default,omitempty"`
	Description string `json:"description,omitempty"`
}

// templates manages the account's templates (TemplateService, on ingest).
func (r *runner) templates(ctx context.Context, args []string) error {
	cmd, args, err := sub("templates", args, "list", "push", "pull", "publish", "render", "delete")
	if err != nil {
		return err
	}
	fs := r.flagSet("templates " + cmd)
	var (
		publish, latest *bool
		version         *int
		data            *string
		want, names     = 1, "DIR"
	)
	switch cmd {
	case "list":
		want, names = 0, ""
	case "push":
		publish = fs.Bool("publish", false, "publish each template pushed (a new version, or the latest when unchanged)")
	case "pull":
		latest = fs.Bool("latest", false, "pull each template's latest version (default: the published one, else the latest)")
	case "publish":
		want, names = 1, "TEMPLATE"
		version = fs.Int("version", 0, "version to publish (default: the latest)")
	case "render":
		want, names = 1, "TEMPLATE"
		version = fs.Int("version", 0, "version to render (default: the published one)")
		data = fs.String("data", "{}", "the variables, a JSON object")
	case "delete":
		want, names = 1, "TEMPLATE"
	}
	pos, err := r.parse(fs, args, want, names)
	if err != nil {
		return err
	}
	c, err := r.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	switch cmd {
	case "list":
		resp := &v1.ListTemplatesResponse{}
		token := ""
		for {
			page, err := c.ListTemplates(ctx, &v1.ListTemplatesRequest{PageToken: token})
			if err != nil {
				return err
			}
			resp.Templates = append(resp.Templates, page.GetTemplates()...)
			if token = page.GetNextPageToken(); token == "" {
				break
			}
		}
		if r.out.json {
			return r.out.message(resp)
		}
		rows := [][]string{}
		for _, t := range resp.GetTemplates() {
			rows = append(rows, []string{t.GetAlias(), t.GetId(), strconv.Itoa(int(t.GetLatestVersion())), strconv.Itoa(int(t.GetPublishedVersion())), t.GetName()})
		}
		return r.out.table([]string{"ALIAS", "ID", "LATEST", "PUBLISHED", "NAME"}, rows)
	case "push":
		return r.pushTemplates(ctx, c, pos[0], *publish)
	case "pull":
		return r.pullTemplates(ctx, c, pos[0], *latest)
	case "publish":
		resp, err := c.PublishTemplate(ctx, pos[0], int32(*version))
		if err != nil {
			return err
		}
		if r.out.json {
			return r.out.message(resp)
		}
		return r.out.fields("alias", resp.GetTemplate().GetAlias(), "published", strconv.Itoa(int(resp.GetTemplate().GetPublishedVersion())))
	case "render":
		var d map[string]any
		if err := json.Unmarshal([]byte(*data), &d); err != nil {
			return usageErrorf("templates render: --data: want a JSON object: %v", err)
		}
		st, err := structpb.NewStruct(d)
		if err != nil {
			return usageErrorf("templates render: --data: %v", err)
		}
		resp, err := c.RenderTemplate(ctx, &v1.RenderTemplateRequest{Template: pos[0], Version: int32(*version), Data: st})
		if err != nil {
			return err
		}
		if r.out.json {
			return r.out.message(resp)
		}
		return r.out.fields("subject", resp.GetSubject(), "missing", strings.Join(resp.GetMissingVariables(), ", "),
			"unused", strings.Join(resp.GetUnusedVariables(), ", "), "html", resp.GetHtml(), "text", resp.GetText())
	case "delete":
		return c.DeleteTemplate(ctx, pos[0])
	}
	return nil
}

// templateClient is what push and pull need of the client.
type templateClient interface {
	CreateTemplate(ctx context.Context, req *v1.CreateTemplateRequest) (*v1.CreateTemplateResponse, error)
	GetTemplate(ctx context.Context, template string, version int32) (*v1.GetTemplateResponse, error)
	ListTemplates(ctx context.Context, req *v1.ListTemplatesRequest) (*v1.ListTemplatesResponse, error)
	UpdateTemplate(ctx context.Context, req *v1.UpdateTemplateRequest) (*v1.UpdateTemplateResponse, error)
	PublishTemplate(ctx context.Context, template string, version int32) (*v1.PublishTemplateResponse, error)
}

// localTemplate is one folder of a template directory.
type localTemplate struct {
	alias, name string
	content     *v1.TemplateContent
}

func readTemplateDir(dir string) ([]localTemplate, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []localTemplate
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		t, err := readTemplate(filepath.Join(dir, e.Name()), e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no template folders", dir)
	}
	// Layouts first: a template's layout must exist (and be published) when
	// the template is stored.
	isLayout := map[string]bool{}
	for _, t := range out {
		if l := t.content.GetLayout(); l != "" {
			isLayout[l] = true
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if isLayout[out[i].alias] != isLayout[out[j].alias] {
			return isLayout[out[i].alias]
		}
		return out[i].alias < out[j].alias
	})
	return out, nil
}

func readTemplate(dir, folder string) (localTemplate, error) {
	var meta templateMeta
	raw, err := os.ReadFile(filepath.Join(dir, tplMeta))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return localTemplate{}, err
	}
	if err == nil {
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&meta); err != nil {
			return localTemplate{}, fmt.Errorf("%s: %w", filepath.Join(dir, tplMeta), err)
		}
	}
	t := localTemplate{alias: folder, name: meta.Name, content: &v1.TemplateContent{Layout: meta.Layout}}
	if meta.Alias != "" {
		t.alias = meta.Alias
	}
	read := func(name string, required bool) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) && !required {
			return "", nil
		}
		return string(b), err
	}
	subject, err := read(tplSubject, true)
	if err != nil {
		return t, err
	}
	t.content.Subject = strings.TrimRight(subject, "\r\n")
	if t.content.Html, err = read(tplHTML, false); err != nil {
		return t, err
	}
	if t.content.Text, err = read(tplText, false); err != nil {
		return t, err
	}
	for _, v := range meta.Variables {
		pv := &v1.TemplateVariable{Name: v.Name, Type: v.Type, Required: v.Required, Description: v.Description}
		if v.Default != nil {
			if pv.DefaultValue, err = structpb.NewValue(v.Default); err != nil {
				return t, fmt.Errorf("%s: variable %s: default: %w", filepath.Join(dir, tplMeta), v.Name, err)
			}
		}
		t.content.Variables = append(t.content.Variables, pv)
	}
	parts, err := os.ReadDir(filepath.Join(dir, tplPartials))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return t, err
	}
	for _, p := range parts {
		if p.IsDir() || strings.HasPrefix(p.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, tplPartials, p.Name()))
		if err != nil {
			return t, err
		}
		if t.content.Partials == nil {
			t.content.Partials = map[string]string{}
		}
		t.content.Partials[strings.TrimSuffix(p.Name(), filepath.Ext(p.Name()))] = string(b)
	}
	return t, nil
}

// pushTemplates creates the templates of dir that do not exist and adds a
// version to those whose latest version differs.
func (r *runner) pushTemplates(ctx context.Context, c templateClient, dir string, publish bool) error {
	local, err := readTemplateDir(dir)
	if err != nil {
		return err
	}
	rows := [][]string{}
	for _, t := range local {
		action := "unchanged"
		var tpl *v1.Template
		cur, err := c.GetTemplate(ctx, t.alias, 0)
		switch {
		case status.Code(err) == codes.NotFound:
			resp, err := c.CreateTemplate(ctx, &v1.CreateTemplateRequest{Alias: t.alias, Name: t.name, Content: t.content})
			if err != nil {
				return fmt.Errorf("%s: %w", t.alias, err)
			}
			tpl, action = resp.GetTemplate(), "created"
		case err != nil:
			return fmt.Errorf("%s: %w", t.alias, err)
		default:
			tpl = cur.GetTemplate()
			latest := cur
			if cur.GetVersion().GetVersion() != tpl.GetLatestVersion() {
				if latest, err = c.GetTemplate(ctx, t.alias, tpl.GetLatestVersion()); err != nil {
					return fmt.Errorf("%s: %w", t.alias, err)
				}
			}
			if !sameContent(latest.GetVersion().GetContent(), t.content) || (t.name != "" && t.name != tpl.GetName()) {
				resp, err := c.UpdateTemplate(ctx, &v1.UpdateTemplateRequest{Template: t.alias, Name: t.name, Content: t.content})
				if err != nil {
					return fmt.Errorf("%s: %w", t.alias, err)
				}
				tpl, action = resp.GetTemplate(), "updated"
			}
		}
		if publish && tpl.GetPublishedVersion() != tpl.GetLatestVersion() {
			resp, err := c.PublishTemplate(ctx, t.alias, tpl.GetLatestVersion())
			if err != nil {
				return fmt.Errorf("%s: publish: %w", t.alias, err)
			}
			tpl = resp.GetTemplate()
			action += ", published"
		}
		rows = append(rows, []string{t.alias, action, strconv.Itoa(int(tpl.GetLatestVersion())), strconv.Itoa(int(tpl.GetPublishedVersion()))})
	}
	return r.out.table([]string{"ALIAS", "ACTION", "LATEST", "PUBLISHED"}, rows)
}

// sameContent compares stored content with local content: the layout the
// server names by alias, partials and variables as sets.
func sameContent(a, b *v1.TemplateContent) bool {
	norm := func(c *v1.TemplateContent) *v1.TemplateContent {
		c = proto.Clone(c).(*v1.TemplateContent)
		if len(c.Partials) == 0 {
			c.Partials = nil
		}
		return c
	}
	return proto.Equal(norm(a), norm(b))
}

// pullTemplates writes every template of the account into dir.
func (r *runner) pullTemplates(ctx context.Context, c templateClient, dir string, latest bool) error {
	var all []*v1.Template
	token := ""
	for {
		page, err := c.ListTemplates(ctx, &v1.ListTemplatesRequest{PageToken: token})
		if err != nil {
			return err
		}
		all = append(all, page.GetTemplates()...)
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	rows := [][]string{}
	for _, t := range all {
		version := int32(0)
		if latest {
			version = t.GetLatestVersion()
		}
		resp, err := c.GetTemplate(ctx, t.GetAlias(), version)
		if err != nil {
			return fmt.Errorf("%s: %w", t.GetAlias(), err)
		}
		if err := writeTemplate(filepath.Join(dir, t.GetAlias()), resp); err != nil {
			return err
		}
		rows = append(rows, []string{t.GetAlias(), strconv.Itoa(int(resp.GetVersion().GetVersion())), resp.GetVersion().GetState()})
	}
	return r.out.table([]string{"ALIAS", "VERSION", "STATE"}, rows)
}

func writeTemplate(dir string, t *v1.GetTemplateResponse) error {
	c := t.GetVersion().GetContent()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	meta := templateMeta{Name: t.GetTemplate().GetName(), Layout: c.GetLayout()}
	for _, v := range c.GetVariables() {
		tv := templateVariable{Name: v.GetName(), Type: v.GetType(), Required: v.GetRequired(), Description: v.GetDescription()}
		if v.GetDefaultValue() != nil {
			tv.Default = v.GetDefaultValue().AsInterface()
		}
		meta.Variables = append(meta.Variables, tv)
	}
	b, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	files := map[string]string{tplMeta: string(b) + "\n", tplSubject: c.GetSubject() + "\n", tplHTML: c.GetHtml(), tplText: c.GetText()}
	for name, content := range files {
		path := filepath.Join(dir, name)
		if content == "" && (name == tplHTML || name == tplText) {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			continue
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(filepath.Join(dir, tplPartials)); err != nil {
		return err
	}
	if len(c.GetPartials()) > 0 {
		if err := os.MkdirAll(filepath.Join(dir, tplPartials), 0o755); err != nil {
			return err
		}
		for name, src := range c.GetPartials() {
			if err := os.WriteFile(filepath.Join(dir, tplPartials, name+".html"), []byte(src), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}
