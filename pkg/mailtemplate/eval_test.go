package mailtemplate_test

import (
	"context"
	"testing"
	"time"

	"github.com/aymerick/raymond"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/mailtemplate"
)

// TestSameAsRaymond renders templates of the supported subset with the
// package's evaluator and with raymond's own, and wants the same HTML.
func TestSameAsRaymond(t *testing.T) {
	data := map[string]any{
		"name": `Ann <b>&"'`, "n": float64(3), "pi": 3.25, "zero": float64(0), "yes": true, "no": false, "empty": "",
		"list":   []any{map[string]any{"title": "a", "qty": float64(1)}, map[string]any{"title": "b<", "qty": float64(2)}},
		"words":  []any{"x", "y", "z"},
		"none":   []any{},
		"user":   map[string]any{"first": "Jo", "address": map[string]any{"city": "Oslo"}},
		"nested": []any{[]any{"p", "q"}, []any{"r"}},
	}
	partials := map[string]string{"item": "<li>{{title}}={{qty}} ({{../name}})</li>", "city": "{{city}}"}
	for _, src := range []string{
		"Hello {{name}}! {{{name}}} {{n}} {{pi}} {{zero}} {{yes}} {{no}} [{{missing}}] {{user.first}} {{user.address.city}}",
		"{{#if yes}}Y{{else}}N{{/if}} {{#if no}}Y{{else}}N{{/if}} {{#if zero}}Z{{/if}} {{#if none}}L{{else}}-{{/if}} {{#unless empty}}E{{/unless}}",
		"<ul>{{#each list}}{{> item}}{{/each}}</ul>",
		"{{#each words}}{{@index}}:{{this}}{{#if @first}}^{{/if}}{{#if @last}}${{/if}},{{/each}}",
		"{{#each none}}x{{else}}nothing{{/each}}",
		"{{#with user}}{{first}} in {{address.city}} ({{name}}){{/with}} {{#with missing}}m{{else}}no{{/with}}",
		"{{#list}}[{{title}}]{{/list}} {{#user}}{{first}}{{/user}} {{^none}}inverted{{/none}} {{#yes}}{{name}}{{/yes}}",
		"{{#each nested}}{{#each this}}{{this}}{{@index}}{{/each}};{{/each}}",
		"{{lookup user \"first\"}} {{lookup words 1}} {{@root.name}}",
		"{{! a comment }}{{!-- another --}}x  {{~name~}}  y",
		"<ul>\n  {{#each words}}\n  <li>{{this}}</li>\n  {{/each}}\n</ul>\n",
		"{{#with user.address}}{{> city}}{{/with}} {{> city user.address}}",
		"{{#each list}}{{#each ../words}}{{../title}}{{this}}{{/each}}{{/each}}",
	} {
		t.Run(src, func(t *testing.T) {
			c, err := mailtemplate.Compile(mailtemplate.Template{Subject: "s", HTML: src, Partials: partials}, mailtemplate.DefaultLimits)
			require.NoError(t, err)
			got, err := c.Render(context.Background(), data)
			require.NoError(t, err)
			tpl, err := raymond.Parse(src)
			require.NoError(t, err)
			tpl.RegisterPartials(partials)
			want, err := tpl.Exec(data)
			require.NoError(t, err)
			assert.Equal(t, want, got.HTML)
		})
	}
}

func TestUnsupportedRefused(t *testing.T) {
	for _, src := range []string{
		"{{uppercase name}}", "{{name x=1}}", "{{#each list as |item|}}{{item}}{{/each}}", "{{#custom x}}y{{/custom}}",
		"{{lookup (lookup a b) c}}", "{{> p x=1}}",
	} {
		_, err := mailtemplate.Compile(mailtemplate.Template{Subject: "s", HTML: src, Partials: map[string]string{"p": "p"}}, mailtemplate.DefaultLimits)
		var se *mailtemplate.SyntaxError
		require.ErrorAs(t, err, &se, src)
		assert.Equal(t, "html", se.Part, src)
		assert.Equal(t, 1, se.Line, src)
	}
}

// A Mustache section over a list repeats like #each: bounded the same way.
func TestSectionsBounded(t *testing.T) {
	lim := mailtemplate.Limits{MaxOutputBytes: 64 << 10, Timeout: time.Second}
	c, err := mailtemplate.Compile(mailtemplate.Template{HTML: "{{#l}}{{#l}}{{#l}}0123456789{{/l}}{{/l}}{{/l}}"}, lim)
	require.NoError(t, err)
	list := make([]any, 1000)
	for i := range list {
		list[i] = float64(i)
	}
	start := time.Now()
	_, err = c.Render(context.Background(), map[string]any{"l": list})
	var le *mailtemplate.LimitError
	require.ErrorAs(t, err, &le)
	assert.Less(t, time.Since(start), time.Second)
}
