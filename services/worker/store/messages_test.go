package store_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
	"github.com/namirasoft/email-sender/services/worker/store"
)

type messagesBundle struct {
	db       *pgtest.DB
	messages *store.Messages
	// accounts a and b, each with a provider configuration and a message.
	accA, accB, cfgA, cfgB, msgA, msgB string
}

func setupMessages(t *testing.T) *messagesBundle {
	t.Helper()
	ctx := context.Background()
	db := pgtest.New(t)
	b := &messagesBundle{db: db, messages: store.NewMessages(db.Pool)}
	for _, x := range []struct{ acc, cfg, msg *string }{{&b.accA, &b.cfgA, &b.msgA}, {&b.accB, &b.cfgB, &b.msgB}} {
		*x.acc, *x.cfg, *x.msg = uuid.NewString(), uuid.NewString(), uuid.NewString()
		_, err := db.Pool.Exec(ctx, `INSERT INTO accounts (id, name) VALUES ($1, $2)`, *x.acc, "acct-"+*x.acc)
		require.NoError(t, err)
		_, err = db.Pool.Exec(ctx, `INSERT INTO provider_configs (id, account_id, name, kind) VALUES ($1, $2, 'sandbox', 'sandbox')`, *x.cfg, *x.acc)
		require.NoError(t, err)
		_, err = db.Pool.Exec(ctx, `
			INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, recipient_count, size_bytes, created_at, updated_at)
			VALUES ($1, $2, $3, 'sandbox', 1, 'news@example.com', 1, 5, now(), now())`, *x.msg, *x.acc, *x.cfg)
		require.NoError(t, err)
	}
	return b
}

// TestCheckAgainstStoredMessage: a job agrees with its stored message only
// under the message's account and with a configuration of that account; many
// concurrent checks (answered by shared queries) each get their own answer.
func TestCheckAgainstStoredMessage(t *testing.T) {
	t.Parallel()
	b := setupMessages(t)
	cases := []struct {
		name                 string
		account, msg, config string
		want                 store.Stored
	}{
		{"agrees", b.accA, b.msgA, b.cfgA, store.StoredOK},
		{"upper-case message id", b.accA, strings.ToUpper(b.msgA), b.cfgA, store.StoredOK},
		{"braced message id", b.accA, "{" + b.msgA + "}", b.cfgA, store.StoredOK},
		{"another account's message", b.accA, b.msgB, b.cfgA, store.StoredOtherAccount},
		{"another account's configuration", b.accA, b.msgA, b.cfgB, store.StoredForeignConfig},
		{"configuration id not an id", b.accA, b.msgA, "not-an-id", store.StoredForeignConfig},
		{"message not stored", b.accA, uuid.NewString(), b.cfgA, store.StoredMissing},
		{"message id not an id", b.accA, "not-an-id", b.cfgA, store.StoredMissing},
		{"account id not an id", "x'; --", b.msgA, b.cfgA, store.StoredOtherAccount},
	}
	for _, tc := range cases {
		got, _, err := b.messages.Check(context.Background(), tc.account, tc.msg, tc.config, nil)
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.want, got, tc.name)
	}
	// The same query reads the recipients the message's account suppresses
	// (never another account's suppressions).
	_, err := b.db.Pool.Exec(context.Background(), `INSERT INTO suppressions (account_id, address, reason) VALUES ($1, 's@example.org', 'bounce'), ($2, 't@example.org', 'bounce')`, b.accA, b.accB)
	require.NoError(t, err)
	got, suppressed, err := b.messages.Check(context.Background(), b.accA, b.msgA, b.cfgA, []string{"s@example.org", "t@example.org", "u@example.org"})
	require.NoError(t, err)
	require.Equal(t, store.StoredOK, got)
	require.Equal(t, []string{"s@example.org"}, suppressed)
	// Concurrently, many times over: the calls share queries.
	var wg sync.WaitGroup
	for round := range 50 {
		for _, tc := range cases {
			wg.Go(func() {
				got, _, err := b.messages.Check(context.Background(), tc.account, tc.msg, tc.config, []string{"s@example.org"})
				if err != nil || got != tc.want {
					t.Errorf("round %d, %s: got %v, %v; want %v", round, tc.name, got, err, tc.want)
				}
			})
		}
	}
	wg.Wait()
}

// TestCheckCanceled: a caller whose context ends stops waiting; the others'
// checks are not disturbed.
func TestCheckCanceled(t *testing.T) {
	t.Parallel()
	b := setupMessages(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := b.messages.Check(ctx, b.accA, b.msgA, b.cfgA, nil)
	require.ErrorIs(t, err, context.Canceled)
	got, _, err := b.messages.Check(context.Background(), b.accA, b.msgA, b.cfgA, nil)
	require.NoError(t, err)
	require.Equal(t, store.StoredOK, got)
}
