package report_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/partition"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// BenchmarkConsolePages measures a signed-in page of the console from
// request to last byte over loopback HTTP (the session lookup, the service
// call, the template): Activity (50 of 20,000 messages, unfiltered and by
// recipient) and Message (3 recipients, 3 events, a retained HTML body).
// The data set is small; the queries are ListMessages' and GetMessage's,
// whose plans at 10 million messages are in "Queries at scale".
//
//	go test -run '^$' -bench BenchmarkConsolePages -benchtime 200x ./services/report/
func BenchmarkConsolePages(b *testing.B) {
	cb := setupConsole(b)
	a := cb.newAccount(b, auth.ScopeRead)
	ctx := context.Background()
	// 20,000 messages, one recipient each, over the last 20,000 seconds.
	start := time.Now().Add(-20_000 * time.Second)
	_, err := cb.db.Pool.Exec(ctx, `
		INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, subject, tags, recipient_count, size_bytes, created_at, updated_at)
		SELECT ($3::uuid[])[g], $1, '00000000-0000-7000-8000-000000000001', 'sandbox', 6, 'sender@example.com', 'Subject ' || g,
			jsonb_build_object('n', (g % 10)::text), 1, 100, $2::timestamptz + g * interval '1 second', $2::timestamptz + g * interval '1 second'
		FROM generate_series(1, 20000) g`, a.id, start, ids(b, start, 20_000))
	require.NoError(b, err)
	_, err = cb.db.Pool.Exec(ctx, `
		INSERT INTO recipients (message_id, idx, account_id, kind, address, name, status, status_key, updated_at)
		SELECT id, 0, account_id, 'to', 'r' || (substr(subject, 9)::int % 100) || '@example.com', '', 6, $2, created_at FROM messages WHERE account_id = $1`,
		a.id, msgstatus.Key(msgstatus.Delivered, 0))
	require.NoError(b, err)
	_, err = cb.db.Pool.Exec(ctx, `ANALYZE messages; ANALYZE recipients`)
	require.NoError(b, err)
	msg := cb.newMessage(b, a, msgSpec{to: []string{"jane@example.com", "joe@example.com"}, cc: []string{"ann@example.com"}})
	cb.putContent(b, a, msg, &emailsenderv1.EmailMessage{Subject: "Hello", HtmlBody: "<p>Hello</p>", TextBody: "Hello"})

	br := cb.browser(b)
	br.signIn(a.key)
	for _, bc := range []struct{ name, path string }{
		{"activity", "/console/"},
		{"activity-recipient", "/console/?recipient=r7%40example.com"},
		{"activity-page-2", ""},
		{"message", "/console/messages/" + msg},
	} {
		b.Run(bc.name, func(b *testing.B) {
			path := bc.path
			if bc.name == "activity-page-2" {
				first := br.get("/console/")
				m := nextRE.FindStringSubmatch(first.body)
				require.NotNil(b, m)
				path = m[1]
			}
			for b.Loop() {
				resp, err := br.c.Get(br.base + path)
				if err != nil {
					b.Fatal(err)
				}
				got := read(b, resp)
				if got.code != http.StatusOK {
					b.Fatalf("%s: %d", path, got.code)
				}
			}
		})
	}
}

// ids are n message ids of the seconds after start (as ingest makes them).
func ids(b *testing.B, start time.Time, n int) []uuid.UUID {
	out := make([]uuid.UUID, n)
	for i := range out {
		id, err := partition.NewMessageID(start.Add(time.Duration(i+1) * time.Second))
		require.NoError(b, err)
		out[i] = id
	}
	return out
}
