package report

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/reputation"
)

// outcome is what applying did with one event.
type outcome int

const (
	outcomeApplied   outcome = iota + 1 // stored now
	outcomeDuplicate                    // already stored: nothing changed
	outcomeUnknown                      // no such message in that account: dropped
)

// apply stores evs (distinct ids) and applies their status changes in one
// transaction, and returns the outcome of each, in order, and the provider
// configurations whose reputation counts it changed (for the guard to
// assess once committed).
func (s *store) apply(ctx context.Context, evs []event) ([]outcome, []reputation.Key, error) {
	out := make([]outcome, len(evs))
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("begin apply: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()

	known, err := lockMessages(ctx, tx, evs)
	if err != nil {
		return nil, nil, err
	}
	var candidates []int
	for i, e := range evs {
		if known[e.messageID] == e.accountID {
			candidates = append(candidates, i)
		} else {
			out[i] = outcomeUnknown
		}
	}
	inserted, err := insertEvents(ctx, tx, evs, candidates)
	if err != nil {
		return nil, nil, err
	}
	var fresh []int
	for _, i := range candidates {
		if inserted[evs[i].id] {
			out[i] = outcomeApplied
			fresh = append(fresh, i)
		} else {
			out[i] = outcomeDuplicate
		}
	}
	if changes := changing(evs, fresh); len(changes) > 0 {
		applied, err := updateRecipients(ctx, tx, evs, changes)
		if err != nil {
			return nil, nil, err
		}
		if err := updateMessages(ctx, tx, evs, changes, applied); err != nil {
			return nil, nil, err
		}
	}
	if err := countLatency(ctx, tx, evs, fresh); err != nil {
		return nil, nil, err
	}
	var keys []reputation.Key
	if s.reputation != nil && len(fresh) > 0 {
		obs := make([]reputation.Observation, len(fresh))
		for j, i := range fresh {
			e := evs[i]
			obs[j] = reputation.Observation{Account: e.accountID, Message: e.messageID, Type: e.typ, Class: e.errorClass, Recipients: len(e.recipients)}
		}
		if keys, err = s.reputation.Count(ctx, tx, obs, time.Now()); err != nil {
			return nil, nil, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, nil, fmt.Errorf("commit apply: %w", err)
	}
	return out, keys, nil
}

// lockMessages locks the batch's messages, in id order so that concurrent
// replicas cannot deadlock, and returns their account ids. The lock makes the
// recipients update and the summary of one message one serial step. A
// message whose events in the batch are all acceptance events is read, not
// locked: nothing of it is updated (changing), and a lock would write to its
// row all the same.
func lockMessages(ctx context.Context, tx pgx.Tx, evs []event) (map[string]string, error) {
	lock := map[string]bool{}
	for _, e := range evs {
		lock[e.messageID] = lock[e.messageID] || !e.acceptance()
	}
	var locked, read []string
	for id, l := range lock {
		if l {
			locked = append(locked, id)
		} else {
			read = append(read, id)
		}
	}
	sort.Strings(locked)
	known := map[string]string{}
	var id, account string
	collect := func(rows pgx.Rows) error {
		_, err := pgx.ForEachRow(rows, []any{&id, &account}, func() error {
			known[id] = account
			return nil
		})
		return err
	}
	b := &pgx.Batch{}
	if len(locked) > 0 {
		b.Queue(`
			SELECT id::text, account_id::text FROM messages
			WHERE id = ANY($1::text[]::uuid[]) ORDER BY id FOR UPDATE`, locked).Query(collect)
	}
	if len(read) > 0 {
		b.Queue(`SELECT id::text, account_id::text FROM messages WHERE id = ANY($1::text[]::uuid[])`, read).Query(collect)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("lock messages: %w", err)
	}
	return known, nil
}

// insertEvents inserts evs[idx] and returns the ids it inserted (not those
// already stored).
func insertEvents(ctx context.Context, tx pgx.Tx, evs []event, idx []int) (map[string]bool, error) {
	if len(idx) == 0 {
		return map[string]bool{}, nil
	}
	n := len(idx)
	var (
		ids, msgs, accts, types, resps, classes, details = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		statuses                                         = make([]int16, n)
		attempts                                         = make([]int32, n)
		occurred                                         = make([]time.Time, n)
		retryAt                                          = make([]*time.Time, n)
		recipients                                       = make([]string, n)
	)
	for j, i := range idx {
		e := evs[i]
		ids[j], msgs[j], accts[j], types[j] = e.id, e.messageID, e.accountID, e.typ
		resps[j], classes[j], details[j] = e.providerResponse, e.errorClass, e.detail
		statuses[j], attempts[j], occurred[j], retryAt[j] = int16(e.status), e.attempt, e.occurredAt, e.retryAt
		r := e.recipients
		if r == nil {
			r = []string{}
		}
		b, err := json.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("encode recipients of event %s: %w", e.id, err)
		}
		recipients[j] = string(b)
	}
	rows, err := tx.Query(ctx, `
		INSERT INTO events (id, message_id, account_id, type, status, occurred_at, attempt,
			recipients, provider_response, error_class, detail, retry_at)
		SELECT u.id, u.message_id, u.account_id, u.type, u.status, u.occurred_at, u.attempt,
			ARRAY(SELECT jsonb_array_elements_text(u.recipients::jsonb)), u.provider_response,
			u.error_class, u.detail, u.retry_at
		FROM unnest($1::text[]::uuid[], $2::text[]::uuid[], $3::text[]::uuid[], $4::text[], $5::smallint[],
			$6::timestamptz[], $7::integer[], $8::text[], $9::text[], $10::text[], $11::text[],
			$12::timestamptz[])
			AS u(id, message_id, account_id, type, status, occurred_at, attempt, recipients,
				provider_response, error_class, detail, retry_at)
		ON CONFLICT (message_id, id) DO NOTHING
		RETURNING id::text`,
		ids, msgs, accts, types, statuses, occurred, attempts, recipients, resps, classes, details, retryAt)
	if err != nil {
		return nil, fmt.Errorf("insert events: %w", err)
	}
	inserted := map[string]bool{}
	var id string
	if _, err := pgx.ForEachRow(rows, []any{&id}, func() error {
		inserted[id] = true
		return nil
	}); err != nil {
		return nil, fmt.Errorf("insert events: %w", err)
	}
	return inserted, nil
}

// updateRecipients moves each recipient of evs[idx] to the status of the
// event with the greatest key among those that concern it, when that key is
// greater than its current one. It returns the events that moved a recipient.
func updateRecipients(ctx context.Context, tx pgx.Tx, evs []event, idx []int) (map[int]bool, error) {
	var (
		ords              []int32
		msgs, accts, addr []string
		statuses          []int16
		keys              []int64
		details           []string
		at                []time.Time
	)
	add := func(i int, address string) {
		e := evs[i]
		ords = append(ords, int32(i))
		msgs, accts, addr = append(msgs, e.messageID), append(accts, e.accountID), append(addr, address)
		statuses, keys = append(statuses, int16(e.status)), append(keys, e.key())
		details, at = append(details, e.recipientDetail()), append(at, e.occurredAt)
	}
	for _, i := range idx {
		if evs[i].key() < 0 {
			continue
		}
		if len(evs[i].recipients) == 0 {
			add(i, "")
		}
		for _, r := range evs[i].recipients {
			add(i, r)
		}
	}
	applied := map[int]bool{}
	if len(ords) == 0 {
		return applied, nil
	}
	// The recipients are looked up, and updated, by their messages' ids
	// (= ANY, the primary key's first column): joined with the unnested
	// events alone, the planner cannot tell how few rows those are and may
	// read the whole table, or, believing it small, loop over all of it.
	rows, err := tx.Query(ctx, `
		WITH e AS (
			SELECT * FROM unnest($1::integer[], $2::text[]::uuid[], $3::text[], $4::text[], $5::smallint[],
				$6::bigint[], $7::text[], $8::timestamptz[])
				AS e(ord, message_id, account_id, address, status, key, detail, at)
		), best AS (
			SELECT DISTINCT ON (r.message_id, r.idx) r.message_id, r.idx, e.ord, e.status, e.key, e.detail, e.at
			FROM e JOIN recipients r
				-- The account compared as text: never an index condition. The
				-- planner took the account's index for it, reading every
				-- recipient of the account for each event, when the
				-- statistics did not know the account yet.
				ON r.message_id = e.message_id AND r.account_id::text = e.account_id
				AND (e.address = '' OR r.address = e.address)
			WHERE e.key > r.status_key
				AND r.message_id = ANY($9::text[]::uuid[]) -- only their partitions (pkg/partition), by primary key
			ORDER BY r.message_id, r.idx, e.key DESC, e.ord
		)
		UPDATE recipients r
		SET status = best.status, status_key = best.key, updated_at = best.at,
			detail = CASE WHEN best.detail <> '' THEN best.detail ELSE r.detail END
		FROM best
		WHERE r.message_id = best.message_id AND r.idx = best.idx AND r.message_id = ANY($9::text[]::uuid[])
		RETURNING best.ord`,
		ords, msgs, accts, addr, statuses, keys, details, at, distinct(msgs))
	if err != nil {
		return nil, fmt.Errorf("update recipients: %w", err)
	}
	var ord int32
	if _, err := pgx.ForEachRow(rows, []any{&ord}, func() error {
		applied[int(ord)] = true
		return nil
	}); err != nil {
		return nil, fmt.Errorf("update recipients: %w", err)
	}
	return applied, nil
}

// acceptance reports whether e is the first event of its message: ACCEPTED
// or SCHEDULED, published by ingest (or its outbox relay) with the job. It
// changes nothing of the message: ingest stored the message and its
// recipients at that very status, and it carries no attempt, provider answer
// or error. The report stores its timeline row, and that is all.
func (e event) acceptance() bool {
	return e.typ == queue.EventAccepted || e.typ == queue.EventScheduled
}

// changing returns the events of idx that may change their message's
// recipients or row: all but its acceptance events.
func changing(evs []event, idx []int) []int {
	out := idx[:0:0]
	for _, i := range idx {
		if !evs[i].acceptance() {
			out = append(out, i)
		}
	}
	return out
}

// messageChange is what a batch changes of one message besides its status.
type messageChange struct {
	attempts     int32
	providerID   string
	providerKey  int64
	lastError    string
	lastErrorKey int64
	lastErrorAt  time.Time
	updatedAt    time.Time
	// movedTo is the fallback provider configuration of a FAILOVER event.
	movedTo string
}

// updateMessages recomputes the status of the messages of evs[idx] from their
// recipients (msgstatus.Summarise) and maintains attempts, provider_message_id,
// last_error and updated_at. applied names the events that moved a recipient:
// only those may set last_error, so a late failure of an old attempt does not
// overwrite the message's story.
func updateMessages(ctx context.Context, tx pgx.Tx, evs []event, idx []int, applied map[int]bool) error {
	changes := map[string]*messageChange{}
	for _, i := range idx {
		e := evs[i]
		c := changes[e.messageID]
		if c == nil {
			c = &messageChange{providerKey: -1, lastErrorKey: -1}
			changes[e.messageID] = c
		}
		c.attempts = max(c.attempts, e.attempt)
		if e.movedTo != "" {
			c.movedTo = e.movedTo
		}
		if e.occurredAt.After(c.updatedAt) {
			c.updatedAt = e.occurredAt
		}
		if e.providerMessageID != "" && e.key() >= c.providerKey {
			c.providerID, c.providerKey = e.providerMessageID, e.key()
		}
		if msg := e.errorText(); msg != "" && applied[i] &&
			(e.key() > c.lastErrorKey || e.key() == c.lastErrorKey && !e.occurredAt.Before(c.lastErrorAt)) {
			c.lastError, c.lastErrorKey, c.lastErrorAt = msg, e.key(), e.occurredAt
		}
	}
	ids := make([]string, 0, len(changes))
	for id := range changes {
		ids = append(ids, id)
	}
	summaries, err := summarise(ctx, tx, ids)
	if err != nil {
		return err
	}
	n := len(ids)
	statuses, attempts := make([]int16, n), make([]int32, n)
	providerIDs, lastErrors, updatedAt := make([]string, n), make([]string, n), make([]time.Time, n)
	movedTo := make([]string, n)
	for j, id := range ids {
		c := changes[id]
		statuses[j], attempts[j] = int16(summaries[id]), c.attempts
		providerIDs[j], lastErrors[j], updatedAt[j] = c.providerID, c.lastError, c.updatedAt
		movedTo[j] = c.movedTo
	}
	if _, err := tx.Exec(ctx, `
		UPDATE messages m SET
			status = CASE WHEN u.status > 0 THEN u.status ELSE m.status END,
			attempts = GREATEST(m.attempts, u.attempts),
			provider_message_id = CASE WHEN u.provider_message_id <> '' THEN u.provider_message_id ELSE m.provider_message_id END,
			last_error = CASE WHEN u.last_error <> '' THEN u.last_error ELSE m.last_error END,
			updated_at = GREATEST(m.updated_at, u.updated_at),
			-- A FAILOVER moves the message to its fallback: the provider it is sent with.
			provider_id = COALESCE(NULLIF(u.moved_to, '')::uuid, m.provider_id),
			provider_kind = COALESCE((SELECT p.kind FROM provider_configs p
				WHERE p.id = NULLIF(u.moved_to, '')::uuid AND p.account_id = m.account_id), m.provider_kind)
		FROM unnest($1::text[]::uuid[], $2::smallint[], $3::integer[], $4::text[], $5::text[], $6::timestamptz[], $7::text[])
			AS u(id, status, attempts, provider_message_id, last_error, updated_at, moved_to)
		-- = ANY: the messages by their primary key, not a scan (updateRecipients).
		WHERE m.id = u.id AND m.id = ANY($1::text[]::uuid[]) -- only their partitions (pkg/partition)`,
		ids, statuses, attempts, providerIDs, lastErrors, updatedAt, movedTo); err != nil {
		return fmt.Errorf("update messages: %w", err)
	}
	return nil
}

// summarise returns the status each message's recipients summarise to.
func summarise(ctx context.Context, tx pgx.Tx, ids []string) (map[string]msgstatus.Status, error) {
	rows, err := tx.Query(ctx, `
		SELECT message_id::text, array_agg(status ORDER BY idx) FROM recipients
		WHERE message_id = ANY($1::text[]::uuid[]) GROUP BY message_id`, ids)
	if err != nil {
		return nil, fmt.Errorf("summarise messages: %w", err)
	}
	out := map[string]msgstatus.Status{}
	var (
		id       string
		statuses []int16
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &statuses}, func() error {
		ss := make([]msgstatus.Status, len(statuses))
		for i, s := range statuses {
			ss[i] = msgstatus.Status(s)
		}
		out[id] = msgstatus.Summarise(ss)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("summarise messages: %w", err)
	}
	return out, nil
}

// distinct returns the distinct strings of ss.
func distinct(ss []string) []string {
	seen := make(map[string]bool, len(ss))
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
