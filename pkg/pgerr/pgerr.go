// Package pgerr is the one home of what a PostgreSQL error means to this
// project: an outage that a retry may outlast (Unavailable), data the
// database refuses so that no retry can succeed (Refused), and the few
// SQLSTATEs a caller branches on (Is with the codes below). pkg/apierr turns
// Unavailable into UNAVAILABLE for API callers; the consumers that retry work
// use both.
package pgerr

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// SQLSTATEs a caller branches on.
const (
	// UniqueViolation: a row with the same unique key exists.
	UniqueViolation = "23505"
	// DivisionByZero is raised on purpose by a statement that finds a row
	// gone (ingest's accept: an account deleted meanwhile).
	DivisionByZero = "22012"
	// LockNotAvailable: lock_timeout expired (table maintenance postponed).
	LockNotAvailable = "55P03"
)

// Is reports whether err is a PostgreSQL error with the SQLSTATE code.
func Is(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

// Refused reports whether err is PostgreSQL refusing the data itself (a
// data exception, an integrity constraint, a program limit), as opposed to
// being unavailable: retrying the same data can never succeed.
func Refused(err error) bool {
	switch class(err) {
	case "22", // data exception
		"23", // integrity constraint violation
		"54": // program limit exceeded
		return true
	}
	return false
}

// Unavailable reports whether err is PostgreSQL unreachable, restarting or
// aborting a transaction for its own reasons: the same call may succeed
// later. Network errors below the driver are for the caller to judge (see
// pkg/apierr.Retriable, which includes these).
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) || errors.Is(err, pgconn.ErrConnClosed) {
		return true
	}
	switch class(err) {
	case "08", // connection exception
		"40", // transaction rollback: serialization failure, deadlock
		"53", // insufficient resources
		"57", // operator intervention: admin shutdown, crash shutdown, cannot connect now
		"58": // system error (I/O)
		return true
	}
	return false
}

// class is the SQLSTATE class (its first two characters) of err, or "".
func class(err error) string {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || len(pgErr.Code) < 2 {
		return ""
	}
	return pgErr.Code[:2]
}
