package ingest_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/namirasoft/email-sender/pkg/testkit/statustest"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// from is a message of the bundle's account from address through provider
// (the default when empty).
func from(address, provider string) *v1.SendEmailRequest {
	return &v1.SendEmailRequest{ProviderId: provider, Message: &v1.EmailMessage{
		From: &v1.Address{Address: address}, To: []*v1.Address{{Address: "someone@example.org"}}, Subject: "s", TextBody: "t",
	}}
}

// addVerifiedSender stores a verified sender behind the services' back (a
// miss is never cached, so they see it on their next call).
func (b *accBundle) addVerifiedSender(t *testing.T, address string) string {
	t.Helper()
	var id string
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `
		INSERT INTO senders (id, account_id, address, is_domain, status, method, verified_at, created_at)
		VALUES (gen_random_uuid(), $1, $2, false, 'verified', 'bootstrap', now(), now()) RETURNING id::text`,
		b.acct.AccountID, address).Scan(&id))
	return id
}

// addProvider stores a healthy sandbox provider configuration behind the
// services' back.
func (b *accBundle) addProvider(t *testing.T) string {
	t.Helper()
	var id string
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `
		INSERT INTO provider_configs (id, account_id, name, kind, healthy)
		VALUES (gen_random_uuid(), $1, 'extra-' || gen_random_uuid(), 'sandbox', true) RETURNING id::text`,
		b.acct.AccountID).Scan(&id))
	return id
}

// cachedEverywhere waits until every replica answers req from its cache:
// each accepts it, then spoil(true) changes the database behind their back,
// and each still accepts it; spoil(false) undoes the change.
func (b *accBundle) cachedEverywhere(t *testing.T, req *v1.SendEmailRequest, spoil func(bool)) {
	t.Helper()
	require.Eventually(t, func() bool {
		spoil(false)
		for _, c := range b.send {
			if _, err := c.SendEmail(b.admin(t), req); err != nil {
				return false
			}
		}
		spoil(true)
		defer spoil(false)
		for _, c := range b.send {
			if _, err := c.SendEmail(b.admin(t), req); err != nil {
				return false
			}
		}
		return true
	}, 30*time.Second, 10*time.Millisecond, "every replica answers from its cache")
}

// The send path caches verified senders and provider configurations per
// replica (for an hour here), and a change made through the AccountService
// on one replica applies on every replica when the call answers.
func TestSendCacheAcrossReplicas(t *testing.T) {
	t.Parallel()
	b := setupAccounts(t, accOptions{instances: 2, lookupTTL: time.Hour})
	ctx := b.admin(t)
	exec := func(sql string, args ...any) {
		_, err := b.db.Pool.Exec(t.Context(), sql, args...)
		require.NoError(t, err)
	}
	for i := range 4 {
		changer, other := b.acc[i%2], b.send[(i+1)%2]

		// A sender removed on one replica is refused on the other at once.
		addr := fmt.Sprintf("news%d@other.example", i)
		sid := b.addVerifiedSender(t, addr)
		req := from(addr, "")
		b.cachedEverywhere(t, req, func(spoiled bool) {
			exec(`UPDATE senders SET status = CASE WHEN $2 THEN 'pending' ELSE 'verified' END WHERE id = $1`, sid, spoiled)
		})
		_, err := changer.RemoveSender(ctx, &v1.RemoveSenderRequest{Id: sid})
		require.NoError(t, err)
		_, err = other.SendEmail(ctx, req)
		statustest.RequireField(t, err, codes.FailedPrecondition, "message.from.address")

		// A provider configuration deleted on one replica is refused on the
		// other at once.
		pid := b.addProvider(t)
		req = from("sender@example.com", pid)
		b.cachedEverywhere(t, req, func(spoiled bool) {
			exec(`UPDATE provider_configs SET healthy = NOT $2 WHERE id = $1`, pid, spoiled)
		})
		_, err = changer.DeleteProvider(ctx, &v1.DeleteProviderRequest{Id: pid})
		require.NoError(t, err)
		_, err = other.SendEmail(ctx, req)
		statustest.RequireField(t, err, codes.FailedPrecondition, "provider_id")
	}
}

// While a replica's NATS connection is down its cache is not used: a change
// made in the database alone (announced to nobody) applies at once.
func TestSendCacheUnusedWithoutNATS(t *testing.T) {
	t.Parallel()
	b := setupAccounts(t, accOptions{lookupTTL: time.Hour})
	ctx := b.admin(t)
	sid := b.addVerifiedSender(t, "news@other.example")
	req := from("news@other.example", "")
	b.cachedEverywhere(t, req, func(spoiled bool) {
		_, err := b.db.Pool.Exec(t.Context(), `UPDATE senders SET status = CASE WHEN $2 THEN 'pending' ELSE 'verified' END WHERE id = $1`, sid, spoiled)
		require.NoError(t, err)
	})

	b.nats.Stop()
	_, err := b.db.Pool.Exec(t.Context(), `DELETE FROM senders WHERE id = $1`, sid)
	require.NoError(t, err)
	_, err = b.send[0].SendEmail(ctx, req)
	statustest.RequireField(t, err, codes.FailedPrecondition, "message.from.address")
	_, err = b.send[0].SendEmail(ctx, from("sender@example.com", ""))
	require.NoError(t, err, "accepted into the outbox while NATS is down")

	// Back on NATS the cache is used again, emptied of what it held.
	b.nats.Restart()
	_, err = b.send[0].SendEmail(ctx, req)
	statustest.RequireField(t, err, codes.FailedPrecondition, "message.from.address")
	sid = b.addVerifiedSender(t, "news2@other.example")
	b.cachedEverywhere(t, from("news2@other.example", ""), func(spoiled bool) {
		_, err := b.db.Pool.Exec(t.Context(), `UPDATE senders SET status = CASE WHEN $2 THEN 'pending' ELSE 'verified' END WHERE id = $1`, sid, spoiled)
		require.NoError(t, err)
	})
}
