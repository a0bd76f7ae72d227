package account

import (
	"context"
	"errors"
	"maps"

	"google.golang.org/grpc/codes"

	"github.com/namirasoft/email-sender/pkg/accountstate"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest/erase"
)

// Eraser deletes an account's data (an *erase.Eraser).
type Eraser interface {
	Erase(ctx context.Context, accountID string, tomb accountstate.Entry, mustExist bool) (erase.Result, error)
}

// DeleteAccountData removes the caller's account (package erase): the
// tombstone first, applied by every replica when it returns (workers cancel
// the account's sends in flight and send nothing more for it, the report
// drops its late events), then its rows in chunks, its API keys announced as
// revoked, its jobs, events and attempt records purged; a final sweep, after
// the longest send, runs as durable work of ingest and records in the audit
// row what it found. The answer gives the counts of the first pass.
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
	res, err := s.d.Eraser.Erase(ctx, p.AccountID, accountstate.Entry{
		State: accountstate.Deleted, Reason: "DeleteAccountData", Actor: "tenant", ChangedAt: s.now(),
	}, true)
	if errors.Is(err, erase.ErrNotFound) {
		return nil, fieldErr(codes.NotFound, "confirm_account_id", "the account no longer exists")
	}
	if err != nil {
		return nil, internal(ctx, s.log, "delete account", err)
	}
	// Its bounce domain went with its rows.
	s.announceBounceDomains(ctx)
	return &emailsenderv1.DeleteAccountDataResponse{RowsDeleted: maps.Clone(res.Rows), StreamMessagesPurged: maps.Clone(res.Purged), AuditId: res.AuditID}, nil
}
