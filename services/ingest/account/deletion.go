package account

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
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
//     bucket, and the tables are swept once more (usage records of calls that
//     were running); the answer and the audit record give these counts.
//  4. After PurgeSettle, in the background (the call does not wait for it),
//     the purge and the sweep are done again, to catch what calls and
//     deliveries under way published meanwhile; the audit record's counts
//     then include what that pass removed. A job a worker already holds fails
//     when it finds no provider configuration, and the report drops events of
//     unknown messages, so nothing is written back. Drain runs pending passes
//     at once when the service stops.
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
	if err := store.SweepAccount(ctx, s.d.DB, p.AccountID, d.Rows); err != nil {
		return nil, internal(ctx, s.log, "sweep account", err)
	}
	if err := store.FinishDeletion(ctx, s.d.DB, auditID, d.Rows, purged, s.now()); err != nil {
		return nil, internal(ctx, s.log, "record account deletion", err)
	}
	s.log.InfoContext(ctx, "account data purged from jetstream", "account_id", p.AccountID, "audit_id", auditID, "purged", purged)
	resp := &emailsenderv1.DeleteAccountDataResponse{RowsDeleted: maps.Clone(d.Rows), StreamMessagesPurged: maps.Clone(purged), AuditId: auditID}
	if s.cfg.PurgeSettle > 0 {
		s.settle.start(func(ctx context.Context) { s.settlePass(ctx, p.AccountID, auditID, d, purged) }, s.cfg.PurgeSettle)
	}
	return resp, nil
}

// settlePass purges and sweeps the deleted account once more, and records in
// its audit row what this found.
func (s *Server) settlePass(ctx context.Context, accountID, auditID string, d store.Deletion, purged map[string]int64) {
	rows, before := sum(d.Rows), sum(purged)
	if err := s.purge(ctx, accountID, d.MessageIDs, purged); err != nil {
		s.log.WarnContext(ctx, "second purge of a deleted account", "audit_id", auditID, "error", err)
	}
	if err := store.SweepAccount(ctx, s.d.DB, accountID, d.Rows); err != nil {
		s.log.WarnContext(ctx, "second sweep of a deleted account", "audit_id", auditID, "error", err)
	}
	if sum(d.Rows) == rows && sum(purged) == before {
		return // nothing new: the audit record stands
	}
	if err := store.FinishDeletion(ctx, s.d.DB, auditID, d.Rows, purged, s.now()); err != nil {
		s.log.WarnContext(ctx, "record the second pass of an account deletion", "audit_id", auditID, "error", err)
		return
	}
	s.log.InfoContext(ctx, "deleted account purged again", "audit_id", auditID, "purged", purged, "rows", d.Rows)
}

func sum(m map[string]int64) (n int64) {
	for _, v := range m {
		n += v
	}
	return n
}

// settler runs deletions' settle passes after their delay, in the background;
// drain runs the pending ones at once and waits for them.
type settler struct {
	mu       sync.Mutex
	wg       sync.WaitGroup
	stopping chan struct{}
	stopped  bool
}

func (t *settler) start(pass func(context.Context), after time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopping == nil {
		t.stopping = make(chan struct{})
	}
	stopping, stopped := t.stopping, t.stopped
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		if !stopped {
			timer := time.NewTimer(after)
			select {
			case <-timer.C:
			case <-stopping:
				timer.Stop()
			}
		}
		// Bounded like a call: a pass must not hang on a lost connection.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		pass(ctx)
	}()
}

// drain makes pending passes run now and waits for them until ctx ends.
func (t *settler) drain(ctx context.Context) error {
	t.mu.Lock()
	if !t.stopped {
		t.stopped = true
		if t.stopping != nil {
			close(t.stopping)
		}
	}
	t.mu.Unlock()
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("account deletions' second pass: %w", ctx.Err())
	}
}

// Drain runs the pending second passes of account deletions at once and waits
// for them (until ctx ends); call it when the service stops, after the gRPC
// server has.
func (s *Server) Drain(ctx context.Context) error { return s.settle.drain(ctx) }

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
