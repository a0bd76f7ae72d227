package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
	"github.com/namirasoft/email-sender/services/ingest/store"
)

type acceptBundle struct {
	db       *pgtest.DB
	accounts []string
}

func setupAccept(t *testing.T) *acceptBundle {
	t.Helper()
	b := &acceptBundle{db: pgtest.New(t)}
	for _, name := range []string{"a", "b"} {
		id := uuid.NewString()
		_, err := b.db.Pool.Exec(t.Context(), `INSERT INTO accounts (id, name) VALUES ($1, $2)`, id, name)
		require.NoError(t, err)
		b.accounts = append(b.accounts, id)
	}
	return b
}

// newMessage is a message of account with two recipients; hash stands for
// the request under key.
func newMessage(account, key, hash string) *store.NewMessage {
	id := uuid.Must(uuid.NewV7()).String()
	m := &store.NewMessage{
		ID: id, AccountID: account, ProviderID: uuid.NewString(), ProviderKind: "sandbox", Status: msgstatus.Queued,
		FromAddress: "sender@example.com", Subject: "hi", Tags: map[string]string{"k": "v"},
		Recipients: []store.Recipient{{Kind: "to", Address: "a@example.com"}, {Kind: "bcc", Address: "b@example.com", Name: "B"}},
		Content:    []byte("job of " + id), NATSSubject: "send.sandbox." + account,
		IdempotencyKey: key, CreatedAt: time.Now(),
	}
	if key != "" {
		m.RequestHash = []byte(hash)
	}
	return m
}

func (b *acceptBundle) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

// want is the expected outcome of one message of a batch: stored now, a
// replay of the message at index replayOf (of the batch, or -1 for the one
// stored before it), or a mismatch.
type want struct {
	stored   bool
	replayOf int
	mismatch bool
}

func TestAccept(t *testing.T) {
	t.Parallel()
	stored := want{stored: true}
	mismatch := want{mismatch: true}
	replayOf := func(i int) want { return want{replayOf: i} }
	earlier := replayOf(-1)

	tests := []struct {
		name string
		// before is stored (in a batch of its own) first; its key is "k",
		// request "h", when set.
		before bool
		// aged makes the key stored before older than IdempotencyTTL.
		aged bool
		msgs func(a, b string) []*store.NewMessage
		want []want
	}{
		{name: "without keys, two accounts", msgs: func(a, b string) []*store.NewMessage {
			return []*store.NewMessage{newMessage(a, "", ""), newMessage(b, "", ""), newMessage(a, "", "")}
		}, want: []want{stored, stored, stored}},
		{name: "new keys", msgs: func(a, b string) []*store.NewMessage {
			return []*store.NewMessage{newMessage(a, "k", "h"), newMessage(a, "k2", "h"), newMessage(b, "k", "h")}
		}, want: []want{stored, stored, stored}},
		{name: "one key twice in the batch", msgs: func(a, _ string) []*store.NewMessage {
			return []*store.NewMessage{newMessage(a, "k", "h"), newMessage(a, "", ""), newMessage(a, "k", "h")}
		}, want: []want{stored, stored, replayOf(0)}},
		{name: "one key twice in the batch, another request", msgs: func(a, _ string) []*store.NewMessage {
			return []*store.NewMessage{newMessage(a, "k", "h"), newMessage(a, "k", "other")}
		}, want: []want{stored, mismatch}},
		{name: "a key used before", before: true, msgs: func(a, b string) []*store.NewMessage {
			return []*store.NewMessage{newMessage(a, "k", "h"), newMessage(b, "k", "h"), newMessage(a, "k", "h")}
		}, want: []want{earlier, stored, earlier}},
		{name: "a key used before for another request fails alone", before: true, msgs: func(a, _ string) []*store.NewMessage {
			return []*store.NewMessage{newMessage(a, "", ""), newMessage(a, "k", "other"), newMessage(a, "k2", "h")}
		}, want: []want{stored, mismatch, stored}},
		{name: "a key older than its TTL is new", before: true, aged: true, msgs: func(a, _ string) []*store.NewMessage {
			return []*store.NewMessage{newMessage(a, "k", "other")}
		}, want: []want{stored}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupAccept(t)
			ctx := t.Context()
			a, other := b.accounts[0], b.accounts[1]
			var first *store.NewMessage
			if tt.before {
				first = newMessage(a, "k", "h")
				got, err := store.Accept(ctx, b.db.Pool, []*store.NewMessage{first})
				require.NoError(t, err)
				require.Equal(t, store.Accepted{MessageID: first.ID, Status: msgstatus.Queued}, got[0])
				if tt.aged {
					_, err = b.db.Pool.Exec(ctx, `UPDATE idempotency_keys SET created_at = now() - interval '25 hours'`)
					require.NoError(t, err)
				}
			}
			msgs := tt.msgs(a, other)
			got, err := store.Accept(ctx, b.db.Pool, msgs)
			require.NoError(t, err)
			require.Len(t, got, len(msgs))
			nStored := 0
			for i, w := range tt.want {
				m := msgs[i]
				switch {
				case w.stored:
					nStored++
					require.Equal(t, store.Accepted{MessageID: m.ID, Status: msgstatus.Queued}, got[i], "message %d", i)
					require.Equal(t, 1, b.count(t, `SELECT count(*) FROM messages m JOIN message_contents c ON c.message_id = m.id WHERE m.id = $1 AND m.account_id = $2 AND c.account_id = m.account_id AND c.content = $3 AND m.tags = '{"k":"v"}'`, m.ID, m.AccountID, m.Content), "message %d", i)
					require.Equal(t, 2, b.count(t, `SELECT count(*) FROM recipients WHERE message_id = $1 AND status_key = $2`, m.ID, msgstatus.Key(msgstatus.Queued, 0)), "message %d", i)
					require.Equal(t, 1, b.count(t, `SELECT count(*) FROM outbox WHERE message_id = $1 AND subject = $2`, m.ID, m.NATSSubject), "message %d", i)
				case w.mismatch:
					require.ErrorIs(t, got[i].Err, store.ErrIdempotencyMismatch, "message %d", i)
				default:
					var id string
					if first != nil {
						id = first.ID
					}
					if w.replayOf >= 0 {
						id = msgs[w.replayOf].ID
					}
					require.Equal(t, store.Accepted{MessageID: id, Status: msgstatus.Queued, Replay: true}, got[i], "message %d", i)
				}
				if !w.stored {
					require.Equal(t, 0, b.count(t, `SELECT count(*) FROM messages WHERE id = $1`, m.ID), "message %d", i)
				}
			}
			before := 0
			if tt.before {
				before = 1
			}
			require.Equal(t, nStored+before, b.count(t, `SELECT count(*) FROM messages`))
			require.Equal(t, 2*(nStored+before), b.count(t, `SELECT count(*) FROM recipients`))
			require.Equal(t, 0, b.count(t, `SELECT count(*) FROM events`), "the ACCEPTED event is the report's to store")
		})
	}
}

// A batch naming a deleted account stores nothing, for any of its accounts.
func TestAcceptAccountGone(t *testing.T) {
	t.Parallel()
	b := setupAccept(t)
	_, err := store.Accept(t.Context(), b.db.Pool, []*store.NewMessage{
		newMessage(b.accounts[0], "", ""), newMessage(uuid.NewString(), "", ""),
	})
	require.ErrorIs(t, err, store.ErrAccountGone)
	require.Equal(t, 0, b.count(t, `SELECT count(*) FROM messages`))
	require.Equal(t, 0, b.count(t, `SELECT count(*) FROM outbox`))
}

// Concurrent batches claiming the same keys (in different orders) store one
// message per key and do not deadlock.
func TestAcceptConcurrentKeys(t *testing.T) {
	t.Parallel()
	b := setupAccept(t)
	a := b.accounts[0]
	const batches = 8
	var (
		wg   sync.WaitGroup
		outs = make([][]store.Accepted, batches)
		errs = make([]error, batches)
	)
	for i := range batches {
		keys := []string{"x", "y", "z"}
		if i%2 == 1 {
			keys = []string{"z", "y", "x"}
		}
		msgs := make([]*store.NewMessage, len(keys))
		for j, k := range keys {
			msgs[j] = newMessage(a, k, "h")
		}
		wg.Go(func() { outs[i], errs[i] = store.Accept(context.Background(), b.db.Pool, msgs) })
	}
	wg.Wait()
	fresh := 0
	for i := range batches {
		require.NoError(t, errs[i])
		for _, o := range outs[i] {
			require.NoError(t, o.Err)
			if !o.Replay {
				fresh++
			}
		}
	}
	require.Equal(t, 3, fresh, "one original answer per key")
	require.Equal(t, 3, b.count(t, `SELECT count(*) FROM messages`))
	require.Equal(t, 3, b.count(t, `SELECT count(*) FROM outbox`))
}
