package partition

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// NewMessageID returns a new message id: a UUIDv7 (RFC 9562) whose 48-bit
// timestamp is t's Unix millisecond, with 74 random bits. Ingest makes a
// message's id from the same instant as its created_at, so the id names the
// partition the message's rows live in and agrees with created_at.
func NewMessageID(t time.Time) (uuid.UUID, error) {
	var u uuid.UUID
	if _, err := rand.Read(u[6:]); err != nil {
		return uuid.UUID{}, fmt.Errorf("message id: %w", err)
	}
	putMillis(&u, t)
	u[6] = 0x70 | u[6]&0x0f // version 7
	u[8] = 0x80 | u[8]&0x3f // variant RFC 9562
	return u, nil
}

// IDBound is the smallest UUIDv7 of t's millisecond (every bit after the
// timestamp zero): an id made at t or later is at least IDBound(t), one made
// earlier is below it. Partition bounds of the id-keyed tables are IDBound
// of the boundary.
func IDBound(t time.Time) uuid.UUID {
	var u uuid.UUID
	putMillis(&u, t)
	return u
}

// IDTime is the time a UUIDv7 carries (its millisecond); for another UUID
// version it is meaningless.
func IDTime(id uuid.UUID) time.Time {
	var b [8]byte
	copy(b[2:], id[:6])
	return time.UnixMilli(int64(binary.BigEndian.Uint64(b[:]))).UTC()
}

// putMillis writes t's Unix millisecond (0 before 1970) as the first 48 bits of u.
func putMillis(u *uuid.UUID, t time.Time) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(max(t.UnixMilli(), 0)))
	copy(u[:6], b[2:])
}

// IDSkew bounds how far a message id's time may be from its created_at.
// Ids made by NewMessageID carry created_at itself; messages accepted
// before ingest made them so got theirs from the clock a moment after
// created_at was read (the same call, milliseconds later).
const IDSkew = time.Minute

// IDsFrom is an id at or below the id of every message created at or after
// t. A query on created_at adds "id >= IDsFrom(after)" so that PostgreSQL
// prunes the partitions before it; the result is the same.
func IDsFrom(t time.Time) uuid.UUID { return IDBound(t.Add(-IDSkew)) }

// IDsBefore is an id above the id of every message created before t (see
// IDsFrom): "id < IDsBefore(before)".
func IDsBefore(t time.Time) uuid.UUID { return IDBound(t.Add(IDSkew)) }
