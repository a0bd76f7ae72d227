package mailtemplate

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aymerick/raymond"
	"github.com/aymerick/raymond/ast"
)

// The evaluator renders the syntax trees raymond's parser builds (so the
// syntax, whitespace control and standalone-line rules are raymond's), for
// the logic-less subset templates use: {{path}}, {{{path}}}, {{lookup a b}},
// the #if, #unless, #each and #with blocks with {{else}}, Mustache sections
// ({{#list}}…{{/list}}, {{^x}}…{{/x}}), partials with an optional context
// argument, ../ paths, this, @index, @first, @last, @key and @root. Values
// are printed and tested as raymond does (raymond.Str, raymond.IsTrue) and
// HTML is escaped with raymond.Escape; paths resolve as in raymond (a name
// not found in the current context is looked up in the enclosing ones).
// Other helpers, hash arguments, subexpressions and block parameters are
// refused at compile time (checkSupported).
//
// It writes into one buffer whose size is checked at every write against
// the output limit, and checks the deadline at every iteration: a template
// that repeats itself over the data (nested loops, sections) stops at the
// limit, and no render can run longer than the time bound by much.
//
// It exists because raymond's reflection-based evaluator cost a templated
// send twice the CPU of a plain one (BenchmarkSendBatchTemplate) and does not
// bound Mustache-style sections over lists.

type evaluator struct {
	escape   bool
	partials map[string]*ast.Program
	out      strings.Builder
	limit    int
	part     string
	ctx      context.Context
	deadline time.Time
	steps    int
	// stack is the context stack, the current context last.
	stack []any
	// frames are the iteration frames (@index…), the innermost last.
	frames []iterFrame
}

type iterFrame struct {
	index       int
	first, last bool
	key         any
}

// renderError is a panic value the evaluator stops with.
type renderError struct{ err error }

func (e *evaluator) write(s string) {
	if e.out.Len()+len(s) > e.limit {
		panic(renderError{&LimitError{Part: e.part, Reason: fmt.Sprintf("the rendered output is over the limit of %d bytes", e.limit)}})
	}
	e.out.WriteString(s)
}

func (e *evaluator) step() {
	e.steps++
	if e.steps&63 != 0 {
		return
	}
	if !e.deadline.IsZero() && time.Now().After(e.deadline) {
		panic(renderError{ErrTimeout})
	}
	if err := e.ctx.Err(); err != nil {
		panic(renderError{fmt.Errorf("render: %w", err)})
	}
}

func (e *evaluator) run(prog *ast.Program, data any) (out string, err error) {
	defer func() {
		if r := recover(); r != nil {
			re, ok := r.(renderError)
			if !ok {
				panic(r)
			}
			err = re.err
		}
	}()
	e.stack = append(e.stack[:0], data)
	e.program(prog)
	return e.out.String(), nil
}

func (e *evaluator) program(p *ast.Program) {
	if p == nil {
		return
	}
	for _, n := range p.Body {
		switch n := n.(type) {
		case *ast.ContentStatement:
			e.write(n.Value)
		case *ast.CommentStatement:
		case *ast.MustacheStatement:
			v := e.expr(n.Expression)
			s := str(v)
			if e.escape && !n.Unescaped {
				if _, safe := v.(raymond.SafeString); !safe {
					s = raymond.Escape(s)
				}
			}
			e.write(s)
		case *ast.BlockStatement:
			e.block(n)
		case *ast.PartialStatement:
			e.partial(n)
		}
	}
}

// str is v printed as raymond prints it.
func str(v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return t
	case raymond.SafeString:
		return string(t)
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64)
	case bool:
		if t {
			return "true"
		}
		return "false"
	}
	return raymond.Str(v)
}

func truthy(v any) bool {
	switch t := v.(type) {
	case nil:
		return false
	case string:
		return t != ""
	case bool:
		return t
	case float64:
		return t != 0
	case []any:
		return len(t) > 0
	case map[string]any:
		return len(t) > 0
	}
	return raymond.IsTrue(v)
}

func (e *evaluator) expr(x *ast.Expression) any {
	if name, ok := x.Path.(*ast.PathExpression); ok && name.Original == "lookup" && len(x.Params) == 2 {
		obj, key := e.value(x.Params[0]), e.value(x.Params[1])
		return field(obj, str(key))
	}
	return e.value(x.Path)
}

// value is a path's or a literal's value.
func (e *evaluator) value(n ast.Node) any {
	switch n := n.(type) {
	case *ast.PathExpression:
		return e.path(n)
	case *ast.StringLiteral:
		return n.Value
	case *ast.NumberLiteral:
		return n.Value
	case *ast.BooleanLiteral:
		return n.Value
	case *ast.Expression:
		return e.expr(n)
	}
	return nil
}

func (e *evaluator) path(p *ast.PathExpression) any {
	if p.Data {
		if len(p.Parts) > 0 && p.Parts[0] == "root" {
			v, _ := resolve(e.stack[0], p.Parts[1:])
			return v
		}
		i := len(e.frames) - 1 - p.Depth
		if i < 0 || len(p.Parts) != 1 {
			return nil
		}
		f := e.frames[i]
		switch p.Parts[0] {
		case "index":
			return f.index
		case "first":
			return f.first
		case "last":
			return f.last
		case "key":
			return f.key
		}
		return nil
	}
	// As raymond: from the context at the path's depth outwards, until one
	// resolves the path's first part.
	for d := len(e.stack) - 1 - p.Depth; d >= 0; d-- {
		v, first := resolve(e.stack[d], p.Parts)
		if first || v != nil {
			return v
		}
	}
	return nil
}

// resolve is parts looked up from ctx; first is whether the first part was
// found (raymond then does not look in the enclosing contexts).
func resolve(ctx any, parts []string) (v any, first bool) {
	v = ctx
	for _, part := range parts {
		if len(part) >= 2 && part[0] == '[' && part[len(part)-1] == ']' {
			part = part[1 : len(part)-1]
		}
		next := field(v, part)
		if next == nil {
			return nil, first
		}
		v, first = next, true
	}
	return v, true
}

func field(v any, name string) any {
	switch t := v.(type) {
	case map[string]any:
		return t[name]
	case []any:
		if i, err := strconv.Atoi(name); err == nil && i >= 0 && i < len(t) {
			return t[i]
		}
	}
	return nil
}

func (e *evaluator) block(b *ast.BlockStatement) {
	name := ""
	if p, ok := b.Expression.Path.(*ast.PathExpression); ok {
		name = p.Original
	}
	var arg any
	if len(b.Expression.Params) == 1 {
		arg = e.value(b.Expression.Params[0])
	}
	switch {
	case name == "if" && len(b.Expression.Params) == 1:
		if truthy(arg) {
			e.program(b.Program)
		} else {
			e.program(b.Inverse)
		}
	case name == "unless" && len(b.Expression.Params) == 1:
		if !truthy(arg) {
			e.program(b.Program)
		} else {
			e.program(b.Inverse)
		}
	case name == "with" && len(b.Expression.Params) == 1:
		if truthy(arg) {
			e.with(b.Program, arg)
		} else {
			e.program(b.Inverse)
		}
	case name == "each" && len(b.Expression.Params) == 1:
		if !e.each(b.Program, arg) {
			e.program(b.Inverse)
		}
	default: // a section
		v := e.value(b.Expression.Path)
		if !truthy(v) {
			e.program(b.Inverse)
			return
		}
		if l, ok := v.([]any); ok {
			e.each(b.Program, l)
			return
		}
		e.with(b.Program, v)
	}
}

func (e *evaluator) with(p *ast.Program, ctx any) {
	e.stack = append(e.stack, ctx)
	e.program(p)
	e.stack = e.stack[:len(e.stack)-1]
}

// each runs p for each element of a list or (in key order) each value of an
// object; false when there was none.
func (e *evaluator) each(p *ast.Program, v any) bool {
	iter := func(n, i int, key, ctx any) {
		e.step()
		e.frames = append(e.frames, iterFrame{index: i, first: i == 0, last: i == n-1, key: key})
		e.stack = append(e.stack, ctx)
		e.program(p)
		e.stack = e.stack[:len(e.stack)-1]
		e.frames = e.frames[:len(e.frames)-1]
	}
	switch t := v.(type) {
	case []any:
		for i, x := range t {
			iter(len(t), i, nil, x)
		}
		return len(t) > 0
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			iter(len(keys), i, k, t[k])
		}
		return len(keys) > 0
	}
	return false
}

func (e *evaluator) partial(n *ast.PartialStatement) {
	name, _ := ast.HelperNameStr(n.Name)
	p := e.partials[name]
	if p == nil {
		panic(renderError{&SyntaxError{Part: e.part, Line: n.Line, Reason: "no partial named " + strconv.Quote(name)}})
	}
	if n.Indent == "" {
		if len(n.Params) == 1 {
			e.with(p, e.value(n.Params[0]))
		} else {
			e.program(p)
		}
		return
	}
	// An indented standalone partial: every line of its output indented,
	// as raymond does.
	outer := e.out
	e.out = strings.Builder{}
	if len(n.Params) == 1 {
		e.with(p, e.value(n.Params[0]))
	} else {
		e.program(p)
	}
	inner := e.out.String()
	e.out = outer
	lines := strings.Split(inner, "\n")
	for i, line := range lines {
		if i == len(lines)-1 && line == "" {
			continue
		}
		if i > 0 {
			e.write("\n")
		}
		e.write(n.Indent + line)
	}
	if strings.HasSuffix(inner, "\n") {
		e.write("\n")
	}
}

// checkSupported refuses what the evaluator does not render.
func checkSupported(part, src string, prog *ast.Program) error {
	var err error
	fail := func(n ast.Node, what string) {
		if err == nil {
			loc := n.Location()
			err = &SyntaxError{Part: part, Line: loc.Line, Column: column(src, loc.Pos), Reason: what + " is not supported (templates are logic-less: {{name}}, {{{name}}}, {{lookup a b}}, #if, #unless, #each, #with, sections, partials)"}
		}
	}
	visit(prog, func(n ast.Node) {
		switch n := n.(type) {
		case *ast.Program:
			if n != nil && len(n.BlockParams) > 0 {
				fail(n, "a block parameter (as |x|)")
			}
		case *ast.SubExpression:
			fail(n, "a subexpression")
		case *ast.MustacheStatement:
			x := n.Expression
			name, _ := x.Path.(*ast.PathExpression)
			switch {
			case x.Hash != nil:
				fail(n, "a hash argument")
			case len(x.Params) > 0 && (name == nil || name.Original != "lookup" || len(x.Params) != 2):
				fail(n, "a helper call")
			}
		case *ast.BlockStatement:
			x := n.Expression
			name := ""
			if p, ok := x.Path.(*ast.PathExpression); ok {
				name = p.Original
			} else {
				fail(n, "a block on a literal")
				return
			}
			switch {
			case x.Hash != nil:
				fail(n, "a hash argument")
			case name == "if" || name == "unless" || name == "each" || name == "with":
				if len(x.Params) != 1 {
					fail(n, "#"+name+" without exactly one argument")
				}
			case len(x.Params) > 0:
				fail(n, "a block helper #"+name)
			}
		case *ast.PartialStatement:
			if n.Hash != nil {
				fail(n, "a partial's hash argument")
			}
			if len(n.Params) > 1 {
				fail(n, "a partial with more than one argument")
			}
		}
	})
	return err
}
