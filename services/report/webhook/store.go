package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// errNotFound: no such endpoint (or delivery) in the caller's account.
var errNotFound = errors.New("webhook not found")

// errTooMany: the account has MaxEndpoints endpoints already.
var errTooMany = errors.New("too many webhook endpoints")

// store is the webhook tables.
type store struct {
	pool *pgxpool.Pool
}

// endpoint is a row of webhook_endpoints; secrets stay sealed.
type endpoint struct {
	ID, AccountID, URL, Description string
	EventTypes                      []string
	Tags                            map[string]string
	Secret, PreviousSecret          []byte
	PreviousExpiresAt               *time.Time
	Enabled                         bool
	DisabledReason                  string
	DisabledAt, FailingSince        *time.Time
	CreatedAt, UpdatedAt            time.Time
}

const endpointColumns = `id::text, account_id::text, url, description, event_types, tags, secret, previous_secret,
	previous_expires_at, enabled, disabled_reason, disabled_at, failing_since, created_at, updated_at`

func scanEndpoint(r pgx.CollectableRow) (endpoint, error) {
	var (
		e    endpoint
		tags []byte
	)
	err := r.Scan(&e.ID, &e.AccountID, &e.URL, &e.Description, &e.EventTypes, &tags, &e.Secret, &e.PreviousSecret,
		&e.PreviousExpiresAt, &e.Enabled, &e.DisabledReason, &e.DisabledAt, &e.FailingSince, &e.CreatedAt, &e.UpdatedAt)
	if err != nil {
		return e, err
	}
	if err := json.Unmarshal(tags, &e.Tags); err != nil {
		return e, fmt.Errorf("endpoint tags: %w", err)
	}
	return e, nil
}

func tagsJSON(t map[string]string) string {
	if len(t) == 0 {
		return "{}"
	}
	b, _ := json.Marshal(t)
	return string(b)
}

// create inserts e unless the account has max endpoints already.
func (s *store) create(ctx context.Context, e endpoint, max int) error {
	tag, err := s.pool.Exec(ctx, `
		INSERT INTO webhook_endpoints (id, account_id, url, description, event_types, tags, secret, created_at, updated_at)
		SELECT $1, $2, $3, $4, $5, $6, $7, $8, $8
		WHERE (SELECT count(*) FROM webhook_endpoints WHERE account_id = $2) < $9`,
		e.ID, e.AccountID, e.URL, e.Description, e.EventTypes, tagsJSON(e.Tags), e.Secret, e.CreatedAt, max)
	if err != nil {
		return fmt.Errorf("create webhook: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return errTooMany
	}
	return nil
}

func (s *store) list(ctx context.Context, account string) ([]endpoint, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints WHERE account_id = $1 ORDER BY created_at, id`, account)
	if err != nil {
		return nil, fmt.Errorf("list webhooks: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanEndpoint)
	if err != nil {
		return nil, fmt.Errorf("list webhooks: %w", err)
	}
	return out, nil
}

func (s *store) get(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, account, id string, lock bool) (endpoint, error) {
	sql := `SELECT ` + endpointColumns + ` FROM webhook_endpoints WHERE account_id = $1 AND id = $2`
	if lock {
		sql += ` FOR UPDATE`
	}
	rows, err := q.Query(ctx, sql, account, id)
	if err != nil {
		return endpoint{}, fmt.Errorf("get webhook: %w", err)
	}
	e, err := pgx.CollectExactlyOneRow(rows, scanEndpoint)
	if errors.Is(err, pgx.ErrNoRows) {
		return e, errNotFound
	}
	if err != nil {
		return e, fmt.Errorf("get webhook: %w", err)
	}
	return e, nil
}

// update changes the endpoint with fn in a transaction and stores the result.
// When it was re-enabled, its held deliveries are due at now.
func (s *store) update(ctx context.Context, account, id string, now time.Time, fn func(*endpoint) error) (endpoint, error) {
	var out endpoint
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		e, err := s.get(ctx, tx, account, id, true)
		if err != nil {
			return err
		}
		wasEnabled := e.Enabled
		if err := fn(&e); err != nil {
			return err
		}
		e.UpdatedAt = now
		_, err = tx.Exec(ctx, `
			UPDATE webhook_endpoints SET url = $3, description = $4, event_types = $5, tags = $6, secret = $7,
				previous_secret = $8, previous_expires_at = $9, enabled = $10, disabled_reason = $11,
				disabled_at = $12, failing_since = $13, updated_at = $14
			WHERE account_id = $1 AND id = $2`,
			account, id, e.URL, e.Description, e.EventTypes, tagsJSON(e.Tags), e.Secret, e.PreviousSecret,
			e.PreviousExpiresAt, e.Enabled, e.DisabledReason, e.DisabledAt, e.FailingSince, e.UpdatedAt)
		if err != nil {
			return fmt.Errorf("update webhook: %w", err)
		}
		if e.Enabled && !wasEnabled {
			if _, err := tx.Exec(ctx, `
				UPDATE webhook_deliveries SET next_attempt_at = $3, updated_at = $3
				WHERE endpoint_id = $2 AND account_id = $1 AND state = 'pending'`, account, id, now); err != nil {
				return fmt.Errorf("release held deliveries: %w", err)
			}
		}
		out = e
		return nil
	})
	return out, err
}

func (s *store) delete(ctx context.Context, account, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM webhook_endpoints WHERE account_id = $1 AND id = $2`, account, id)
	if err != nil {
		return fmt.Errorf("delete webhook: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return errNotFound
	}
	return nil
}

// matcher is what the fan-out needs of an endpoint.
type matcher struct {
	ID, AccountID string
	Types         []string
	Tags          map[string]string
}

// matchers are the endpoints of accounts (enabled or not: a disabled
// endpoint's deliveries are held until it is enabled again).
func (s *store) matchers(ctx context.Context, accounts []string) (map[string][]matcher, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id::text, account_id::text, event_types, tags FROM webhook_endpoints WHERE account_id = ANY($1::uuid[])`, pgUUIDs(accounts))
	if err != nil {
		return nil, fmt.Errorf("webhook endpoints: %w", err)
	}
	out := map[string][]matcher{}
	var (
		m    matcher
		tags []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&m.ID, &m.AccountID, &m.Types, &tags}, func() error {
		m.Tags = nil
		if err := json.Unmarshal(tags, &m.Tags); err != nil {
			return err
		}
		out[m.AccountID] = append(out[m.AccountID], m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("webhook endpoints: %w", err)
	}
	return out, nil
}

// messageInfo is what a payload needs of a message.
type messageInfo struct {
	Tags       map[string]string
	Recipients []string
}

// messages looks up messages (by id, within their account).
func (s *store) messages(ctx context.Context, accounts, ids []string) (map[string]messageInfo, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT m.id::text, m.tags,
			ARRAY(SELECT r.address FROM recipients r WHERE r.message_id = m.id ORDER BY r.idx)
		FROM unnest($1::uuid[], $2::uuid[]) AS k(account_id, id)
		JOIN messages m ON m.id = k.id AND m.account_id = k.account_id
			AND m.id = ANY($2::uuid[]) -- only their partitions (pkg/partition)`, pgUUIDs(accounts), pgUUIDs(ids))
	if err != nil {
		return nil, fmt.Errorf("webhook messages: %w", err)
	}
	out := map[string]messageInfo{}
	var (
		id    string
		tags  []byte
		rcpts []string
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &tags, &rcpts}, func() error {
		var mi messageInfo
		if err := json.Unmarshal(tags, &mi.Tags); err != nil {
			return err
		}
		mi.Recipients = append([]string(nil), rcpts...)
		out[id] = mi
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("webhook messages: %w", err)
	}
	return out, nil
}

// Tags implements watch.TagSource.
func (s *store) Tags(ctx context.Context, account string, ids []string) (map[string]map[string]string, error) {
	accounts := make([]string, len(ids))
	for i := range ids {
		accounts[i] = account
	}
	info, err := s.messages(ctx, accounts, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[string]map[string]string, len(info))
	for id, mi := range info {
		out[id] = mi.Tags
	}
	return out, nil
}

// delivery is a new row of webhook_deliveries.
type delivery struct {
	ID, EndpointID, AccountID, EventID string
	Seq                                int64
	EventType, MessageID, Recipient    string
	Payload                            []byte
	At                                 time.Time
}

// insert stores ds (pending, due at their At); ones already there stay as
// they are.
//
// With leaseUntil set, a new delivery that may go out at once (its endpoint
// is enabled and no earlier delivery of its endpoint, message and recipient
// is pending, in the table or in ds) is stored claimed instead: due at
// leaseUntil, as claim would leave it. insert returns those, for the caller
// to post; the lease brings them back if it does not get to record them.
func (s *store) insert(ctx context.Context, ds []delivery, leaseUntil *time.Time) ([]string, error) {
	if len(ds) == 0 {
		return nil, nil
	}
	n := len(ds)
	ids, eps, accts, msgs := make([]pgtype.UUID, n), make([]pgtype.UUID, n), make([]pgtype.UUID, n), make([]pgtype.UUID, n)
	evs, types, rcpts := make([]string, n), make([]string, n), make([]string, n)
	seqs, payloads, ats := make([]int64, n), make([][]byte, n), make([]time.Time, n)
	for i, d := range ds {
		ids[i], eps[i], accts[i], msgs[i] = pgUUID(d.ID), pgUUID(d.EndpointID), pgUUID(d.AccountID), pgUUID(d.MessageID)
		evs[i], types[i], rcpts[i] = d.EventID, d.EventType, d.Recipient
		seqs[i], payloads[i], ats[i] = d.Seq, d.Payload, d.At
	}
	rows, err := s.pool.Query(ctx, `
		WITH d AS (
			SELECT d.*, row_number() OVER (PARTITION BY d.endpoint_id, d.message_id, d.recipient ORDER BY d.seq) AS rn
			FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::bigint[], $6::text[], $7::uuid[], $8::text[], $9::bytea[], $10::timestamptz[])
				AS d(id, endpoint_id, account_id, event_id, seq, event_type, message_id, recipient, payload, at))
		INSERT INTO webhook_deliveries (id, endpoint_id, account_id, event_id, seq, event_type, message_id, recipient,
			payload, next_attempt_at, created_at, updated_at)
		SELECT d.id, d.endpoint_id, d.account_id, d.event_id, d.seq, d.event_type, d.message_id, d.recipient, d.payload,
			CASE WHEN $11::timestamptz IS NOT NULL AND e.enabled AND d.rn = 1 AND NOT EXISTS (
				SELECT 1 FROM webhook_deliveries p
				WHERE p.endpoint_id = d.endpoint_id AND p.message_id = d.message_id AND p.recipient = d.recipient
				  AND p.state = 'pending' AND p.seq < d.seq)
			THEN $11 ELSE d.at END,
			d.at, d.at
		FROM d JOIN webhook_endpoints e ON e.id = d.endpoint_id
		ON CONFLICT (id) DO NOTHING
		RETURNING id::text, next_attempt_at <> created_at`,
		ids, eps, accts, evs, seqs, types, msgs, rcpts, payloads, ats, leaseUntil)
	if err != nil {
		return nil, fmt.Errorf("insert webhook deliveries: %w", err)
	}
	var (
		leased []string
		id     string
		lease  bool
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &lease}, func() error {
		if lease {
			leased = append(leased, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("insert webhook deliveries: %w", err)
	}
	return leased, nil
}

// claimed is a due delivery a dispatcher took.
type claimed struct {
	ID, EndpointID, AccountID, EventType string
	Payload                              []byte
	Attempts                             int
}

// claim takes up to limit due deliveries of enabled endpoints, each the
// oldest pending one of its (endpoint, message, recipient), and leases them
// until now+lease.
//
// Its plan must not depend on statistics: the table is often not analyzed
// when it matters (a new deployment, autovacuum off or behind), and pgx keeps
// the generic plan a connection made after five runs, which the dispatcher's
// idle polling makes while the table is empty. So:
//   - the endpoint and the earlier-pending check are scalar subqueries, one
//     index probe per candidate. Written as a join and NOT EXISTS, a plan made
//     on the empty table scanned the whole order index for every candidate
//     (950 ms for 512 deliveries behind 40,000 done ones);
//   - the due deliveries are read in next_attempt_at order from the partial
//     index webhook_deliveries_due, up to limit, with bitmap scans off. The
//     index keeps an entry for every superseded version of a pending
//     delivery until VACUUM, all due by now; a plain index scan marks them
//     dead the first time it meets them and skips them after, a bitmap scan
//     (which the planner picks when it believes few rows are due) reads the
//     heap for every one of them on every claim.
const claimSQL = `
		WITH due AS (
			SELECT d.id FROM webhook_deliveries d
			WHERE d.state = 'pending' AND d.next_attempt_at <= $1
			  AND (SELECT e.enabled FROM webhook_endpoints e WHERE e.id = d.endpoint_id)
			  AND (SELECT p.seq FROM webhook_deliveries p
				WHERE p.endpoint_id = d.endpoint_id AND p.message_id = d.message_id AND p.recipient = d.recipient
				  AND p.state = 'pending' AND p.seq < d.seq
				LIMIT 1) IS NULL
			ORDER BY d.next_attempt_at
			LIMIT $3
			FOR UPDATE OF d SKIP LOCKED)
		UPDATE webhook_deliveries w SET next_attempt_at = $2
		FROM due WHERE w.id = due.id
		RETURNING w.id::text, w.endpoint_id::text, w.account_id::text, w.event_type, w.payload, w.attempts`

func (s *store) claim(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]claimed, error) {
	var out []claimed
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL enable_bitmapscan = off`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, claimSQL, now, now.Add(lease), limit)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (claimed, error) {
			var c claimed
			err := r.Scan(&c.ID, &c.EndpointID, &c.AccountID, &c.EventType, &c.Payload, &c.Attempts)
			return c, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claim webhook deliveries: %w", err)
	}
	return out, nil
}

// endpointsByID loads endpoints for sending.
func (s *store) endpointsByID(ctx context.Context, ids []string) (map[string]endpoint, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints WHERE id = ANY($1::uuid[])`, pgUUIDs(ids))
	if err != nil {
		return nil, fmt.Errorf("webhook endpoints: %w", err)
	}
	list, err := pgx.CollectRows(rows, scanEndpoint)
	if err != nil {
		return nil, fmt.Errorf("webhook endpoints: %w", err)
	}
	out := make(map[string]endpoint, len(list))
	for _, e := range list {
		out[e.ID] = e
	}
	return out, nil
}

// attempt is the outcome of one POST.
type attempt struct {
	DeliveryID, EndpointID, AccountID string
	At                                time.Time
	StatusCode                        int
	Latency                           time.Duration
	Snippet, Error                    string
	// State is the delivery's state after it; Next its next attempt when pending.
	State    string
	Attempts int
	Next     time.Time
	// Held: not attempted (its endpoint was disabled meanwhile); only the
	// delivery's state is recorded, no attempt.
	Held bool
}

// record stores attempts and the deliveries' new states in one transaction,
// and the endpoints' failure runs: a success ends one, a failure starts one
// (failing_since) unless one is under way.
func (s *store) record(ctx context.Context, as []attempt, now time.Time) error {
	if len(as) == 0 {
		return nil
	}
	n := len(as)
	ids, states, atts, nexts := make([]string, n), make([]string, n), make([]int32, n), make([]time.Time, n)
	// The attempts made (held deliveries made none).
	var (
		aIDs, accts, snippets, errs []string
		codes                       []int32
		ats                         []time.Time
		lat                         []float64
	)
	ok, failed := map[string]bool{}, map[string]bool{}
	for i, a := range as {
		ids[i], states[i], atts[i], nexts[i] = a.DeliveryID, a.State, int32(a.Attempts), a.Next
		if a.Held {
			continue
		}
		aIDs, accts, codes, snippets, errs = append(aIDs, a.DeliveryID), append(accts, a.AccountID), append(codes, int32(a.StatusCode)), append(snippets, a.Snippet), append(errs, a.Error)
		ats, lat = append(ats, a.At), append(lat, float64(a.Latency)/float64(time.Millisecond))
		if a.StatusCode >= 200 && a.StatusCode < 300 {
			ok[a.EndpointID] = true
		} else {
			failed[a.EndpointID] = true
		}
	}
	var okIDs, failedIDs []string
	for id := range ok {
		okIDs = append(okIDs, id)
	}
	for id := range failed {
		if !ok[id] {
			failedIDs = append(failedIDs, id)
		}
	}
	b := &pgx.Batch{}
	b.Queue(`
		UPDATE webhook_deliveries w SET state = u.state, attempts = u.attempts, next_attempt_at = u.next, updated_at = $5
		FROM unnest($1::uuid[], $2::text[], $3::int[], $4::timestamptz[]) AS u(id, state, attempts, next)
		WHERE w.id = u.id`, pgUUIDs(ids), states, atts, nexts, now)
	b.Queue(`
		INSERT INTO webhook_attempts (delivery_id, account_id, at, status_code, latency_ms, response_snippet, error)
		SELECT u.id, u.account_id, u.at, u.code, u.latency, u.snippet, u.error
		FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::int[], $5::float8[], $6::text[], $7::text[])
			AS u(id, account_id, at, code, latency, snippet, error)
		WHERE EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.id = u.id)`, pgUUIDs(aIDs), pgUUIDs(accts), ats, codes, lat, snippets, errs)
	b.Queue(`UPDATE webhook_endpoints SET failing_since = NULL WHERE id = ANY($1::uuid[]) AND failing_since IS NOT NULL`, pgUUIDs(okIDs))
	b.Queue(`UPDATE webhook_endpoints SET failing_since = $2 WHERE id = ANY($1::uuid[]) AND failing_since IS NULL`, pgUUIDs(failedIDs), now)
	// A batch runs in one implicit transaction: all of it or none, without
	// the round trips of BEGIN and COMMIT.
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("record webhook attempts: %w", err)
	}
	return nil
}

// disable disables an endpoint (if enabled) with reason; it reports whether
// it did.
func (s *store) disable(ctx context.Context, id, reason string, now time.Time) (bool, error) {
	tag, err := s.pool.Exec(ctx, `
		UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2, disabled_at = $3, updated_at = $3
		WHERE id = $1 AND enabled`, id, reason, now)
	if err != nil {
		return false, fmt.Errorf("disable webhook: %w", err)
	}
	return tag.RowsAffected() > 0, nil
}

// failingSince are the enabled endpoints of ids failing since before cutoff.
func (s *store) failingSince(ctx context.Context, ids []string, cutoff time.Time) (map[string]time.Time, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id::text, failing_since FROM webhook_endpoints
		WHERE id = ANY($1::uuid[]) AND enabled AND failing_since <= $2`, ids, cutoff)
	if err != nil {
		return nil, fmt.Errorf("failing webhooks: %w", err)
	}
	out := map[string]time.Time{}
	var (
		id string
		at time.Time
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &at}, func() error { out[id] = at; return nil })
	if err != nil {
		return nil, fmt.Errorf("failing webhooks: %w", err)
	}
	return out, nil
}

// purge deletes deliveries (and their attempts) created before cutoff; a
// delivery still pending then (held by a disabled endpoint) is given up.
func (s *store) purge(ctx context.Context, cutoff time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM webhook_deliveries WHERE created_at < $1`, cutoff)
	if err != nil {
		return 0, fmt.Errorf("purge webhook deliveries: %w", err)
	}
	return tag.RowsAffected(), nil
}

// recordTest stores a test delivery that was attempted once.
func (s *store) recordTest(ctx context.Context, d delivery, a attempt) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
			INSERT INTO webhook_deliveries (id, endpoint_id, account_id, event_id, seq, event_type, recipient, payload,
				state, attempts, next_attempt_at, created_at, updated_at)
			VALUES ($1, $2, $3, $4, 0, $5, '', $6, $7, 1, $8, $8, $8)`,
			d.ID, d.EndpointID, d.AccountID, d.EventID, d.EventType, d.Payload, a.State, d.At)
		if err != nil {
			return fmt.Errorf("record test delivery: %w", err)
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO webhook_attempts (delivery_id, account_id, at, status_code, latency_ms, response_snippet, error)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			d.ID, d.AccountID, a.At, a.StatusCode, float64(a.Latency)/float64(time.Millisecond), a.Snippet, a.Error)
		if err != nil {
			return fmt.Errorf("record test attempt: %w", err)
		}
		return nil
	})
}

// loggedDelivery is a delivery with its attempts, for the log.
type loggedDelivery struct {
	ID, EndpointID, EventType, MessageID, Recipient, State string
	Attempts                                               int
	CreatedAt, NextAttemptAt                               time.Time
	Log                                                    []attempt
}

// deliveries lists an endpoint's deliveries, newest first, after the page
// position (createdAt, id) when given.
//
// Both reads (deliveries, then their attempts) see one snapshot, so a
// delivery's state always matches its attempts.
func (s *store) deliveries(ctx context.Context, account, endpointID, state string, limit int, afterAt *time.Time, afterID string) ([]loggedDelivery, error) {
	var out []loggedDelivery
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		out, err = readDeliveries(ctx, tx, account, endpointID, state, limit, afterAt, afterID)
		return err
	})
	return out, err
}

func readDeliveries(ctx context.Context, tx pgx.Tx, account, endpointID, state string, limit int, afterAt *time.Time, afterID string) ([]loggedDelivery, error) {
	rows, err := tx.Query(ctx, `
		SELECT d.id::text, d.endpoint_id::text, d.event_type, COALESCE(d.message_id::text, ''), d.recipient, d.state, d.attempts,
			d.created_at, d.next_attempt_at
		FROM webhook_deliveries d
		WHERE d.account_id = $1 AND d.endpoint_id = $2 AND ($3 = '' OR d.state = $3)
		  AND ($4::timestamptz IS NULL OR (d.created_at, d.id) < ($4, $5::uuid))
		ORDER BY d.created_at DESC, d.id DESC
		LIMIT $6`, account, endpointID, state, afterAt, nullUUID(afterID), limit)
	if err != nil {
		return nil, fmt.Errorf("list webhook deliveries: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (loggedDelivery, error) {
		var d loggedDelivery
		err := r.Scan(&d.ID, &d.EndpointID, &d.EventType, &d.MessageID, &d.Recipient, &d.State, &d.Attempts, &d.CreatedAt, &d.NextAttemptAt)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("list webhook deliveries: %w", err)
	}
	if len(out) == 0 {
		return out, nil
	}
	ids := make([]string, len(out))
	idx := map[string]int{}
	for i, d := range out {
		ids[i] = d.ID
		idx[d.ID] = i
	}
	rows, err = tx.Query(ctx, `
		SELECT delivery_id::text, at, status_code, latency_ms, response_snippet, error
		FROM webhook_attempts WHERE account_id = $1 AND delivery_id = ANY($2::uuid[]) ORDER BY at`, account, ids)
	if err != nil {
		return nil, fmt.Errorf("list webhook attempts: %w", err)
	}
	var (
		a  attempt
		ms float64
	)
	_, err = pgx.ForEachRow(rows, []any{&a.DeliveryID, &a.At, &a.StatusCode, &ms, &a.Snippet, &a.Error}, func() error {
		a.Latency = time.Duration(ms * float64(time.Millisecond))
		out[idx[a.DeliveryID]].Log = append(out[idx[a.DeliveryID]].Log, a)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list webhook attempts: %w", err)
	}
	return out, nil
}

func nullUUID(s string) pgtype.Text { return pgtype.Text{String: s, Valid: s != ""} }

// pgUUID is s as a binary-encoded uuid parameter; NULL when s is empty (or
// not a uuid). Arrays of these encode without pgx's text fallback, which
// costs a formatted error per element.
func pgUUID(s string) pgtype.UUID {
	u, err := uuid.Parse(s)
	return pgtype.UUID{Bytes: u, Valid: err == nil}
}

func pgUUIDs(ss []string) []pgtype.UUID {
	out := make([]pgtype.UUID, len(ss))
	for i, s := range ss {
		out[i] = pgUUID(s)
	}
	return out
}

// replay makes deliveries of an endpoint pending again, due at now, with a
// fresh retry schedule: one (deliveryID) or those created in [start, end).
// Test deliveries are not replayed.
func (s *store) replay(ctx context.Context, account, endpointID, deliveryID string, start, end time.Time, now time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `
		UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_at = $6, updated_at = $6
		WHERE account_id = $1 AND endpoint_id = $2 AND message_id IS NOT NULL
		  AND CASE WHEN $3 <> '' THEN id::text = $3 ELSE created_at >= $4 AND created_at < $5 END`,
		account, endpointID, deliveryID, start, end, now)
	if err != nil {
		return 0, fmt.Errorf("replay webhook deliveries: %w", err)
	}
	return tag.RowsAffected(), nil
}
