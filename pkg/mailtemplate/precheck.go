package mailtemplate

import (
	"fmt"
	"strings"

	"github.com/aymerick/raymond/lexer"
)

// precheck finds, from src's tokens alone, the syntax errors raymond's
// parser would find before the end of the input. That parser reads its
// tokens from a lexer goroutine, and when it fails before the end, that
// goroutine waits forever to hand over the next token (a leak a live
// preview would hit at every keystroke). lexer.Collect reads every token,
// and the lexer stops at its own errors, so checking the tokens first leaks
// nothing. The check is the subset's grammar: mustaches hold a path, a
// literal or a lookup's arguments; blocks close in order and with their own
// name, with at most one {{else}}. What it lets through the parser may
// still refuse (at its end, which leaks nothing).
func precheck(part, src string) error {
	toks := lexer.Collect(src)
	fail := func(t lexer.Token, format string, args ...any) error {
		return &SyntaxError{Part: part, Line: t.Line, Column: column(src, t.Pos), Reason: fmt.Sprintf(format, args...)}
	}
	var stack []openBlock
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch t.Kind {
		case lexer.TokenError:
			return fail(t, "%s", t.Val)
		case lexer.TokenEOF:
			if len(stack) > 0 {
				o := stack[len(stack)-1]
				return fail(o.tok, "{{#%s}} is never closed", o.name)
			}
			return nil
		case lexer.TokenContent, lexer.TokenComment:
			continue
		case lexer.TokenOpenRawBlock, lexer.TokenOpenEndRawBlock, lexer.TokenOpenBlockParams:
			return fail(t, "raw blocks are not supported")
		case lexer.TokenInverse: // {{else}} or {{^}}, one token
			if err := elseOf(stack); err != "" {
				return fail(t, "%s", err)
			}
			stack[len(stack)-1].elses++
			continue
		}
		// A mustache: its tokens up to the close.
		j := i + 1
		for j < len(toks) && toks[j].Kind != lexer.TokenClose && toks[j].Kind != lexer.TokenCloseUnescaped &&
			toks[j].Kind != lexer.TokenEOF && toks[j].Kind != lexer.TokenError {
			j++
		}
		if j == len(toks) || toks[j].Kind == lexer.TokenEOF {
			return fail(t, "a mustache is never closed")
		}
		if toks[j].Kind == lexer.TokenError {
			return fail(toks[j], "%s", toks[j].Val)
		}
		if (t.Kind == lexer.TokenOpenUnescaped) != (toks[j].Kind == lexer.TokenCloseUnescaped) {
			return fail(t, "{{{ must close with }}}, {{ with }}")
		}
		inner := toks[i+1 : j]
		switch t.Kind {
		case lexer.TokenOpen, lexer.TokenOpenUnescaped:
			if err := checkExpr(inner); err != "" {
				return fail(t, "%s", err)
			}
		case lexer.TokenOpenPartial:
			if len(inner) == 0 || inner[0].Kind != lexer.TokenID {
				return fail(t, "a partial needs a name")
			}
			if len(inner) > 1 {
				if err := checkExpr(inner[1:]); err != "" {
					return fail(t, "%s", err)
				}
			}
		case lexer.TokenOpenBlock, lexer.TokenOpenInverse:
			if len(inner) == 0 && t.Kind == lexer.TokenOpenInverse { // {{^}}: an else
				if err := elseOf(stack); err != "" {
					return fail(t, "%s", err)
				}
				stack[len(stack)-1].elses++
				break
			}
			if len(inner) == 0 || inner[0].Kind != lexer.TokenID {
				return fail(t, "a block needs a name")
			}
			if err := checkExpr(inner); err != "" {
				return fail(t, "%s", err)
			}
			stack = append(stack, openBlock{name: inner[0].Val, tok: t})
		case lexer.TokenOpenInverseChain:
			if err := elseOf(stack); err != "" {
				return fail(t, "%s", err)
			}
			if t.Kind == lexer.TokenOpenInverseChain && len(inner) > 0 {
				return fail(t, "{{else if …}} chains are not supported: nest the block")
			}
			stack[len(stack)-1].elses++
		case lexer.TokenOpenEndBlock:
			name := path(inner)
			if name == "" {
				return fail(t, "{{/…}} needs the block's name")
			}
			if len(stack) == 0 {
				return fail(t, "{{/%s}} closes no block", name)
			}
			o := stack[len(stack)-1]
			if o.name != name {
				return fail(t, "{{/%s}} closes {{#%s}} (line %d)", name, o.name, o.tok.Line)
			}
			stack = stack[:len(stack)-1]
		default:
			return fail(t, "unexpected %s", t)
		}
		i = j
	}
	return nil
}

type openBlock struct {
	name  string
	tok   lexer.Token
	elses int
}

// elseOf checks an {{else}} against the open blocks.
func elseOf(stack []openBlock) string {
	if len(stack) == 0 {
		return "{{else}} outside a block"
	}
	if o := stack[len(stack)-1]; o.elses > 0 {
		return fmt.Sprintf("a second {{else}} in {{#%s}} (line %d)", o.name, o.tok.Line)
	}
	return ""
}

// path is the dotted path tokens make ("" when they are something else).
func path(toks []lexer.Token) string {
	var b strings.Builder
	for i, t := range toks {
		switch {
		case i%2 == 0 && t.Kind == lexer.TokenID:
			b.WriteString(t.Val)
		case i%2 == 1 && t.Kind == lexer.TokenSep:
			b.WriteString(t.Val)
		default:
			return ""
		}
	}
	if len(toks)%2 == 0 {
		return ""
	}
	return b.String()
}

// checkExpr checks the tokens of a mustache's expression: operands (paths,
// @data paths, literals) separated by nothing, with no hash, subexpression
// or block parameters (which the subset refuses anyway); "" when fine.
func checkExpr(toks []lexer.Token) string {
	if len(toks) == 0 {
		return "an empty mustache"
	}
	i := 0
	for i < len(toks) {
		t := toks[i]
		switch t.Kind {
		case lexer.TokenString, lexer.TokenNumber, lexer.TokenBoolean:
			i++
			continue
		case lexer.TokenData:
			i++
			if i == len(toks) || toks[i].Kind != lexer.TokenID {
				return "@ needs a name"
			}
		case lexer.TokenID:
		case lexer.TokenEquals:
			return "hash arguments (name=value) are not supported"
		case lexer.TokenOpenSexpr, lexer.TokenCloseSexpr:
			return "subexpressions are not supported"
		default:
			return fmt.Sprintf("unexpected %s", t)
		}
		// A path: ID (Sep ID)*
		i++
		for i+1 < len(toks) && toks[i].Kind == lexer.TokenSep {
			if toks[i+1].Kind != lexer.TokenID {
				return "a path part is missing after " + toks[i].Val
			}
			i += 2
		}
		if i < len(toks) && toks[i].Kind == lexer.TokenSep {
			return "a path ends with " + toks[i].Val
		}
		if i < len(toks) && toks[i].Kind == lexer.TokenEquals {
			return "hash arguments (name=value) are not supported"
		}
	}
	return ""
}
