package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
)

// Messages reads the status of messages.
type Messages struct {
	pool *pgxpool.Pool

	// checks waiting for the next query of Check (mu); checking is set while
	// a goroutine runs them.
	mu       sync.Mutex
	checks   []*check
	checking bool
}

// NewMessages reads from pool.
func NewMessages(pool *pgxpool.Pool) *Messages { return &Messages{pool: pool} }

// Canceled reports whether the message was canceled (CancelScheduled).
// A message that no longer exists (its account's data was deleted) counts as
// canceled: there is nobody left to send it for.
func (m *Messages) Canceled(ctx context.Context, accountID, messageID string) (bool, error) {
	var st int16
	err := m.pool.QueryRow(ctx, `SELECT status FROM messages WHERE id = $1 AND account_id = $2`, messageID, accountID).Scan(&st)
	if errors.Is(err, pgx.ErrNoRows) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("read status of message %s: %w", messageID, err)
	}
	return msgstatus.Status(st) == msgstatus.Canceled, nil
}

// Stored is what the database says of a job's message, for Check.
type Stored int

const (
	// StoredOK: the message exists, belongs to the job's account, and the
	// job's provider configuration belongs to that account too.
	StoredOK Stored = iota
	// StoredMissing: no such message (its account's data was deleted, or the
	// job names a message that never was stored).
	StoredMissing
	// StoredOtherAccount: the message belongs to another account than the job says.
	StoredOtherAccount
	// StoredForeignConfig: the job's provider configuration does not belong
	// to the message's account (or no longer exists).
	StoredForeignConfig
)

func (s Stored) String() string {
	switch s {
	case StoredOK:
		return "ok"
	case StoredMissing:
		return "message not stored"
	case StoredOtherAccount:
		return "message belongs to another account"
	case StoredForeignConfig:
		return "provider configuration does not belong to the message's account"
	}
	return "unknown"
}

// maxChecks bounds the jobs compared in one query.
const maxChecks = 256

// checkTimeout bounds one query of Check (it serves several deliveries, so
// it has no caller's context).
const checkTimeout = 10 * time.Second

// check is one job waiting for Check's query.
type check struct {
	accountID, messageID, providerID string
	recipients                       []string
	done                             chan checkResult
}

type checkResult struct {
	stored     Stored
	suppressed []string
	err        error
}

// Check compares a job with its stored message: the message must exist under
// the job's account, and the job's provider configuration must belong to
// that account. The same query returns which of recipients (lower-cased
// addresses) the account suppresses: nothing is sent to them, they are
// marked SUPPRESSED. The jobs of concurrent calls are compared in one query (the
// deliveries of a fetch start together): a call waits while a query runs and
// goes in the next one with every call that came meanwhile, so a busy worker
// sends one statement per batch of deliveries instead of one per message.
func (m *Messages) Check(ctx context.Context, accountID, messageID, providerID string, recipients []string) (Stored, []string, error) {
	id, err := uuid.Parse(messageID)
	if err != nil {
		return StoredMissing, nil, nil // never a stored message's id
	}
	if ctx.Err() != nil {
		return 0, nil, fmt.Errorf("check message %s against its job: %w", messageID, context.Cause(ctx))
	}
	// The canonical form: no job's spelling of an id can fail the query
	// that other jobs share.
	c := &check{accountID: accountID, messageID: id.String(), providerID: providerID, recipients: recipients, done: make(chan checkResult, 1)}
	m.mu.Lock()
	m.checks = append(m.checks, c)
	if !m.checking {
		m.checking = true
		go m.runChecks()
	}
	m.mu.Unlock()
	select {
	case r := <-c.done:
		return r.stored, r.suppressed, r.err
	case <-ctx.Done():
		return 0, nil, fmt.Errorf("check message %s against its job: %w", messageID, context.Cause(ctx))
	}
}

// runChecks runs the waiting checks, a query at a time, until none is left.
func (m *Messages) runChecks() {
	for {
		m.mu.Lock()
		batch := m.checks[:min(len(m.checks), maxChecks)]
		m.checks = m.checks[len(batch):]
		if len(batch) == 0 {
			m.checks, m.checking = nil, false
			m.mu.Unlock()
			return
		}
		m.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), checkTimeout)
		results, err := m.checkAll(ctx, batch)
		cancel()
		for i, c := range batch {
			if err != nil {
				c.done <- checkResult{err: fmt.Errorf("check message %s against its job: %w", c.messageID, err)}
			} else {
				c.done <- checkResult{stored: results[i].stored, suppressed: results[i].suppressed}
			}
		}
	}
}

// checkAll compares the jobs of batch with their stored messages in one query.
func (m *Messages) checkAll(ctx context.Context, batch []*check) ([]checkResult, error) {
	ids, accounts, configs := make([]string, len(batch)), make([]string, len(batch)), make([]string, len(batch))
	var (
		rcptOrds  []int32
		rcptAddrs []string
	)
	for i, c := range batch {
		ids[i], accounts[i], configs[i] = c.messageID, c.accountID, c.providerID
		for _, r := range c.recipients {
			rcptOrds, rcptAddrs = append(rcptOrds, int32(i+1)), append(rcptAddrs, r)
		}
	}
	// Messages by their primary key (= ANY); a job whose message is not
	// stored has no row.
	rows, err := m.pool.Query(ctx, `
		SELECT u.ord::int, m.account_id::text = u.account_id,
			EXISTS (SELECT 1 FROM provider_configs pc WHERE pc.account_id = m.account_id AND pc.id::text = u.provider_id),
			ARRAY(SELECT s.address FROM unnest($4::integer[], $5::text[]) AS r(ord, address)
				JOIN suppressions s ON s.account_id = m.account_id AND s.address = r.address
				WHERE r.ord = u.ord)
		FROM unnest($1::text[]::uuid[], $2::text[], $3::text[]) WITH ORDINALITY AS u(id, account_id, provider_id, ord)
		JOIN messages m ON m.id = u.id AND m.id = ANY($1::text[]::uuid[])`, ids, accounts, configs, rcptOrds, rcptAddrs)
	if err != nil {
		return nil, err
	}
	out := make([]checkResult, len(batch))
	for i := range out {
		out[i].stored = StoredMissing
	}
	var (
		ord                   int32
		sameAccount, configOK bool
		suppressed            []string
	)
	_, err = pgx.ForEachRow(rows, []any{&ord, &sameAccount, &configOK, &suppressed}, func() error {
		switch {
		case !sameAccount:
			out[ord-1].stored = StoredOtherAccount
		case !configOK:
			out[ord-1].stored = StoredForeignConfig
		default:
			out[ord-1] = checkResult{stored: StoredOK, suppressed: suppressed}
		}
		suppressed = nil
		return nil
	})
	return out, err
}
