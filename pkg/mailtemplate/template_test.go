package mailtemplate_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/mailtemplate"
)

func render(t *testing.T, tpl mailtemplate.Template, data map[string]any) mailtemplate.Result {
	t.Helper()
	c, err := mailtemplate.Compile(tpl, mailtemplate.DefaultLimits)
	require.NoError(t, err)
	res, err := c.Render(context.Background(), data)
	require.NoError(t, err)
	return res
}

// TestSESExample renders the example template of the Amazon SES developer
// guide (testdata/ses-mytemplate.json cites the page) with its example data
// and gets what SES documents.
func TestSESExample(t *testing.T) {
	raw, err := os.ReadFile("testdata/ses-mytemplate.json")
	require.NoError(t, err)
	var ex struct {
		Template     struct{ SubjectPart, HtmlPart, TextPart string }
		TemplateData map[string]any
		Want         struct{ Subject, HTML, Text string }
	}
	require.NoError(t, json.Unmarshal(raw, &ex))
	res := render(t, mailtemplate.Template{Subject: ex.Template.SubjectPart, HTML: ex.Template.HtmlPart, Text: ex.Template.TextPart}, ex.TemplateData)
	assert.Equal(t, ex.Want.Subject, res.Subject)
	assert.Equal(t, ex.Want.HTML, res.HTML)
	assert.Equal(t, ex.Want.Text, res.Text)
	assert.Empty(t, res.Missing)
	assert.Empty(t, res.Unused)
}

func TestEscaping(t *testing.T) {
	payload := `<script>alert("x")</script> & 'q'`
	res := render(t, mailtemplate.Template{
		Subject: "Hi {{name}}",
		HTML:    "<p>{{name}}</p><p>{{{raw}}}</p>",
		Text:    "Hi {{name}}",
	}, map[string]any{"name": payload, "raw": "<b>bold</b>"})
	assert.Equal(t, "Hi "+payload, res.Subject)
	assert.Equal(t, "Hi "+payload, res.Text)
	assert.NotContains(t, res.HTML, "<script>")
	assert.Contains(t, res.HTML, "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &apos;q&apos;")
	assert.Contains(t, res.HTML, "<b>bold</b>", "triple braces are verbatim")
}

func TestLayoutAndPartials(t *testing.T) {
	tpl := mailtemplate.Template{
		Subject: "Order {{order.id}}",
		HTML:    "<h1>Hi {{name}}</h1><ul>{{#each items}}{{> item}}{{/each}}</ul>",
		Layout: &mailtemplate.Layout{
			HTML: "<html><body>{{{content}}}{{> footer}}</body></html>",
			Text: "{{{content}}}\n-- \n{{company}}",
		},
		Text:     "Hi {{name}}, {{#each items}}{{title}} x{{qty}}; {{/each}}",
		Partials: map[string]string{"item": "<li>{{title}} x{{qty}}</li>", "footer": "<footer>{{company}}</footer>"},
		Variables: []mailtemplate.Variable{
			{Name: "name", Type: mailtemplate.TypeString, Required: true},
			{Name: "company", Type: mailtemplate.TypeString, Default: "ACME & Co"},
			{Name: "items", Type: mailtemplate.TypeList},
		},
	}
	res := render(t, tpl, map[string]any{
		"name":  "Ana",
		"order": map[string]any{"id": float64(42)},
		"items": []any{map[string]any{"title": "Tea", "qty": float64(2)}, map[string]any{"title": "Cup<", "qty": float64(1)}},
		"extra": true,
	})
	assert.Equal(t, "Order 42", res.Subject)
	assert.Equal(t, "<html><body><h1>Hi Ana</h1><ul><li>Tea x2</li><li>Cup&lt; x1</li></ul><footer>ACME &amp; Co</footer></body></html>", res.HTML)
	assert.Equal(t, "Hi Ana, Tea x2; Cup< x1; \n-- \nACME & Co", res.Text)
	assert.Equal(t, []string{"extra"}, res.Unused)
	assert.Empty(t, res.Missing)
}

func TestMissingVariables(t *testing.T) {
	tpl := mailtemplate.Template{
		Subject:   "Hi {{name}}",
		HTML:      "<p>{{greeting}} {{name}}, code {{code}}</p>",
		Variables: []mailtemplate.Variable{{Name: "code", Required: true}, {Name: "greeting", Default: "Hello"}},
	}
	c, err := mailtemplate.Compile(tpl, mailtemplate.DefaultLimits)
	require.NoError(t, err)
	_, err = c.Render(context.Background(), map[string]any{"name": "x"})
	var me *mailtemplate.MissingError
	require.ErrorAs(t, err, &me)
	assert.Equal(t, []string{"code"}, me.Names)

	res, err := c.Render(context.Background(), map[string]any{"code": "123"})
	require.NoError(t, err)
	assert.Equal(t, []string{"name"}, res.Missing, "used but neither given nor defaulted")
	assert.Equal(t, "<p>Hello , code 123</p>", res.HTML)
	assert.Equal(t, "Hello , code 123", res.Text, "text generated from the HTML")

	_, err = c.Render(context.Background(), map[string]any{"code": "1", "greeting": float64(3)})
	require.NoError(t, err, "an untyped variable takes any value")
	tpl.Variables[0].Type = mailtemplate.TypeNumber
	c, err = mailtemplate.Compile(tpl, mailtemplate.DefaultLimits)
	require.NoError(t, err)
	_, err = c.Render(context.Background(), map[string]any{"code": "1"})
	var te *mailtemplate.TypeError
	require.ErrorAs(t, err, &te)
	assert.Equal(t, "code", te.Name)
}

func TestSyntaxErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		tpl  mailtemplate.Template
		part string
		line int
		col  int
	}{
		{"unclosed block", mailtemplate.Template{HTML: "<p>\n  {{#if a}}x"}, "html", 2, 0},
		{"mismatched close", mailtemplate.Template{Subject: "ok", HTML: "line1\n<p>{{#each a}}x{{/if}}</p>"}, "html", 2, 0},
		{"bad subject", mailtemplate.Template{Subject: "Hi {{name}"}, "subject", 1, 0},
		{"unknown partial", mailtemplate.Template{HTML: "{{> nope}}"}, "html", 1, 0},
		{"partial cycle", mailtemplate.Template{HTML: "{{> a}}", Partials: map[string]string{"a": "{{> b}}", "b": "{{> a}}"}}, "", 0, 0},
		{"bad variable type", mailtemplate.Template{Variables: []mailtemplate.Variable{{Name: "x", Type: "date"}}}, "variables[0].type", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mailtemplate.Compile(tc.tpl, mailtemplate.DefaultLimits)
			var se *mailtemplate.SyntaxError
			require.ErrorAs(t, err, &se, "%v", err)
			if tc.part != "" {
				assert.Equal(t, tc.part, se.Part)
			}
			if tc.line > 0 {
				assert.Equal(t, tc.line, se.Line, se.Error())
				assert.Positive(t, se.Column, se.Error())
			}
		})
	}
}

func TestHostileTemplates(t *testing.T) {
	lim := mailtemplate.Limits{MaxSourceBytes: 4096, MaxExpandedBytes: 64 << 10, MaxOutputBytes: 64 << 10, Timeout: time.Second}
	// Partials that double each level: 2^30 copies once expanded.
	partials := map[string]string{"p0": "xxxxxxxx"}
	for i := 1; i <= 30; i++ {
		partials["p"+itoa(i)] = "{{> p" + itoa(i-1) + "}}{{> p" + itoa(i-1) + "}}"
	}
	_, err := mailtemplate.Compile(mailtemplate.Template{HTML: "{{> p30}}", Partials: partials}, lim)
	var le *mailtemplate.LimitError
	require.ErrorAs(t, err, &le)

	_, err = mailtemplate.Compile(mailtemplate.Template{HTML: strings.Repeat("x", 5000)}, lim)
	require.ErrorAs(t, err, &le)

	// Nested loops over a modest list: 1000^3 iterations if unbounded.
	c, err := mailtemplate.Compile(mailtemplate.Template{HTML: "{{#each l}}{{#each ../l}}{{#each ../../l}}0123456789{{/each}}{{/each}}{{/each}}"}, lim)
	require.NoError(t, err)
	list := make([]any, 1000)
	for i := range list {
		list[i] = float64(i)
	}
	start := time.Now()
	_, err = c.Render(context.Background(), map[string]any{"l": list})
	require.ErrorAs(t, err, &le)
	assert.Less(t, time.Since(start), 2*time.Second)
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestConcurrentRenders(t *testing.T) {
	c, err := mailtemplate.Compile(mailtemplate.Template{Subject: "s {{n}}", HTML: "{{#each l}}{{> p}}{{/each}}", Partials: map[string]string{"p": "<i>{{this}}</i>"}}, mailtemplate.DefaultLimits)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				res, err := c.Render(context.Background(), map[string]any{"n": float64(j), "l": []any{"a", "b"}})
				if err != nil || res.HTML != "<i>a</i><i>b</i>" {
					t.Errorf("render: %q %v", res.HTML, err)
				}
			}
		}()
	}
	wg.Wait()
}

func TestCanceled(t *testing.T) {
	c, err := mailtemplate.Compile(mailtemplate.Template{HTML: "x"}, mailtemplate.DefaultLimits)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = c.Render(ctx, nil)
	if err != nil {
		assert.True(t, errors.Is(err, context.Canceled))
	}
}
