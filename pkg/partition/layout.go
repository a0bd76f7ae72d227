// Package partition is the one home of the layout of the time-partitioned
// tables: which tables are partitioned, by which key, how a key encodes
// time, what their partitions are named and when they expire. Its Manager
// (run by ingest) creates partitions ahead of time and drops expired ones,
// so that retention removes whole tables instead of deleting rows: no dead
// tuples, no vacuum debt.
//
// Every table is partitioned by RANGE of one key:
//
//	messages, message_contents,   the message id, a UUIDv7 whose first 48 bits are
//	recipients, events            its creation time (NewMessageID); a bound is
//	                              IDBound of the boundary. Primary keys and lookups
//	                              by message id are as before and touch one partition.
//	message_stats                 hour (GetStats' rollup: the hour its messages were
//	                              created in), dropped with the messages of its range
//	usage_records                 at
//	idempotency_keys              created_at
//
// A table's partitions are, from the bottom:
//
//	<table>_past     [MINVALUE, lowest)  empty in practice: keys older than every period kept
//	<table>_history  [MINVALUE, B0)      the rows that existed before the partitions migration
//	                                     (schema's NNNN_partitions.sql), until it expires
//	<table>_pYYYYMMDD_HHMM               one per period, named by its lower bound (UTC); the
//	                                     migration made the first, [B0, B0 + 1 day)
//	<table>_future   [highest, MAXVALUE) empty in practice: keys beyond the periods made ahead
//
// so every key has a partition and an insert never fails for want of one;
// there is no DEFAULT partition, which would keep PostgreSQL from reading
// partitions in key order (ORDER BY id DESC LIMIT n reads the newest only).
// Period boundaries are multiples of the period since 0001-01-01 UTC
// (Time.Truncate): midnight UTC for days, Mondays for weeks.
package partition

import (
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Class says which retention applies to a table.
type Class int

const (
	// Content: message bodies and attachments (RETENTION_PERIOD).
	Content Class = iota
	// Metadata: messages, recipients, events, message_stats (METADATA_RETENTION).
	Metadata
	// Usage: API usage records (USAGE_RETENTION).
	Usage
	// Idempotency: idempotency keys (24 hours).
	Idempotency
)

// Retention is how long each class is kept. A partition is dropped once
// its upper bound is older than now minus its class's retention, so a row
// is kept at least that long and at most one period more.
type Retention struct {
	Content     time.Duration
	Metadata    time.Duration
	Usage       time.Duration
	Idempotency time.Duration
}

func (r Retention) of(c Class) time.Duration {
	switch c {
	case Content:
		return r.Content
	case Metadata:
		return r.Metadata
	case Usage:
		return r.Usage
	default:
		return r.Idempotency
	}
}

func (r Retention) validate() error {
	for _, c := range []struct {
		name string
		d    time.Duration
	}{{"content", r.Content}, {"metadata", r.Metadata}, {"usage", r.Usage}, {"idempotency", r.Idempotency}} {
		if c.d <= 0 {
			return fmt.Errorf("partition: %s retention %s: want a positive duration", c.name, c.d)
		}
	}
	return nil
}

// KeyKind is the type of a partition key.
type KeyKind int

const (
	// MessageID keys are UUIDv7 message ids.
	MessageID KeyKind = iota
	// Timestamp keys are timestamptz columns.
	Timestamp
)

// Table is one partitioned table.
type Table struct {
	Name  string
	Key   string
	Kind  KeyKind
	Class Class
	// KeepWhileQueued keeps an expired partition while the outbox holds a
	// message of its range: that message's job has not reached JetStream
	// yet (a scheduled message, or NATS unreachable), and its content is
	// what the outbox relay will publish. Once a job is published nothing
	// reads the stored content: the worker has the job, and its retries,
	// redeliveries and failover republish the job they hold.
	KeepWhileQueued bool
	// Span is the time a key stands for: a row keyed k is about [k, k +
	// Span) (message_stats: the messages created in the hour k). A
	// partition expires once its highest key's span has, and is kept while
	// the outbox holds a message of that span. Zero for instants.
	Span time.Duration
}

// Layout is every partitioned table. recipients and events are dropped in
// step with messages (same keys, same class), message_stats with them (its
// hours are the messages' creation times), message_contents earlier.
func Layout() []Table {
	return []Table{
		{Name: "messages", Key: "id", Kind: MessageID, Class: Metadata, KeepWhileQueued: true},
		{Name: "recipients", Key: "message_id", Kind: MessageID, Class: Metadata, KeepWhileQueued: true},
		{Name: "events", Key: "message_id", Kind: MessageID, Class: Metadata, KeepWhileQueued: true},
		{Name: "message_contents", Key: "message_id", Kind: MessageID, Class: Content, KeepWhileQueued: true},
		// GetStats' hourly rollup: the counts of an hour's messages go with
		// the partition of messages that held them (same class, and kept
		// with it while the outbox holds a message of its range).
		{Name: "message_stats", Key: "hour", Kind: Timestamp, Class: Metadata, KeepWhileQueued: true, Span: time.Hour},
		{Name: "usage_records", Key: "at", Kind: Timestamp, Class: Usage},
		{Name: "idempotency_keys", Key: "created_at", Kind: Timestamp, Class: Idempotency},
	}
}

// The names of a table's catch-all partitions.
const (
	pastSuffix    = "_past"
	historySuffix = "_history"
	futureSuffix  = "_future"
)

// PeriodName is the name of the partition of table whose range starts at lo.
func PeriodName(table string, lo time.Time) string {
	return table + "_p" + lo.UTC().Format("20060102_1504")
}

// floor is the period boundary at or before t.
func floor(t time.Time, period time.Duration) time.Time { return t.UTC().Truncate(period) }

// bound is one end of a partition's range.
type bound struct {
	t time.Time
	// inf is -1 for MINVALUE, +1 for MAXVALUE, 0 for t.
	inf int
}

var (
	minValue = bound{inf: -1}
	maxValue = bound{inf: 1}
)

func at(t time.Time) bound { return bound{t: t.UTC()} }

// before reports whether b is below c.
func (b bound) before(c bound) bool {
	if b.inf != 0 || c.inf != 0 {
		return b.inf < c.inf
	}
	return b.t.Before(c.t)
}

func (b bound) String() string {
	switch b.inf {
	case -1:
		return "MINVALUE"
	case 1:
		return "MAXVALUE"
	}
	return b.t.Format(time.RFC3339)
}

// literal is b as a value of the table's key in SQL (a constant made here,
// never input).
func (t Table) literal(b bound) string {
	switch {
	case b.inf < 0:
		return "MINVALUE"
	case b.inf > 0:
		return "MAXVALUE"
	case t.Kind == MessageID:
		return "'" + IDBound(b.t).String() + "'::uuid"
	default:
		return "'" + b.t.UTC().Format("2006-01-02 15:04:05.999999Z07:00") + "'::timestamptz"
	}
}

// rangeSQL is the SQL condition "key in [lo, hi)".
func (t Table) rangeSQL(lo, hi bound) string {
	key := pgx.Identifier{t.Key}.Sanitize()
	switch {
	case lo.inf < 0 && hi.inf > 0:
		return "true"
	case lo.inf < 0:
		return key + " < " + t.literal(hi)
	case hi.inf > 0:
		return key + " >= " + t.literal(lo)
	}
	return key + " >= " + t.literal(lo) + " AND " + key + " < " + t.literal(hi)
}
