// Package mailtemplate renders email templates: a subject, an HTML part and a
// text part written in Handlebars (a superset of Mustache, the syntax of SES
// and Postmark templates), with declared variables, a layout wrapping the
// template's content and partials.
//
// Templates are parsed by github.com/aymerick/raymond's parser and rendered
// by this package's evaluator (eval.go) with raymond's printing, truth and
// escaping rules, for the logic-less subset of Handlebars (tested to render
// as raymond does). Values are HTML-escaped in the HTML part ({{name}};
// {{{name}}} is verbatim) and verbatim in the subject and the text part. A template is compiled once (Compile: parsed,
// its partials checked for cycles and its size after partial expansion
// bounded) and rendered many times; a render is bounded in output and time,
// so a hostile template can neither loop nor blow up memory.
package mailtemplate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/aymerick/raymond"
	"github.com/aymerick/raymond/ast"
)

// VarType is a declared variable's type.
type VarType string

// The variable types.
const (
	TypeString  VarType = "string"
	TypeNumber  VarType = "number"
	TypeBoolean VarType = "boolean"
	TypeList    VarType = "list"
	TypeObject  VarType = "object"
)

// Variable is a declared template variable.
type Variable struct {
	Name     string  `json:"name"`
	Type     VarType `json:"type,omitempty"`
	Required bool    `json:"required,omitempty"`
	// Default is used when the data has no value for the variable.
	Default     any    `json:"default,omitempty"`
	Description string `json:"description,omitempty"`
}

// Template is the source of a template.
type Template struct {
	Subject   string
	HTML      string
	Text      string
	Variables []Variable
	// Layout wraps the template's HTML and text: its parts hold a
	// {{{content}}} slot where the template's rendered part goes.
	Layout *Layout
	// Partials are the templates {{> name}} includes, by name.
	Partials map[string]string
}

// Layout is a template wrapping another's content in its {{{content}}} slot.
type Layout struct {
	HTML string
	Text string
}

// ContentSlot is the variable a layout's parts place the content with.
const ContentSlot = "content"

// Limits bound a template and its renders.
type Limits struct {
	// MaxSourceBytes bounds each part, layout part and partial.
	MaxSourceBytes int
	// MaxExpandedBytes bounds a part's source with its partials expanded
	// (a partial included n times counts n times).
	MaxExpandedBytes int
	// MaxOutputBytes bounds each rendered part.
	MaxOutputBytes int
	// Timeout bounds a render.
	Timeout time.Duration
}

// DefaultLimits are the limits the API applies.
var DefaultLimits = Limits{
	MaxSourceBytes:   256 << 10,
	MaxExpandedBytes: 1 << 20,
	MaxOutputBytes:   2 << 20,
	Timeout:          2 * time.Second,
}

// Result is a rendered template.
type Result struct {
	Subject string
	HTML    string
	Text    string
	// Missing are the variables the template uses or requires that the data
	// (with the defaults) has no value for; Unused the data's top-level
	// names the template neither declares nor uses. Both sorted.
	Missing []string
	Unused  []string
}

// SyntaxError is a template that does not parse, or that includes a partial
// it does not have.
type SyntaxError struct {
	// Part is "subject", "html", "text", "layout.html", "layout.text" or
	// "partials.<name>".
	Part   string
	Line   int
	Column int
	Reason string
}

func (e *SyntaxError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s: line %d, column %d: %s", e.Part, e.Line, e.Column, e.Reason)
	}
	return e.Part + ": " + e.Reason
}

// LimitError is a template or a render over one of the Limits.
type LimitError struct {
	Part   string
	Reason string
}

func (e *LimitError) Error() string { return e.Part + ": " + e.Reason }

// MissingError is a render without a value for required variables.
type MissingError struct{ Names []string }

func (e *MissingError) Error() string {
	return "missing required variables: " + strings.Join(e.Names, ", ")
}

// TypeError is a value of the wrong type for a declared variable.
type TypeError struct {
	Name string
	Want VarType
}

func (e *TypeError) Error() string {
	return fmt.Sprintf("variable %s: want a %s", e.Name, e.Want)
}

// ErrTimeout is a render that took longer than Limits.Timeout.
var ErrTimeout = errors.New("template render took too long")

// Compiled is a parsed and checked template, safe for concurrent renders.
type Compiled struct {
	lim       Limits
	vars      []Variable
	subject   *part
	html      *part
	text      *part // nil: generated from the HTML
	layHTML   *part
	layText   *part
	used      map[string]bool // names the parts mention: true if at the top level
	usedOrder []string
}

type part struct {
	name     string
	prog     *ast.Program
	partials map[string]*ast.Program
}

// Compile parses and checks t.
func Compile(t Template, lim Limits) (*Compiled, error) {
	if err := checkVariables(t.Variables); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(t.Partials))
	for n := range t.Partials {
		names = append(names, n)
	}
	sort.Strings(names)
	srcs := map[string]string{}
	for _, n := range names {
		srcs["partials."+n] = t.Partials[n]
	}
	srcs["subject"] = t.Subject
	srcs["html"] = t.HTML
	srcs["text"] = t.Text
	if t.Layout != nil {
		srcs["layout.html"] = t.Layout.HTML
		srcs["layout.text"] = t.Layout.Text
	}
	for p, s := range srcs {
		if lim.MaxSourceBytes > 0 && len(s) > lim.MaxSourceBytes {
			return nil, &LimitError{Part: p, Reason: fmt.Sprintf("%d bytes, more than the limit of %d", len(s), lim.MaxSourceBytes)}
		}
	}
	an, err := analyze(srcs, t.Partials)
	if err != nil {
		return nil, err
	}
	for p, size := range an.expanded {
		if lim.MaxExpandedBytes > 0 && size > float64(lim.MaxExpandedBytes) {
			return nil, &LimitError{Part: p, Reason: fmt.Sprintf("more than %d bytes with its partials expanded", lim.MaxExpandedBytes)}
		}
	}
	c := &Compiled{lim: lim, vars: t.Variables, used: an.used}
	for n, top := range an.used {
		if !top {
			continue
		}
		c.usedOrder = append(c.usedOrder, n)
	}
	sort.Strings(c.usedOrder)
	partials := make(map[string]*ast.Program, len(t.Partials))
	for _, n := range names {
		partials[n] = an.progs["partials."+n]
	}
	mk := func(name, _ string) (*part, error) {
		return &part{name: name, prog: an.progs[name], partials: partials}, nil
	}
	if c.subject, err = mk("subject", t.Subject); err != nil {
		return nil, err
	}
	if c.html, err = mk("html", t.HTML); err != nil {
		return nil, err
	}
	if strings.TrimSpace(t.Text) != "" {
		if c.text, err = mk("text", t.Text); err != nil {
			return nil, err
		}
	}
	if t.Layout != nil {
		if strings.TrimSpace(t.Layout.HTML) != "" {
			if c.layHTML, err = mk("layout.html", t.Layout.HTML); err != nil {
				return nil, err
			}
		}
		if strings.TrimSpace(t.Layout.Text) != "" {
			if c.layText, err = mk("layout.text", t.Layout.Text); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

func checkVariables(vars []Variable) error {
	seen := map[string]bool{}
	for i, v := range vars {
		field := fmt.Sprintf("variables[%d]", i)
		if v.Name == "" || strings.ContainsAny(v.Name, " .{}/\\\"'") {
			return &SyntaxError{Part: field + ".name", Reason: fmt.Sprintf("%q is not a variable name", v.Name)}
		}
		if v.Name == ContentSlot {
			return &SyntaxError{Part: field + ".name", Reason: "content is the layout's slot"}
		}
		if seen[v.Name] {
			return &SyntaxError{Part: field + ".name", Reason: v.Name + " is declared twice"}
		}
		seen[v.Name] = true
		switch v.Type {
		case "", TypeString, TypeNumber, TypeBoolean, TypeList, TypeObject:
		default:
			return &SyntaxError{Part: field + ".type", Reason: fmt.Sprintf("%q is not one of string, number, boolean, list, object", v.Type)}
		}
		if v.Default != nil && !hasType(v.Default, v.Type) {
			return &SyntaxError{Part: field + ".default", Reason: fmt.Sprintf("not a %s", v.Type)}
		}
	}
	return nil
}

// hasType reports whether a JSON-decoded value is of type t.
func hasType(v any, t VarType) bool {
	switch t {
	case "":
		return true
	case TypeString:
		_, ok := v.(string)
		return ok
	case TypeNumber:
		switch v.(type) {
		case float64, float32, int, int64, int32, uint, uint64, uint32:
			return true
		}
		return false
	case TypeBoolean:
		_, ok := v.(bool)
		return ok
	case TypeList:
		_, ok := v.([]any)
		return ok
	case TypeObject:
		_, ok := v.(map[string]any)
		return ok
	}
	return false
}

// Render renders c with data (JSON-like values: string, float64, bool,
// []any, map[string]any). A required variable without a value is a
// *MissingError; a value of the wrong type a *TypeError.
func (c *Compiled) Render(ctx context.Context, data map[string]any) (Result, error) {
	return c.run(ctx, data, true)
}

// Preview is Render for a preview: required variables without a value are
// listed in Result.Missing instead of failing the render.
func (c *Compiled) Preview(ctx context.Context, data map[string]any) (Result, error) {
	return c.run(ctx, data, false)
}

func (c *Compiled) run(ctx context.Context, data map[string]any, strict bool) (Result, error) {
	var res Result
	full := make(map[string]any, len(data)+len(c.vars))
	for k, v := range data {
		full[k] = v
	}
	declared := map[string]bool{}
	var missingRequired []string
	for _, v := range c.vars {
		declared[v.Name] = true
		val, ok := full[v.Name]
		if !ok || val == nil {
			if v.Default != nil {
				full[v.Name] = v.Default
				continue
			}
			if v.Required {
				missingRequired = append(missingRequired, v.Name)
			}
			continue
		}
		if !hasType(val, v.Type) {
			return res, &TypeError{Name: v.Name, Want: v.Type}
		}
	}
	sort.Strings(missingRequired)
	if strict && len(missingRequired) > 0 {
		return res, &MissingError{Names: missingRequired}
	}
	for _, n := range c.usedOrder {
		if v, ok := full[n]; !ok || v == nil {
			res.Missing = append(res.Missing, n)
		}
	}
	for _, n := range missingRequired {
		if !c.used[n] {
			res.Missing = append(res.Missing, n)
		}
	}
	sort.Strings(res.Missing)
	for k := range data {
		if _, mentioned := c.used[k]; !declared[k] && !mentioned {
			res.Unused = append(res.Unused, k)
		}
	}
	sort.Strings(res.Unused)
	delete(full, ContentSlot)

	if err := ctx.Err(); err != nil {
		return res, err
	}
	var deadline time.Time
	if c.lim.Timeout > 0 {
		deadline = time.Now().Add(c.lim.Timeout)
	}
	// A render runs on the caller's goroutine: a template cannot loop (no
	// recursion: partial cycles are refused), its size with its partials
	// expanded is bounded, every write is checked against the output limit
	// and every iteration watches ctx and the deadline.
	out, err := c.render(ctx, deadline, full)
	if err != nil {
		return res, err
	}
	out.Missing, out.Unused = res.Missing, res.Unused
	return out, nil
}

func (c *Compiled) render(ctx context.Context, deadline time.Time, data map[string]any) (Result, error) {
	var res Result
	var err error
	if res.Subject, err = c.exec(ctx, deadline, c.subject, data, false); err != nil {
		return res, err
	}
	res.Subject = strings.Join(strings.Fields(res.Subject), " ")
	if res.HTML, err = c.exec(ctx, deadline, c.html, data, true); err != nil {
		return res, err
	}
	if c.layHTML != nil && strings.TrimSpace(res.HTML) != "" {
		if res.HTML, err = c.exec(ctx, deadline, c.layHTML, withContent(data, res.HTML), true); err != nil {
			return res, err
		}
	}
	if c.text != nil {
		if res.Text, err = c.exec(ctx, deadline, c.text, data, false); err != nil {
			return res, err
		}
		if c.layText != nil {
			if res.Text, err = c.exec(ctx, deadline, c.layText, withContent(data, res.Text), false); err != nil {
				return res, err
			}
		}
	} else if res.HTML != "" {
		res.Text = HTMLToText(res.HTML)
	}
	return res, nil
}

func withContent(data map[string]any, content string) map[string]any {
	m := make(map[string]any, len(data)+1)
	for k, v := range data {
		m[k] = v
	}
	m[ContentSlot] = raymond.SafeString(content)
	return m
}

func (c *Compiled) exec(ctx context.Context, deadline time.Time, p *part, data map[string]any, escape bool) (string, error) {
	limit := c.lim.MaxOutputBytes
	if limit <= 0 {
		limit = math.MaxInt
	}
	e := &evaluator{escape: escape, partials: p.partials, limit: limit, part: p.name, ctx: ctx, deadline: deadline}
	return e.run(p.prog, data)
}
