// Package operator is the operator's control over accounts: suspend, resume,
// terminate, their state and the audit of every action. The same Go
// functions (Controls) serve the OperatorService (its own listener,
// operator tokens; server.go) and the `ingest operator ...` command.
package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/namirasoft/email-sender/pkg/accountstate"
	"github.com/namirasoft/email-sender/services/ingest/erase"
)

// Actions, as audited.
const (
	ActionSuspend   = "suspend"
	ActionResume    = "resume"
	ActionTerminate = "terminate"
)

// ErrInvalid is a request the controls refuse (a field is wrong); ErrState
// an action the account's state does not allow.
var (
	ErrInvalid = errors.New("invalid request")
	ErrState   = errors.New("not allowed in the account's state")
)

// Eraser deletes an account's data (an *erase.Eraser).
type Eraser interface {
	Erase(ctx context.Context, accountID string, tomb accountstate.Entry, mustExist bool) (erase.Result, error)
}

// Controls are the operator's actions.
type Controls struct {
	pool   *pgxpool.Pool
	states *accountstate.Store
	eraser Eraser
	now    func() time.Time
}

// New returns the controls.
func New(pool *pgxpool.Pool, states *accountstate.Store, eraser Eraser) *Controls {
	return &Controls{pool: pool, states: states, eraser: eraser, now: time.Now}
}

// Outcome is what an action did.
type Outcome struct {
	State   accountstate.Entry
	AuditID string
	// Erased, for terminate.
	Erased erase.Result
}

// Action is one audited operator action.
type Action struct {
	ID, Actor, Action, Account, Reason, Detail string
	At                                         time.Time
}

func check(actor, account, reason string) error {
	if strings.TrimSpace(actor) == "" {
		return fmt.Errorf("%w: actor: is required", ErrInvalid)
	}
	if _, err := uuid.Parse(account); err != nil {
		return fmt.Errorf("%w: account_id: must be an account id (UUID)", ErrInvalid)
	}
	if strings.TrimSpace(reason) == "" {
		return fmt.Errorf("%w: reason: is required (it is audited)", ErrInvalid)
	}
	return nil
}

// Suspend refuses the account's sends and holds its queued mail.
func (c *Controls) Suspend(ctx context.Context, actor, account, reason string) (Outcome, error) {
	if err := check(actor, account, reason); err != nil {
		return Outcome{}, err
	}
	cur, err := accountstate.Lookup(ctx, c.pool, account)
	if err != nil {
		return Outcome{}, err
	}
	if cur.State.Tombstone() {
		return Outcome{}, fmt.Errorf("%w: the account is %s", ErrState, cur.State)
	}
	return c.set(ctx, ActionSuspend, accountstate.Entry{Account: account, State: accountstate.Suspended, Reason: reason, Actor: actor}, nil)
}

// Resume lifts a suspension; held mail goes out.
func (c *Controls) Resume(ctx context.Context, actor, account, reason string) (Outcome, error) {
	if err := check(actor, account, reason); err != nil {
		return Outcome{}, err
	}
	cur, err := accountstate.Lookup(ctx, c.pool, account)
	if err != nil {
		return Outcome{}, err
	}
	if cur.State != accountstate.Suspended {
		return Outcome{}, fmt.Errorf("%w: the account is %s, not suspended", ErrState, cur.State)
	}
	return c.set(ctx, ActionResume, accountstate.Entry{Account: account, State: accountstate.Active, Reason: reason, Actor: actor}, nil)
}

// Terminate deletes the account's data and refuses the account for good.
func (c *Controls) Terminate(ctx context.Context, actor, account, reason string) (Outcome, error) {
	if err := check(actor, account, reason); err != nil {
		return Outcome{}, err
	}
	tomb := accountstate.Entry{Account: account, State: accountstate.Terminated, Reason: reason, Actor: actor, ChangedAt: c.now()}
	res, err := c.eraser.Erase(ctx, account, tomb, false)
	if err != nil {
		return Outcome{}, fmt.Errorf("terminate account: %w", err)
	}
	st, err := accountstate.Lookup(ctx, c.pool, account)
	if err != nil {
		return Outcome{}, err
	}
	detail := map[string]any{"existed": res.Existed, "deletion_audit_id": res.AuditID, "rows_deleted": res.Rows, "stream_messages_purged": res.Purged}
	id, err := c.audit(ctx, actor, ActionTerminate, account, reason, detail)
	if err != nil {
		return Outcome{}, err
	}
	return Outcome{State: st, AuditID: id, Erased: res}, nil
}

func (c *Controls) set(ctx context.Context, action string, e accountstate.Entry, detail map[string]any) (Outcome, error) {
	e.ChangedAt = c.now()
	e, err := c.states.Set(ctx, e)
	if err != nil {
		if _, lerr := accountstate.Lookup(ctx, c.pool, e.Account); lerr != nil || e.Version == 0 {
			return Outcome{}, err
		}
		// Stored, not confirmed by every replica (they read PostgreSQL): the
		// audit says so.
		if detail == nil {
			detail = map[string]any{}
		}
		detail["unconfirmed"] = err.Error()
	}
	id, aerr := c.audit(ctx, e.Actor, action, e.Account, e.Reason, detail)
	if aerr != nil {
		return Outcome{}, aerr
	}
	return Outcome{State: e, AuditID: id}, nil
}

// audit records an action.
func (c *Controls) audit(ctx context.Context, actor, action, account, reason string, detail map[string]any) (string, error) {
	if detail == nil {
		detail = map[string]any{}
	}
	b, err := json.Marshal(detail)
	if err != nil {
		return "", err
	}
	id := uuid.NewString()
	_, err = c.pool.Exec(ctx, `INSERT INTO operator_audit (id, at, actor, action, account, reason, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		id, c.now(), actor, action, account, reason, string(b))
	if err != nil {
		return "", fmt.Errorf("audit operator action: %w", err)
	}
	return id, nil
}

// State returns the account's state.
func (c *Controls) State(ctx context.Context, account string) (accountstate.Entry, error) {
	if _, err := uuid.Parse(account); err != nil {
		return accountstate.Entry{}, fmt.Errorf("%w: account_id: must be an account id (UUID)", ErrInvalid)
	}
	return accountstate.Lookup(ctx, c.pool, account)
}

// Audit lists operator actions, newest first; account "" lists all.
func (c *Controls) Audit(ctx context.Context, account string, limit int) ([]Action, error) {
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	if account != "" {
		if _, err := uuid.Parse(account); err != nil {
			return nil, fmt.Errorf("%w: account_id: must be an account id (UUID)", ErrInvalid)
		}
	}
	rows, err := c.pool.Query(ctx, `
		SELECT id::text, at, actor, action, account::text, reason, detail::text FROM operator_audit
		WHERE $1 = '' OR account::text = $1 ORDER BY at DESC, id LIMIT $2`, account, limit)
	if err != nil {
		return nil, fmt.Errorf("read operator audit: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Action, error) {
		var a Action
		return a, r.Scan(&a.ID, &a.At, &a.Actor, &a.Action, &a.Account, &a.Reason, &a.Detail)
	})
	if err != nil {
		return nil, fmt.Errorf("read operator audit: %w", err)
	}
	return out, nil
}
