package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/testkit/jwttest"
	"github.com/namirasoft/email-sender/pkg/testkit/smtpsink"
	operatorv1 "github.com/namirasoft/email-sender/proto/emailsender/operator/v1"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest/store"
)

// opCtx is a call context with the stack's operator token.
func (s *stack) opCtx() context.Context {
	return withKey(s.t, operatorToken)
}

// requireAccountGone: no row of the account in any table with an account_id
// column (nor accounts, account_states, account_sweeps), no job or event on
// the streams, no attempt record of messageIDs, no key in the account
// states bucket, no consumer named for it.
func requireAccountGone(t *testing.T, s *stack, accountID string, messageIDs ...string) {
	t.Helper()
	ctx := t.Context()
	tables, err := store.AccountTables(ctx, s.db.Pool)
	require.NoError(t, err)
	for _, tb := range tables {
		var n int64
		require.NoError(t, s.db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{tb}.Sanitize()+` WHERE account_id = $1`, accountID).Scan(&n))
		require.Zero(t, n, "rows of the account left in %s", tb)
	}
	for _, q := range []string{`SELECT count(*) FROM accounts WHERE id = $1`, `SELECT count(*) FROM account_sweeps WHERE account = $1`} {
		var n int64
		require.NoError(t, s.db.Pool.QueryRow(ctx, q, accountID).Scan(&n))
		require.Zero(t, n, q)
	}
	for stream, filter := range map[string]string{queue.SendStream: queue.SendAccountFilter(accountID), queue.EventStream: queue.EventAccountFilter(accountID)} {
		st, err := s.js.Stream(ctx, stream)
		require.NoError(t, err)
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
		require.NoError(t, err)
		require.Empty(t, info.State.Subjects, "messages of the account left on %s", stream)
	}
	kv, err := s.js.KeyValue(ctx, queue.AttemptsBucket)
	require.NoError(t, err)
	for _, id := range messageIDs {
		_, err := kv.Get(ctx, id)
		require.ErrorIs(t, err, jetstream.ErrKeyNotFound, "attempt record of %s left", id)
	}
	st, err := s.js.Stream(ctx, queue.SendStream)
	require.NoError(t, err)
	names := st.ConsumerNames(ctx)
	for n := range names.Name() {
		require.NotContains(t, n, accountID, "consumer of the account left")
	}
	require.NoError(t, names.Err())
}

// TestDeleteAccountDataDuringSlowSend: a send is in flight to an SMTP server
// that takes 30 s to answer MAIL FROM when DeleteAccountData is called.
// After the call returned nothing reaches the server (the send was aborted:
// the tombstone reached the worker before the call answered), and once the
// final sweep ran (a short INGEST_FINAL_SWEEP_AFTER here) nothing of the
// account remains in any table, stream, bucket or consumer.
func TestDeleteAccountDataDuringSlowSend(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{sendTimeout: time.Minute, finalSweepAfter: 3 * time.Second})
	acc := s.accounts["a"].AccountID
	s.sink.Script(smtpsink.Action{Stage: smtpsink.AtMail, Delay: 30 * time.Second})
	id := s.sendOK("a", simple("slow@example.org"))
	s.waitStatus("a", id, v1.MessageStatus_SENDING)
	require.Eventually(t, func() bool { return s.sink.ActiveConnections() > 0 }, 10*time.Second, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // inside MAIL FROM

	resp, err := s.account.DeleteAccountData(s.ctx("a"), &v1.DeleteAccountDataRequest{ConfirmAccountId: acc})
	require.NoError(t, err)
	returned := time.Now()

	// Longer than the server's 30 s: a send that went on would be delivered by now.
	deadline := returned.Add(33 * time.Second)
	for time.Now().Before(deadline) {
		require.Zero(t, s.sink.Count(), "a message was delivered after DeleteAccountData returned")
		time.Sleep(250 * time.Millisecond)
	}
	require.Eventually(t, func() bool {
		var swept bool
		err := s.db.Pool.QueryRow(t.Context(), `SELECT swept_at IS NOT NULL FROM account_deletions WHERE id = $1`, resp.GetAuditId()).Scan(&swept)
		return err == nil && swept
	}, 20*time.Second, 100*time.Millisecond, "the final sweep ran")
	requireAccountGone(t, s, acc, id)
	var n int64
	require.NoError(t, s.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM account_states WHERE account = $1`, acc).Scan(&n))
	require.Zero(t, n, "the deleted tombstone is removed by the final sweep")
	states, err := s.js.KeyValue(t.Context(), queue.AccountStatesBucket)
	require.NoError(t, err)
	_, err = states.Get(t.Context(), acc)
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound)
	require.Zero(t, s.sink.Count())
}

// TestSuspendHoldsMailAndResumeSendsIt: while an account is suspended its
// sends are refused with FAILED_PRECONDITION, its queued mail is not
// delivered (held, not lost), reads work; after resume the held mail is
// delivered exactly once.
func TestSuspendHoldsMailAndResumeSendsIt(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	acc := s.accounts["a"].AccountID
	req := simple("held@example.org")
	req.SendAt = timestamppb.New(time.Now().Add(2 * time.Second))
	id := s.sendOK("a", req)

	_, err := s.operator.SuspendAccount(s.opCtx(), &operatorv1.SuspendAccountRequest{AccountId: acc, Reason: "spam complaints"})
	require.NoError(t, err)
	_, err = s.send.SendEmail(s.ctx("a"), simple("refused@example.org"))
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "%v", err)
	require.Contains(t, status.Convert(err).Message(), "suspended")
	_, err = s.send.SendBatch(s.ctx("a"), &v1.SendBatchRequest{Messages: []*v1.SendEmailRequest{simple("refused@example.org")}})
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "%v", err)

	time.Sleep(5 * time.Second) // the job is due and on the stream meanwhile
	require.Zero(t, s.sink.Count(), "held mail was delivered")
	got, err := s.report.GetMessage(s.ctx("a"), &v1.GetMessageRequest{MessageId: id})
	require.NoError(t, err, "reads work while suspended")
	require.False(t, got.GetMessage().GetStatus() == v1.MessageStatus_SENT)
	_, err = s.account.ListProviders(s.ctx("a"), &v1.ListProvidersRequest{})
	require.NoError(t, err)
	// Another account is not held.
	s.waitStatus("b", s.sendOK("b", simple("other@example.org")), v1.MessageStatus_SENT)
	require.Equal(t, 1, s.sink.Count())

	_, err = s.operator.ResumeAccount(s.opCtx(), &operatorv1.ResumeAccountRequest{AccountId: acc, Reason: "cleared"})
	require.NoError(t, err)
	s.waitStatus("a", id, v1.MessageStatus_SENT)
	time.Sleep(2 * time.Second)
	n := 0
	for _, m := range s.sink.Messages() {
		if len(m.To) > 0 && m.To[0] == "held@example.org" {
			n++
		}
	}
	require.Equal(t, 1, n, "the held message is delivered exactly once")
	s.sendOK("a", simple("after@example.org"))
}

// TestTerminateAccountRefusesItsTokens: terminating an account deletes its
// data and a valid token of that account id is refused afterwards (no
// re-provisioning), as are its API keys.
func TestTerminateAccountRefusesItsTokens(t *testing.T) {
	t.Parallel()
	iss := jwttest.New(t)
	s := newStack(t, stackOptions{jwt: iss})
	acc := uuid.NewString()
	token := iss.Sign(t, "rsa-1", iss.Claims(acc, "send read admin"))
	key, err := s.account.CreateApiKey(withKey(t, token), &v1.CreateApiKeyRequest{Name: "k"})
	require.NoError(t, err, "the token provisions the account")

	resp, err := s.operator.TerminateAccount(s.opCtx(), &operatorv1.TerminateAccountRequest{AccountId: acc, ConfirmAccountId: acc, Reason: "fraud"})
	require.NoError(t, err)
	require.Equal(t, "terminated", resp.GetState().GetState())
	require.EqualValues(t, 1, resp.GetRowsDeleted()["accounts"])

	_, err = s.account.ListApiKeys(withKey(t, iss.Sign(t, "rsa-1", iss.Claims(acc, "send read admin"))), &v1.ListApiKeysRequest{})
	// UNAUTHENTICATED where the token is checked against the database (no
	// re-provisioning), PERMISSION_DENIED where this replica still knows the
	// account from the last minute (the state gate refuses it).
	require.Contains(t, []codes.Code{codes.Unauthenticated, codes.PermissionDenied}, status.Code(err), "a terminated account's token: %v", err)
	_, err = s.account.ListApiKeys(withKey(t, key.GetSecret()), &v1.ListApiKeysRequest{})
	require.Equal(t, codes.Unauthenticated, status.Code(err), "a terminated account's key: %v", err)
	var n int64
	require.NoError(t, s.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM accounts WHERE id = $1`, acc).Scan(&n))
	require.Zero(t, n, "not provisioned again")
	st, err := s.operator.GetAccountState(s.opCtx(), &operatorv1.GetAccountStateRequest{AccountId: acc})
	require.NoError(t, err)
	require.Equal(t, "terminated", st.GetState().GetState())
	require.Equal(t, "operator:e2e", st.GetState().GetActor())
}

// TestOperatorActionsAudited: every operator action is in the audit with
// its actor, action, account and reason; tenant API keys and tokens cannot
// call the operator service (every RPC of it), nor can a call without a token.
func TestOperatorActionsAudited(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	acc := s.accounts["b"].AccountID
	_, err := s.operator.SuspendAccount(s.opCtx(), &operatorv1.SuspendAccountRequest{AccountId: acc, Reason: "r1"})
	require.NoError(t, err)
	_, err = s.operator.ResumeAccount(s.opCtx(), &operatorv1.ResumeAccountRequest{AccountId: acc, Reason: "r2"})
	require.NoError(t, err)
	_, err = s.operator.TerminateAccount(s.opCtx(), &operatorv1.TerminateAccountRequest{AccountId: acc, ConfirmAccountId: acc, Reason: "r3"})
	require.NoError(t, err)
	_, err = s.operator.SuspendAccount(s.opCtx(), &operatorv1.SuspendAccountRequest{AccountId: acc})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "a reason is required")

	list, err := s.operator.ListOperatorAudit(s.opCtx(), &operatorv1.ListOperatorAuditRequest{AccountId: acc})
	require.NoError(t, err)
	var got []string
	for _, a := range list.GetActions() {
		require.Equal(t, "operator:e2e", a.GetActor())
		require.Equal(t, acc, a.GetAccountId())
		require.NotNil(t, a.GetAt())
		got = append(got, a.GetAction()+":"+a.GetReason())
	}
	require.Equal(t, []string{"terminate:r3", "resume:r2", "suspend:r1"}, got)

	tenant := s.accounts["a"].APIKey
	for _, call := range operatorCalls(s, s.accounts["a"].AccountID) {
		_, err := call.f(withKey(t, tenant))
		require.Equal(t, codes.PermissionDenied, status.Code(err), "%s with a tenant key: %v", call.name, err)
		_, err = call.f(t.Context())
		require.Equal(t, codes.Unauthenticated, status.Code(err), "%s without a token: %v", call.name, err)
	}
	st, err := s.operator.GetAccountState(s.opCtx(), &operatorv1.GetAccountStateRequest{AccountId: s.accounts["a"].AccountID})
	require.NoError(t, err)
	require.Equal(t, "active", st.GetState().GetState(), "the tenant's calls changed nothing")
}

type operatorCall struct {
	name string
	f    func(ctx context.Context) (any, error)
}

// operatorCalls has one call per RPC of the OperatorService, checked against
// its descriptor: a new RPC without a row fails the test.
func operatorCalls(s *stack, acc string) []operatorCall {
	s.t.Helper()
	o := s.operator
	calls := map[string]func(ctx context.Context) (any, error){
		"SuspendAccount": func(ctx context.Context) (any, error) {
			return o.SuspendAccount(ctx, &operatorv1.SuspendAccountRequest{AccountId: acc, Reason: "x"})
		},
		"ResumeAccount": func(ctx context.Context) (any, error) {
			return o.ResumeAccount(ctx, &operatorv1.ResumeAccountRequest{AccountId: acc, Reason: "x"})
		},
		"TerminateAccount": func(ctx context.Context) (any, error) {
			return o.TerminateAccount(ctx, &operatorv1.TerminateAccountRequest{AccountId: acc, ConfirmAccountId: acc, Reason: "x"})
		},
		"GetAccountState": func(ctx context.Context) (any, error) {
			return o.GetAccountState(ctx, &operatorv1.GetAccountStateRequest{AccountId: acc})
		},
		"ListOperatorAudit": func(ctx context.Context) (any, error) {
			return o.ListOperatorAudit(ctx, &operatorv1.ListOperatorAuditRequest{})
		},
	}
	sd := operatorv1.File_emailsender_operator_v1_operator_proto.Services().Get(0)
	var out []operatorCall
	for i := range sd.Methods().Len() {
		name := string(sd.Methods().Get(i).Name())
		f, ok := calls[name]
		require.True(s.t, ok, "OperatorService.%s has no row in operatorCalls", name)
		out = append(out, operatorCall{name: name, f: f})
	}
	require.Len(s.t, calls, len(out), "operatorCalls has a row for an RPC that does not exist")
	return out
}
