package store

import "time"

// IdempotencyTTL is how long an idempotency key is remembered. Expired keys
// are dropped with their partition (pkg/partition, class Idempotency).
const IdempotencyTTL = 24 * time.Hour

// idempotency_keys is partitioned by created_at, so its primary key
// (account_id, key, created_at) does not make a key unique by itself. A
// claim takes the key's advisory lock first (lockKeySQL, a statement of its
// own: the claim's snapshot must be taken after the lock is granted, to see
// a concurrent claim that committed meanwhile), then inserts the key unless
// it has a live row (claimKeySQL). Concurrent requests with one key thus
// store exactly one message; a key older than the TTL counts as new, and
// its old row waits for its partition to be dropped.
const (
	lockKeySQL = `SELECT pg_advisory_xact_lock(hashtextextended($1::text || '/' || $2::text, 7262))`

	// $1 account, $2 key, $3 request hash, $4 message id, $5 status,
	// $6 created_at, $7 oldest live created_at.
	claimKeySQL = `
		INSERT INTO idempotency_keys (account_id, key, request_hash, message_id, status, created_at)
		SELECT $1, $2, $3, $4, $5, $6
		WHERE NOT EXISTS (SELECT 1 FROM idempotency_keys
			WHERE account_id = $1 AND key = $2 AND created_at >= $7)
		RETURNING true`

	// liveKeySQL reads the live row of a key: $1 account, $2 key, $3 oldest
	// live created_at.
	liveKeySQL = `
		SELECT request_hash, message_id::text, status FROM idempotency_keys
		WHERE account_id = $1 AND key = $2 AND created_at >= $3
		ORDER BY created_at DESC LIMIT 1`
)
