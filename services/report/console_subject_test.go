package report_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/auth"
)

// TestConsoleSubjectSearch: Activity's subject search is ListMessages'
// subject_contains, within the signed-in account only.
func TestConsoleSubjectSearch(t *testing.T) {
	b := setupConsole(t)
	ctx := context.Background()
	accA := b.newAccount(t, auth.ScopeRead)
	accB := b.newAccount(t, auth.ScopeRead)
	invoice := b.newMessage(t, accA, msgSpec{to: []string{"x@a.example"}})
	plain := b.newMessage(t, accA, msgSpec{to: []string{"y@a.example"}})
	other := b.newMessage(t, accB, msgSpec{to: []string{"z@b.example"}})
	for id, subj := range map[string]string{invoice: "Your Invoice 42", plain: "Welcome aboard", other: "Invoice of B"} {
		_, err := b.db.Pool.Exec(ctx, `UPDATE messages SET subject = $2 WHERE id = $1`, id, subj)
		require.NoError(t, err)
	}
	br := b.browser(t)
	br.signIn(accA.key)
	a := br.get("/console/?subject=INVOICE")
	require.Equal(t, http.StatusOK, a.code, a.body)
	require.Contains(t, a.body, `value="INVOICE"`, "the search shown back")
	require.Contains(t, a.body, invoice)
	require.NotContains(t, a.body, plain)
	require.NotContains(t, a.body, other, "B's message")
	require.NotContains(t, a.body, "Invoice of B")
	require.NotContains(t, a.body, "Search older messages", "the whole account was read")
	a = br.get("/console/?subject=nothing-like-it")
	require.Contains(t, a.body, "No messages match.")
}
