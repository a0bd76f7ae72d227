package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/queue"
)

// Recipient is one envelope recipient of a new message.
type Recipient struct {
	Kind    string // to, cc, bcc
	Address string // lower-cased
	Name    string
}

// NewMessage is a validated message to store.
type NewMessage struct {
	ID           string
	AccountID    string
	ProviderID   string
	ProviderKind string
	// Status is QUEUED or SCHEDULED.
	Status      msgstatus.Status
	FromAddress string
	FromName    string
	Subject     string
	Tags        map[string]string
	Recipients  []Recipient
	// Content is the encoded SendJob, published as is.
	Content []byte
	// SendAt is zero for immediate messages.
	SendAt time.Time
	// NATSSubject is the send subject of the job.
	NATSSubject string
	Traceparent string
	// IdempotencyKey is optional; RequestHash identifies the request under it.
	IdempotencyKey string
	RequestHash    []byte
	CreatedAt      time.Time
}

// Accepted is the outcome of one message of Accept.
type Accepted struct {
	MessageID string
	Status    msgstatus.Status
	// Replay is true when an earlier request with the same idempotency key is
	// answered; nothing was stored.
	Replay bool
	// Err is ErrIdempotencyMismatch for that message only.
	Err error
}

// Accept stores msgs in one transaction: for each, the idempotency key (if
// any), the message, its recipients, its ACCEPTED or SCHEDULED event and its
// outbox row. A key already used (within IdempotencyTTL) answers with the
// earlier message instead; a concurrent request with the same key waits for the
// first one's commit, so exactly one message is stored.
func Accept(ctx context.Context, db Beginner, msgs []*NewMessage) ([]Accepted, error) {
	if b, ok := db.(batcher); ok && !anyKey(msgs) {
		return acceptPipelined(ctx, b, msgs)
	}
	out := make([]Accepted, len(msgs))
	err := withTx(ctx, db, func(tx pgx.Tx) error {
		if err := lockAccounts(ctx, tx, msgs); err != nil {
			return err
		}
		fresh, err := claimKeys(ctx, tx, msgs, out)
		if err != nil {
			return err
		}
		if len(fresh) == 0 {
			return nil
		}
		b := &pgx.Batch{}
		for _, i := range fresh {
			if err := queueInsert(b, msgs[i]); err != nil {
				return err
			}
			out[i] = Accepted{MessageID: msgs[i].ID, Status: msgs[i].Status}
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("insert messages: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("accept: %w", err)
	}
	return out, nil
}

// batcher sends a pgx batch (a pool or a connection).
type batcher interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

func anyKey(msgs []*NewMessage) bool {
	for _, m := range msgs {
		if m.IdempotencyKey != "" {
			return true
		}
	}
	return false
}

// acceptPipelined is Accept for messages without idempotency keys, in one
// round trip: the account lock and every insert go in one pgx batch, which
// PostgreSQL runs as one implicit transaction (a single Sync), instead of
// BEGIN, the lock, the inserts and COMMIT one after the other. When an
// account is gone the lock statement fails (division by zero), which aborts
// the whole batch: nothing is stored, as with lockAccounts.
func acceptPipelined(ctx context.Context, db batcher, msgs []*NewMessage) ([]Accepted, error) {
	ids := accountIDs(msgs)
	b := &pgx.Batch{}
	b.Queue(lockAccountsSQL, ids)
	b.Queue(`SELECT 1 / (count(*) / $2)::int FROM accounts WHERE id = ANY($1::uuid[])`, ids, len(ids))
	out := make([]Accepted, len(msgs))
	for i, m := range msgs {
		if err := queueInsert(b, m); err != nil {
			return nil, fmt.Errorf("accept: %w", err)
		}
		out[i] = Accepted{MessageID: m.ID, Status: m.Status}
	}
	if err := db.SendBatch(ctx, b).Close(); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "22012" { // division_by_zero
			return nil, fmt.Errorf("accept: %w", ErrAccountGone)
		}
		return nil, fmt.Errorf("accept: insert messages: %w", err)
	}
	return out, nil
}

// lockAccountsSQL takes the shared advisory lock of each account (in id
// order). DeleteAccount takes the same lock exclusively, so it waits for the
// accepts in flight and deletes what they stored, and an accept that starts
// after it sees the account gone: no message outlives its account's deletion.
// An advisory lock lives in the lock manager only; a row lock (FOR KEY SHARE)
// would write the shared accounts row for every call, which under concurrency
// is a MultiXact per caller.
const lockAccountsSQL = `SELECT pg_advisory_xact_lock_shared(hashtextextended(a, 7261))
	FROM unnest($1::text[]) AS a ORDER BY a`

// lockAccounts takes the accounts' shared locks (lockAccountsSQL) and checks
// that they exist: ErrAccountGone otherwise.
func lockAccounts(ctx context.Context, tx pgx.Tx, msgs []*NewMessage) error {
	ids := accountIDs(msgs)
	if _, err := tx.Exec(ctx, lockAccountsSQL, ids); err != nil {
		return fmt.Errorf("lock accounts: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT id FROM accounts WHERE id = ANY($1::uuid[])`, ids)
	if err != nil {
		return fmt.Errorf("lock accounts: %w", err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[[16]byte])
	if err != nil {
		return fmt.Errorf("lock accounts: %w", err)
	}
	if len(found) != len(ids) {
		return ErrAccountGone
	}
	return nil
}

// claimKeys records the idempotency keys of msgs and returns the indexes of the
// messages to insert; replays and mismatches are written to out.
func claimKeys(ctx context.Context, tx pgx.Tx, msgs []*NewMessage, out []Accepted) ([]int, error) {
	var keyed, fresh []int
	for i, m := range msgs {
		if m.IdempotencyKey == "" {
			fresh = append(fresh, i)
		} else {
			keyed = append(keyed, i)
		}
	}
	if len(keyed) == 0 {
		return fresh, nil
	}
	// A fixed order, so that two batches sharing keys cannot deadlock.
	sort.SliceStable(keyed, func(a, b int) bool {
		ma, mb := msgs[keyed[a]], msgs[keyed[b]]
		if ma.AccountID != mb.AccountID {
			return ma.AccountID < mb.AccountID
		}
		return ma.IdempotencyKey < mb.IdempotencyKey
	})
	b := &pgx.Batch{}
	for _, i := range keyed {
		m := msgs[i]
		// A key older than the TTL counts as new (idempotency.go).
		b.Queue(lockKeySQL, m.AccountID, m.IdempotencyKey)
		b.Queue(claimKeySQL,
			m.AccountID, m.IdempotencyKey, m.RequestHash, m.ID, int16(m.Status), m.CreatedAt, m.CreatedAt.Add(-IdempotencyTTL))
	}
	claimed := make([]bool, len(keyed))
	br := tx.SendBatch(ctx, b)
	for j := range keyed {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return nil, fmt.Errorf("lock idempotency key: %w", err)
		}
		var ok bool
		err := br.QueryRow().Scan(&ok)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			_ = br.Close()
			return nil, fmt.Errorf("claim idempotency key: %w", err)
		default:
			claimed[j] = true
		}
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("claim idempotency keys: %w", err)
	}
	for j, i := range keyed {
		if claimed[j] {
			fresh = append(fresh, i)
			continue
		}
		// The key is taken and live: answer as the first request did. The row
		// is committed (or written by this transaction), and the key's lock
		// is held.
		m := msgs[i]
		var (
			hash   []byte
			id     string
			status int16
		)
		err := tx.QueryRow(ctx, liveKeySQL, m.AccountID, m.IdempotencyKey, m.CreatedAt.Add(-IdempotencyTTL)).Scan(&hash, &id, &status)
		if err != nil {
			return nil, fmt.Errorf("read idempotency key: %w", err)
		}
		if !bytes.Equal(hash, m.RequestHash) {
			out[i] = Accepted{Err: ErrIdempotencyMismatch}
			continue
		}
		out[i] = Accepted{MessageID: id, Status: msgstatus.Status(status), Replay: true}
	}
	sort.Ints(fresh)
	return fresh, nil
}

// queueInsert adds the statements that store m to b.
func queueInsert(b *pgx.Batch, m *NewMessage) error {
	tags := []byte("{}")
	if len(m.Tags) > 0 {
		var err error
		if tags, err = json.Marshal(m.Tags); err != nil {
			return fmt.Errorf("encode tags: %w", err)
		}
	}
	sendAt := pgtype.Timestamptz{Time: m.SendAt, Valid: !m.SendAt.IsZero()}
	status := int16(m.Status)
	b.Queue(`
		INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, from_name,
			subject, tags, recipient_count, size_bytes, send_at, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)`,
		m.ID, m.AccountID, m.ProviderID, m.ProviderKind, status, m.FromAddress, m.FromName,
		m.Subject, string(tags), len(m.Recipients), len(m.Content), sendAt, m.CreatedAt)
	b.Queue(insertContentSQL, m.ID, m.AccountID, m.Content)

	idx := make([]int16, len(m.Recipients))
	kinds := make([]string, len(m.Recipients))
	addrs := make([]string, len(m.Recipients))
	names := make([]string, len(m.Recipients))
	for i, r := range m.Recipients {
		idx[i], kinds[i], addrs[i], names[i] = int16(i), r.Kind, r.Address, r.Name
	}
	b.Queue(`
		INSERT INTO recipients (message_id, idx, account_id, kind, address, name, status, status_key, updated_at)
		SELECT $1, r.idx, $2, r.kind, r.address, r.name, $7, $8, $9
		FROM unnest($3::smallint[], $4::text[], $5::text[], $6::text[]) AS r(idx, kind, address, name)`,
		m.ID, m.AccountID, idx, kinds, addrs, names, status, msgstatus.Key(m.Status, 0), m.CreatedAt)

	typ := queue.EventAccepted
	if m.Status == msgstatus.Scheduled {
		typ = queue.EventScheduled
	}
	b.Queue(`
		INSERT INTO events (id, message_id, account_id, type, status, occurred_at, attempt)
		VALUES ($1, $2, $3, $4, $5, $6, 0)`,
		queue.EventID(m.ID, 0, typ, ""), m.ID, m.AccountID, typ, status, m.CreatedAt)

	// not_before comes from the database clock, as the relay compares it with it.
	b.Queue(`
		INSERT INTO outbox (message_id, account_id, subject, not_before, traceparent)
		VALUES ($1, $2, $3, COALESCE($4, now()), $5)`,
		m.ID, m.AccountID, m.NATSSubject, sendAt, m.Traceparent)
	return nil
}

// accountIDs lists the distinct accounts of msgs.
func accountIDs(msgs []*NewMessage) []string {
	seen := map[string]bool{}
	var ids []string
	for _, m := range msgs {
		if !seen[m.AccountID] {
			seen[m.AccountID] = true
			ids = append(ids, m.AccountID)
		}
	}
	return ids
}
