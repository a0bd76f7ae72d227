package store

import "time"

// IdempotencyTTL is how long an idempotency key is remembered. Expired keys
// are dropped with their partition (pkg/partition, class Idempotency).
const IdempotencyTTL = 24 * time.Hour

// idempotency_keys is partitioned by created_at, so its primary key
// (account_id, key, created_at) does not make a key unique by itself. A
// claim (Accept, queueClaimKeys) takes the keys' advisory locks first
// (lockKeysSQL, a statement of its own: the claim's snapshot must be taken
// after the locks are granted, to see a concurrent claim that committed
// meanwhile), then inserts each key that has no live row. Concurrent
// requests with one key thus store exactly one message; a key older than
// the TTL counts as new, and its old row waits for its partition to be
// dropped.
//
// $1 accounts, $2 keys, in the order the locks are taken (a fixed order
// across batches, so two batches sharing keys cannot deadlock).
const lockKeysSQL = `SELECT pg_advisory_xact_lock(hashtextextended(u.account_id::text || '/' || u.key, 7262))
	FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS u(account_id, key, ord) ORDER BY u.ord`
