package account

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"

	"github.com/namirasoft/email-sender/pkg/queue"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest/store"
)

// DeleteAccountData removes the caller's account.
//
//  1. In one transaction: every row of every table with an account_id column
//     (discovered from the catalog, so later tables are covered), then the
//     account row, and an audit row without personal data. The account row is
//     locked first; accepting a message holds a share lock on it, so nothing
//     of the account is stored after.
//  2. The account's API keys are announced as revoked to every replica.
//  3. Its jobs (send.*.<account>) and events (events.<account>.>) are purged
//     from JetStream, and its messages' attempt records from the workers' KV
//     bucket; after PurgeSettle this is done again, to catch what calls and
//     deliveries under way published meanwhile. A job a worker already holds
//     fails when it finds no provider configuration, and the report drops
//     events of unknown messages, so nothing is written back. The tables are
//     swept once more (usage records of calls that were running).
func (s *Server) DeleteAccountData(ctx context.Context, req *emailsenderv1.DeleteAccountDataRequest) (*emailsenderv1.DeleteAccountDataResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	switch req.GetConfirmAccountId() {
	case p.AccountID:
	case "":
		return nil, fieldErr(codes.InvalidArgument, "confirm_account_id", "is required: the caller's account id")
	default:
		// Another account's id (or a mistyped one): acting on another account
		// is PERMISSION_DENIED, as for every RPC (the same answer whether or not
		// that account exists).
		return nil, fieldErr(codes.PermissionDenied, "confirm_account_id", "must equal the caller's account id: a caller can delete only its own account's data")
	}
	auditID := uuid.NewString()
	d, err := store.DeleteAccount(ctx, s.d.DB, p.AccountID, auditID, s.now())
	if errors.Is(err, store.ErrNotFound) {
		return nil, fieldErr(codes.NotFound, "confirm_account_id", "the account no longer exists")
	}
	if err != nil {
		return nil, internal(ctx, s.log, "delete account", err)
	}
	// The rows are gone; finish even if the caller goes away.
	ctx = context.WithoutCancel(ctx)
	s.log.InfoContext(ctx, "account data deleted from the database", "account_id", p.AccountID, "audit_id", auditID, "rows", d.Rows)
	if err := s.d.Revoker.Revoke(ctx, d.KeyIDs...); err != nil {
		s.log.WarnContext(ctx, "announce revocation of the deleted account's keys", "account_id", p.AccountID, "error", err)
	}
	purged := map[string]int64{}
	if err := s.purge(ctx, p.AccountID, d.MessageIDs, purged); err != nil {
		return nil, internal(ctx, s.log, "purge account from jetstream", err)
	}
	if s.cfg.PurgeSettle > 0 {
		time.Sleep(s.cfg.PurgeSettle)
		if err := s.purge(ctx, p.AccountID, d.MessageIDs, purged); err != nil {
			return nil, internal(ctx, s.log, "purge account from jetstream", err)
		}
	}
	if err := store.SweepAccount(ctx, s.d.DB, p.AccountID, d.Rows); err != nil {
		return nil, internal(ctx, s.log, "sweep account", err)
	}
	if err := store.FinishDeletion(ctx, s.d.DB, auditID, d.Rows, purged, s.now()); err != nil {
		return nil, internal(ctx, s.log, "record account deletion", err)
	}
	s.log.InfoContext(ctx, "account data purged from jetstream", "account_id", p.AccountID, "audit_id", auditID, "purged", purged)
	return &emailsenderv1.DeleteAccountDataResponse{RowsDeleted: d.Rows, StreamMessagesPurged: purged, AuditId: auditID}, nil
}

// purge removes the account's messages from the streams and its attempt
// records, adding the counts to purged.
func (s *Server) purge(ctx context.Context, accountID string, messageIDs []string, purged map[string]int64) error {
	for _, sp := range []struct{ stream, filter string }{
		{queue.SendStream, queue.SendAccountFilter(accountID)},
		{queue.EventStream, queue.EventAccountFilter(accountID)},
	} {
		st, err := s.d.JetStream.Stream(ctx, sp.stream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(sp.filter))
		if err != nil {
			return err
		}
		var n uint64
		for _, c := range info.State.Subjects {
			n += c
		}
		if n > 0 {
			if err := st.Purge(ctx, jetstream.WithPurgeSubject(sp.filter)); err != nil {
				return err
			}
		}
		purged[sp.stream] += int64(n)
	}
	kv, err := s.d.JetStream.KeyValue(ctx, queue.AttemptsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var n int64
	for _, id := range messageIDs {
		if _, err := kv.Get(ctx, id); errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		} else if err != nil {
			return err
		}
		if err := kv.Purge(ctx, id); err != nil {
			return err
		}
		n++
	}
	purged["KV_"+queue.AttemptsBucket] += n
	return nil
}
