package mailtemplate

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/aymerick/raymond/ast"
	"github.com/aymerick/raymond/lexer"
	"github.com/aymerick/raymond/parser"
)

// analysis is what Compile learns from the parts' syntax trees.
type analysis struct {
	// expanded is each part's size with its partials expanded.
	expanded map[string]float64
	// used are the top-level names the parts and partials mention; a name
	// inside a block that changes the context (#each, #with, a section)
	// may be the element's, so it only counts against "unused".
	used map[string]bool
	// progs are the parts' syntax trees, by part name.
	progs map[string]*ast.Program
}

// builtins are raymond's helpers; a path with one of these names is a helper.
var builtins = map[string]bool{"if": true, "unless": true, "each": true, "with": true, "log": true, "lookup": true, "equal": true}

func analyze(srcs map[string]string, partials map[string]string) (*analysis, error) {
	progs := map[string]*ast.Program{}
	keys := make([]string, 0, len(srcs))
	for k := range srcs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := precheck(k, srcs[k]); err != nil {
			return nil, err
		}
		prog, err := parser.Parse(srcs[k])
		if err != nil {
			return nil, syntaxError(k, srcs[k], err)
		}
		progs[k] = prog
	}
	for _, k := range keys {
		if err := checkSupported(k, srcs[k], progs[k]); err != nil {
			return nil, err
		}
	}
	a := &analysis{expanded: map[string]float64{}, used: map[string]bool{}, progs: progs}
	w := &walker{progs: progs, srcs: srcs, a: a, state: map[string]int{}, walked: map[string]bool{}}
	for _, k := range keys {
		if _, err := w.size(k); err != nil {
			return nil, err
		}
	}
	for _, k := range keys {
		if strings.HasPrefix(k, "partials.") {
			continue // walked where they are included
		}
		w.part = k
		if err := w.walk(progs[k], true); err != nil {
			return nil, err
		}
	}
	delete(a.used, ContentSlot)
	return a, nil
}

type walker struct {
	progs map[string]*ast.Program
	srcs  map[string]string
	a     *analysis
	part  string
	// state is 1 while a partial's size is being computed, 2 when done.
	state map[string]int
	// walked are the partials walked, in the top-level context or not: a
	// partial is walked once per context however often it is included.
	walked map[string]bool
}

// partialRefs counts the partials a program includes, with how many times.
func partialRefs(part, src string, n ast.Node, progs map[string]*ast.Program, out map[string]int) error {
	var err error
	visit(n, func(n ast.Node) {
		p, ok := n.(*ast.PartialStatement)
		if !ok || err != nil {
			return
		}
		name, ok := ast.HelperNameStr(p.Name)
		if !ok {
			err = &SyntaxError{Part: part, Line: p.Line, Column: column(src, p.Pos), Reason: "a partial's name must be a name, not an expression"}
			return
		}
		if _, ok := progs["partials."+name]; !ok {
			err = &SyntaxError{Part: part, Line: p.Line, Column: column(src, p.Pos), Reason: "no partial named " + strconv.Quote(name)}
			return
		}
		out[name]++
	})
	return err
}

func (w *walker) size(k string) (float64, error) {
	if w.state[k] == 2 {
		return w.a.expanded[k], nil
	}
	if w.state[k] == 1 {
		return 0, &SyntaxError{Part: k, Reason: "partials include each other in a cycle"}
	}
	w.state[k] = 1
	refs := map[string]int{}
	if err := partialRefs(k, w.srcs[k], w.progs[k], w.progs, refs); err != nil {
		return 0, err
	}
	total := float64(len(w.srcs[k]))
	for name, times := range refs {
		s, err := w.size("partials." + name)
		if err != nil {
			return 0, err
		}
		total += float64(times) * s
	}
	w.state[k] = 2
	w.a.expanded[k] = total
	return total, nil
}

// walk records the names n mentions; top is whether n is evaluated in the
// data's top-level context.
func (w *walker) walk(n ast.Node, top bool) error {
	switch n := n.(type) {
	case nil:
	case *ast.Program:
		if n == nil {
			return nil
		}
		for _, s := range n.Body {
			if err := w.walk(s, top); err != nil {
				return err
			}
		}
	case *ast.MustacheStatement:
		return w.expr(n.Expression, top)
	case *ast.BlockStatement:
		name, _ := ast.HelperNameStr(n.Expression.Path)
		if err := w.expr(n.Expression, top); err != nil {
			return err
		}
		inner := top
		if name != "if" && name != "unless" {
			inner = false
		}
		if err := w.walk(n.Program, inner); err != nil {
			return err
		}
		return w.walk(n.Inverse, top)
	case *ast.PartialStatement:
		name, _ := ast.HelperNameStr(n.Name)
		for _, p := range n.Params {
			if err := w.walk(p, top); err != nil {
				return err
			}
		}
		if n.Hash != nil {
			for _, p := range n.Hash.Pairs {
				if err := w.walk(p.Val, top); err != nil {
					return err
				}
			}
		}
		if len(n.Params) > 0 {
			top = false // a partial with a context argument
		}
		// Cycles are refused by size before walk runs.
		key := fmt.Sprint(name, top)
		if w.walked[key] {
			return nil
		}
		w.walked[key] = true
		return w.walk(w.progs["partials."+name], top)
	case *ast.Expression:
		return w.expr(n, top)
	case *ast.SubExpression:
		return w.expr(n.Expression, top)
	case *ast.PathExpression:
		w.path(n, top)
	}
	return nil
}

func (w *walker) expr(e *ast.Expression, top bool) error {
	if e == nil {
		return nil
	}
	helper := len(e.Params) > 0 || e.Hash != nil
	if p, ok := e.Path.(*ast.PathExpression); ok {
		if !(helper || builtins[p.Original]) {
			w.path(p, top)
		}
	}
	for _, p := range e.Params {
		if err := w.walk(p, top); err != nil {
			return err
		}
	}
	if e.Hash != nil {
		for _, p := range e.Hash.Pairs {
			if err := w.walk(p.Val, top); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *walker) path(p *ast.PathExpression, top bool) {
	if p.Data || p.Depth > 0 || len(p.Parts) == 0 || p.Parts[0] == "this" {
		return
	}
	name := strings.Trim(p.Parts[0], "[]")
	if top {
		w.a.used[name] = true
	} else if _, ok := w.a.used[name]; !ok {
		// false: mentioned, not known to be top-level.
		w.a.used[name] = false
	}
}

// visit calls f on n and every node under it, without following partials.
func visit(n ast.Node, f func(ast.Node)) {
	if n == nil {
		return
	}
	f(n)
	switch n := n.(type) {
	case *ast.Program:
		if n == nil {
			return
		}
		for _, s := range n.Body {
			visit(s, f)
		}
	case *ast.MustacheStatement:
		visit(n.Expression, f)
	case *ast.BlockStatement:
		visit(n.Expression, f)
		if n.Program != nil {
			visit(n.Program, f)
		}
		if n.Inverse != nil {
			visit(n.Inverse, f)
		}
	case *ast.PartialStatement:
		for _, p := range n.Params {
			visit(p, f)
		}
	case *ast.Expression:
		if n == nil {
			return
		}
		visit(n.Path, f)
		for _, p := range n.Params {
			visit(p, f)
		}
		if n.Hash != nil {
			for _, p := range n.Hash.Pairs {
				visit(p.Val, f)
			}
		}
	case *ast.SubExpression:
		visit(n.Expression, f)
	}
}

var (
	parseLineRE = regexp.MustCompile(`(?s)^Parse error on line (\d+):\s*(.*)$`)
	tokenRE     = regexp.MustCompile(`Token: (.*)$`)
)

// syntaxError is raymond's parse error of src as a SyntaxError with a line
// and a column: the column of the token the error names on that line, or of
// the line's first "{{".
func syntaxError(part, src string, err error) *SyntaxError {
	msg := err.Error()
	m := parseLineRE.FindStringSubmatch(msg)
	if m == nil {
		return &SyntaxError{Part: part, Reason: msg}
	}
	line, _ := strconv.Atoi(m[1])
	reason := strings.Join(strings.Fields(m[2]), " ")
	col := 0
	if t := tokenRE.FindStringSubmatch(m[2]); t != nil {
		for _, tok := range lexer.Collect(src) {
			if tok.Line == line && tok.String() == t[1] {
				col = column(src, tok.Pos)
				break
			}
			if tok.Kind == lexer.TokenError && tok.Line == line {
				col = column(src, tok.Pos)
				break
			}
		}
	}
	if col == 0 {
		start := lineStart(src, line)
		if i := strings.Index(src[start:], "{{"); i >= 0 && !strings.Contains(src[start:start+i], "\n") {
			col = i + 1
		} else {
			col = 1
		}
	}
	return &SyntaxError{Part: part, Line: line, Column: col, Reason: reason}
}

func lineStart(src string, line int) int {
	pos := 0
	for l := 1; l < line; l++ {
		i := strings.IndexByte(src[pos:], '\n')
		if i < 0 {
			return pos
		}
		pos += i + 1
	}
	return pos
}

func column(src string, pos int) int {
	if pos > len(src) {
		pos = len(src)
	}
	return pos - (strings.LastIndexByte(src[:pos], '\n') + 1) + 1
}
