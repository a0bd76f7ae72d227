// Package store is ingest's PostgreSQL data layer: accepting messages (message,
// content, recipients, outbox and idempotency rows in one round trip), canceling
// scheduled messages, resolving provider configurations and the outbox relay's
// queries. SQL is hand-written for pgx; every query takes a DBTX so it runs on a
// pool or inside a transaction, and every query is scoped by account_id.
package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
)

// DBTX is what a query needs: a pool, a connection or a transaction.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Beginner starts transactions (a pool; a transaction starts a savepoint).
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// ErrNotFound means no such row in the caller's account.
var ErrNotFound = errors.New("not found")

// ErrIdempotencyMismatch means an idempotency key was reused, within its 24
// hours, for a different request.
var ErrIdempotencyMismatch = errors.New("idempotency key was already used for a different request")

// ErrNoDefaultProvider means the request names no provider and the account has
// no default one.
var ErrNoDefaultProvider = errors.New("no provider_id given and the account has no default provider configuration")

// UnknownProviderError means the provider configuration does not exist in the
// caller's account (it may exist in another).
type UnknownProviderError struct{ ID string }

func (e *UnknownProviderError) Error() string {
	return fmt.Sprintf("no provider configuration %q in this account", e.ID)
}

// PausedProviderError means the reputation guard paused the provider
// configuration (pkg/reputation): its sends are refused until the owner
// resumes it. Reason gives its rates.
type PausedProviderError struct{ ID, Reason string }

func (e *PausedProviderError) Error() string {
	return fmt.Sprintf("provider configuration %s is paused (%s); queued mail is held; resume it with AccountService.ResumeProvider", e.ID, e.Reason)
}

// UnhealthyProviderError means the provider configuration's credentials were
// refused; it must be fixed before it is used again.
type UnhealthyProviderError struct{ ID string }

func (e *UnhealthyProviderError) Error() string {
	return fmt.Sprintf("provider configuration %q is marked unhealthy (its credentials were refused); update or verify it first", e.ID)
}

// NotCancelableError means the message is no longer SCHEDULED.
type NotCancelableError struct{ Status msgstatus.Status }

func (e *NotCancelableError) Error() string {
	return fmt.Sprintf("message is %s, only a SCHEDULED message can be canceled", e.Status)
}

// withTx runs fn in a transaction, committing when fn returns nil.
func withTx(ctx context.Context, db Beginner, fn func(tx pgx.Tx) error) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
