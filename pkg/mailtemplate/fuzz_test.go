package mailtemplate_test

import (
	"context"
	"testing"

	"github.com/namirasoft/email-sender/pkg/mailtemplate"
)

// FuzzCompileRender: no template, however broken, panics Compile or Render.
func FuzzCompileRender(f *testing.F) {
	for _, s := range []string{
		"Hello {{name}}", "{{#each l}}{{@index}}{{this}}{{/each}}", "{{#if a}}x{{else}}y{{/if}}",
		"{{> p}}", "{{{raw}}}", "{{#with o}}{{../name}}{{/with}}", "{{lookup o \"k\"}}", "{{^x}}y{{/x}}",
		"{{#l}}{{.}}{{/l}}", "{{! c }}{{~name~}}", "<a href=\"{{url}}\">x</a>", "{{#each o}}{{@key}}{{/each}}",
	} {
		f.Add(s)
	}
	data := map[string]any{"name": "<n>", "l": []any{"a", float64(1), nil, []any{"x"}}, "a": true,
		"o": map[string]any{"k": "v", "name": "on"}, "url": "https://x.example"}
	f.Fuzz(func(t *testing.T, src string) {
		c, err := mailtemplate.Compile(mailtemplate.Template{Subject: src, HTML: src, Partials: map[string]string{"p": src + "x"}}, mailtemplate.DefaultLimits)
		if err != nil {
			return
		}
		_, _ = c.Render(context.Background(), data)
		_, _ = c.Preview(context.Background(), nil)
	})
}
