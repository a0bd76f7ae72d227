package mailtemplate_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/mailtemplate"
)

// raymond's parser reads tokens from a lexer goroutine; when it fails before
// the end of the input, that goroutine waits forever to hand over the next
// token. Compile checks the token stream first so that the usual mistakes
// (a block closed by another name, a stray close, a bad expression) fail
// before the parser runs: a live preview sends one per keystroke.
func TestSyntaxErrorsLeakNoGoroutine(t *testing.T) {
	bad := []string{
		"<p>{{#each a}}x{{/if}}</p> and more",
		"{{/if}} stray close then text",
		"{{#if a}}x{{else}}y{{else}}z{{/if}} tail",
		"{{name}} {{foo bar=}} tail",
		"{{#if a}}{{#each b}}{{/if}}{{/each}} tail",
		"{{> }} tail",
		"{{#if}}x{{/if}} tail",
		"{{{name}} tail }}",
		"{{name}",
		"{{#if a}} never closed",
	}
	compileAll := func() {
		for _, src := range bad {
			_, err := mailtemplate.Compile(mailtemplate.Template{Subject: "s", HTML: src}, mailtemplate.DefaultLimits)
			require.Error(t, err, src)
		}
	}
	compileAll() // warm up whatever starts once
	time.Sleep(50 * time.Millisecond)
	before := runtime.NumGoroutine()
	for range 20 {
		compileAll()
	}
	time.Sleep(100 * time.Millisecond)
	require.LessOrEqual(t, runtime.NumGoroutine(), before+2, "goroutines leaked by syntax errors")
}
