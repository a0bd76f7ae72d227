package mailtemplate_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/namirasoft/email-sender/pkg/mailtemplate"
)

func TestHTMLToText(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"paragraphs", "<p>One   two</p>\n<p>Three</p>", "One two\n\nThree"},
		{"link", `<p>Read <a href="https://x.example/a?b=1">the docs</a>.</p>`, "Read the docs (https://x.example/a?b=1)."},
		{"bare link", `<a href="https://x.example">https://x.example</a>`, "https://x.example"},
		{"empty link text", `<a href="https://x.example"><img src="l.png"></a>`, "https://x.example"},
		{"breaks", "a<br>b<br/><br>c", "a\nb\n\nc"},
		{"list", "<ul><li>one</li><li>two</li></ul>after", "- one\n- two\n\nafter"},
		{"head and script dropped", "<html><head><title>T</title><style>p{}</style></head><body><script>x()</script><h1>Hi</h1>there</body></html>", "Hi\n\nthere"},
		{"entities", "<p>a &amp; b &lt;c&gt;</p>", "a & b <c>"},
		{"table", "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b\nc"},
		{"inline", "<p>Hello <b>bold</b> <i>it</i>!</p>", "Hello bold it!"},
		{"img alt", `<p><img alt="Logo"> Welcome</p>`, "Logo Welcome"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, mailtemplate.HTMLToText(tc.in))
		})
	}
}
