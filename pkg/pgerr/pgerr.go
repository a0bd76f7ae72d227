// Package pgerr classifies PostgreSQL errors for the consumers that retry
// work: an outage is retried, data the database refuses is not.
package pgerr

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// Refused reports whether err is PostgreSQL refusing the data itself (a
// data exception, an integrity constraint, a program limit), as opposed to
// being unavailable: retrying the same data can never succeed.
func Refused(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || len(pgErr.Code) < 2 {
		return false
	}
	switch pgErr.Code[:2] {
	case "22", // data exception
		"23", // integrity constraint violation
		"54": // program limit exceeded
		return true
	}
	return false
}
