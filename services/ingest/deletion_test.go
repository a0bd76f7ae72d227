package ingest_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/partition"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/testkit/statustest"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest"
	"github.com/namirasoft/email-sender/services/ingest/store"
)

// fillAccount puts rows of accountID into every table the API writes, jobs and
// events on both streams, and attempt records in the workers' bucket.
func fillAccount(t *testing.T, b *accBundle, key string, kv jetstream.KeyValue) {
	t.Helper()
	ctx := as(t, key)
	acc, send := b.acc[0], b.send[0]
	_, err := acc.CreateApiKey(ctx, &v1.CreateApiKeyRequest{Name: "extra"})
	require.NoError(t, err)
	_, err = acc.PutProvider(ctx, &v1.PutProviderRequest{Name: "smtp", Settings: &v1.PutProviderRequest_Smtp{Smtp: &v1.SmtpSettings{
		Host: "smtp.example.com", Username: "u", Password: "p",
	}}})
	require.NoError(t, err)
	_, err = acc.AddSuppression(ctx, &v1.AddSuppressionRequest{Address: "gone@example.org"})
	require.NoError(t, err)
	_, err = acc.AddSender(ctx, &v1.AddSenderRequest{Address: "pending@example.net"})
	require.NoError(t, err)
	for i := range 3 {
		r, err := send.SendEmail(ctx, &v1.SendEmailRequest{Message: validMessage(), IdempotencyKey: "k" + string(rune('0'+i))})
		require.NoError(t, err)
		_, err = kv.Put(t.Context(), r.GetMessageId(), []byte(`{"state":"done","attempt":1}`))
		require.NoError(t, err)
	}
	// A scheduled message keeps its outbox row; canceling another publishes an event.
	_, err = send.SendEmail(ctx, &v1.SendEmailRequest{Message: validMessage(), SendAt: timestamppb.New(time.Now().Add(time.Hour))})
	require.NoError(t, err)
	c, err := send.SendEmail(ctx, &v1.SendEmailRequest{Message: validMessage(), SendAt: timestamppb.New(time.Now().Add(time.Hour))})
	require.NoError(t, err)
	_, err = send.CancelScheduled(ctx, &v1.CancelScheduledRequest{MessageId: c.GetMessageId()})
	require.NoError(t, err)
}

// snapshot counts the rows of accountID in every table with an account_id
// column (and its accounts row), its jobs and events, and its attempt records.
func snapshot(t *testing.T, b *accBundle, accountID string, kv jetstream.KeyValue) map[string]int64 {
	t.Helper()
	ctx := t.Context()
	tables, err := store.AccountTables(ctx, b.db.Pool)
	require.NoError(t, err)
	out := map[string]int64{}
	for _, tb := range tables {
		var n int64
		require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{tb}.Sanitize()+` WHERE account_id = $1`, accountID).Scan(&n))
		out["table "+tb] = n
	}
	var n int64
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT count(*) FROM accounts WHERE id = $1`, accountID).Scan(&n))
	out["table accounts"] = n
	for stream, filter := range map[string]string{queue.SendStream: queue.SendAccountFilter(accountID), queue.EventStream: queue.EventAccountFilter(accountID)} {
		st, err := b.js.Stream(ctx, stream)
		require.NoError(t, err)
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
		require.NoError(t, err)
		var c uint64
		for _, x := range info.State.Subjects {
			c += x
		}
		out["stream "+stream] = int64(c)
	}
	keys, err := kv.ListKeys(ctx)
	require.NoError(t, err)
	ids := map[string]bool{}
	rows, err := b.db.Pool.Query(ctx, `SELECT id::text FROM messages WHERE account_id = $1`, accountID)
	require.NoError(t, err)
	mine, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	for _, id := range mine {
		ids[id] = true
	}
	for k := range keys.Keys() {
		if ids[k] {
			out["kv"]++
		}
	}
	return out
}

func TestDeleteAccountData(t *testing.T) {
	t.Parallel()
	// The final sweep comes soon, but after the call: one due while the call
	// still erases (a loaded machine) purges first, and the call's counts
	// come out short.
	b := setupAccounts(t, accOptions{finalSweepAfter: 2 * time.Second})
	ctx := context.Background()
	kv, err := b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: queue.AttemptsBucket})
	require.NoError(t, err)
	other, err := ingest.Bootstrap(ctx, b.db.Pool, b.keyring, ingest.BootstrapParams{AccountName: "other", ProviderKind: "sandbox", Senders: []string{"example.com"}})
	require.NoError(t, err)
	fillAccount(t, b, b.acct.APIKey, kv)
	fillAccount(t, b, other.APIKey, kv)

	before := snapshot(t, b, b.acct.AccountID, kv)
	otherBefore := snapshot(t, b, other.AccountID, kv)
	for _, k := range []string{"accounts", "api_keys", "provider_configs", "messages", "recipients", "events", "outbox",
		"idempotency_keys", "senders", "suppressions"} {
		require.Positive(t, before["table "+k], "the test fills %s", k)
		require.Equal(t, before["table "+k], otherBefore["table "+k], k)
	}
	for k, n := range before {
		if n == 0 {
			t.Logf("%s has no rows of the account (a table this test does not fill)", k)
		}
	}
	require.Positive(t, before["stream "+queue.SendStream])
	require.Positive(t, before["stream "+queue.EventStream])
	require.EqualValues(t, 3, before["kv"])

	_, err = b.acc[0].DeleteAccountData(b.admin(t), &v1.DeleteAccountDataRequest{ConfirmAccountId: other.AccountID})
	statustest.RequireField(t, err, codes.PermissionDenied, "confirm_account_id")
	_, err = b.acc[0].DeleteAccountData(b.admin(t), &v1.DeleteAccountDataRequest{})
	statustest.RequireField(t, err, codes.InvalidArgument, "confirm_account_id")

	resp, err := b.acc[0].DeleteAccountData(b.admin(t), &v1.DeleteAccountDataRequest{ConfirmAccountId: b.acct.AccountID})
	require.NoError(t, err)
	for k, n := range before {
		switch {
		case k == "table usage_records":
			// Calls are recorded asynchronously: the snapshot may miss the last ones.
			require.GreaterOrEqual(t, resp.GetRowsDeleted()[k[6:]], n, "rows_deleted[%s]", k[6:])
		case len(k) > 6 && k[:6] == "table ":
			require.Equal(t, n, resp.GetRowsDeleted()[k[6:]], "rows_deleted[%s]", k[6:])
		case k == "kv":
			require.Equal(t, n, resp.GetStreamMessagesPurged()["KV_"+queue.AttemptsBucket])
		default:
			require.Equal(t, n, resp.GetStreamMessagesPurged()[k[7:]], "stream_messages_purged[%s]", k[7:])
		}
	}

	after := snapshot(t, b, b.acct.AccountID, kv)
	for k, n := range after {
		if k == "table usage_records" {
			// The calls around the deletion (this one too) are recorded
			// asynchronously: the final sweep removes them.
			continue
		}
		require.Zero(t, n, "%s still holds the deleted account's data", k)
	}
	require.Eventually(t, func() bool {
		return snapshot(t, b, b.acct.AccountID, kv)["table usage_records"] == 0
	}, 10*time.Second, 50*time.Millisecond, "the final sweep removes the usage records written after the call")
	otherAfter := snapshot(t, b, other.AccountID, kv)
	require.GreaterOrEqual(t, otherAfter["table usage_records"], otherBefore["table usage_records"])
	delete(otherAfter, "table usage_records")
	delete(otherBefore, "table usage_records")
	require.Equal(t, otherBefore, otherAfter, "the other account is untouched")

	// The audit record: no account id, no personal data.
	var rowJSON string
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT row_to_json(d)::text FROM account_deletions d WHERE id = $1`, resp.GetAuditId()).Scan(&rowJSON))
	require.NotContains(t, rowJSON, b.acct.AccountID)
	require.NotContains(t, rowJSON, "acme")
	require.NotContains(t, rowJSON, "example")
	var audit struct {
		AccountHash string           `json:"account_hash"`
		Rows        map[string]int64 `json:"rows_deleted"`
		Purged      map[string]int64 `json:"stream_messages_purged"`
		Completed   *time.Time       `json:"completed_at"`
	}
	require.NoError(t, json.Unmarshal([]byte(rowJSON), &audit))
	require.Equal(t, store.AccountHash(b.acct.AccountID), audit.AccountHash)
	require.Equal(t, resp.GetRowsDeleted(), audit.Rows)
	require.Equal(t, resp.GetStreamMessagesPurged(), audit.Purged)
	require.NotNil(t, audit.Completed)

	// The caller's key is gone; so is every other key of the account.
	_, err = b.acc[0].ListApiKeys(b.admin(t), &v1.ListApiKeysRequest{})
	requireCode(t, err, codes.Unauthenticated)
	_, err = b.send[0].SendEmail(as(t, other.APIKey), &v1.SendEmailRequest{Message: validMessage()})
	require.NoError(t, err)
}

// TestRetention runs ingest's retention with its clock 31 days ahead: the
// partition manager drops the content of messages older than
// RETENTION_PERIOD (30 days) with its partition, whatever their status,
// as no message of it is in the outbox; their metadata stays
// (METADATA_RETENTION); the content of a delivered sender verification
// mail, which holds its code, goes at once. (pkg/partition's tests cover
// the partitions kept for messages still in the outbox.)
func TestRetention(t *testing.T) {
	t.Parallel()
	now := time.Now()
	b := setupAccounts(t, accOptions{now: func() time.Time { return now.Add(31 * 24 * time.Hour) }})
	ctx := t.Context()
	insert := func(created time.Time, status v1.MessageStatus_Value, tags string) string {
		id, err := partition.NewMessageID(created)
		require.NoError(t, err)
		// One transaction: retention runs meanwhile.
		tx, err := b.db.Pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { require.NoError(t, tx.Commit(ctx)) }()
		_, err = tx.Exec(ctx, `
			INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, subject, tags,
				recipient_count, size_bytes, created_at, updated_at)
			VALUES ($1, $2, $3, 'sandbox', $4, 'a@example.com', 'subject stays', $5, 1, 4, $6, $6)`,
			id, b.acct.AccountID, b.acct.ProviderID, int16(status), tags, created)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, `INSERT INTO message_contents (message_id, account_id, content) VALUES ($1, $2, '\x01020304')`,
			id, b.acct.AccountID)
		require.NoError(t, err)
		return id.String()
	}
	old, recent := now.Add(-40*24*time.Hour), now.Add(31*24*time.Hour-time.Hour)
	purged := []string{
		insert(old, v1.MessageStatus_DELIVERED, `{}`),
		insert(old, v1.MessageStatus_FAILED, `{}`),
		insert(old, v1.MessageStatus_QUEUED, `{}`), // published: the worker holds the job
		insert(recent, v1.MessageStatus_DELIVERED, `{"emailsender":"sender-verification"}`),
	}
	kept := []string{
		insert(now.Add(2*24*time.Hour), v1.MessageStatus_DELIVERED, `{}`), // 29 days old
		insert(recent, v1.MessageStatus_QUEUED, `{"emailsender":"sender-verification"}`),
	}
	hasContent := func(id string) bool {
		var (
			subject string
			content bool
		)
		require.NoError(t, b.db.Pool.QueryRow(ctx, `
			SELECT subject, EXISTS (SELECT 1 FROM message_contents WHERE message_id = $1) FROM messages WHERE id = $1`,
			id).Scan(&subject, &content))
		require.Equal(t, "subject stays", subject)
		return content
	}
	require.Eventually(t, func() bool {
		for _, id := range purged {
			if hasContent(id) {
				return false
			}
		}
		return true
	}, 10*time.Second, 50*time.Millisecond)
	for _, id := range kept {
		require.True(t, hasContent(id), "message %s keeps its content", id)
	}
}
