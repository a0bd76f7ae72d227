package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/pgerr"
)

// Recipient is one envelope recipient of a new message.
type Recipient struct {
	Kind    string // to, cc, bcc
	Address string // lower-cased
	Name    string
}

// NewMessage is a validated message to store.
type NewMessage struct {
	ID           string
	AccountID    string
	ProviderID   string
	ProviderKind string
	// Status is QUEUED or SCHEDULED.
	Status      msgstatus.Status
	FromAddress string
	FromName    string
	Subject     string
	Tags        map[string]string
	Recipients  []Recipient
	// Content is the encoded SendJob, published as is.
	Content []byte
	// SendAt is zero for immediate messages.
	SendAt time.Time
	// NATSSubject is the send subject of the job.
	NATSSubject string
	Traceparent string
	// IdempotencyKey is optional; RequestHash identifies the request under it.
	IdempotencyKey string
	RequestHash    []byte
	CreatedAt      time.Time
}

// Accepted is the outcome of one message of Accept.
type Accepted struct {
	MessageID string
	Status    msgstatus.Status
	// Replay is true when an earlier request with the same idempotency key is
	// answered; nothing was stored.
	Replay bool
	// Err is ErrIdempotencyMismatch for that message only.
	Err error
}

// Accept stores msgs in one round trip: one pgx batch, which PostgreSQL runs
// as one implicit transaction (a single Sync), so they are committed together
// or not at all. For each message it writes the message, its recipients and
// its outbox row, and claims its idempotency key if it has one; the message's
// ACCEPTED (SCHEDULED) event is not a row here: it goes on the events stream
// with the job (outbox.AcceptedEvent) and the report stores it.
//
// A key already used within IdempotencyTTL answers with the earlier message
// instead (Replay), or ErrIdempotencyMismatch (in that message's Err) when
// the request differs; nothing is stored for it. A concurrent request with
// the same key waits for the first one's commit, so exactly one message is
// stored. Messages of msgs sharing a key are one request: the first claims
// it, the others are answered as its replays.
//
// The batch first takes the shared lock of every account (lockAccountsSQL)
// and checks that they exist: when one is gone, nothing is stored and the
// error is ErrAccountGone.
func Accept(ctx context.Context, db DBTX, msgs []*NewMessage) ([]Accepted, error) {
	out := make([]Accepted, len(msgs))
	if len(msgs) == 0 {
		return out, nil
	}
	type keyOf struct{ account, key string }
	var (
		write   []int // messages whose rows are written (keyless and first of a key)
		keyed   []int // the first message of each key
		first   = map[keyOf]int{}
		sameKey = map[int]int{} // a later message of a key → the first one
	)
	for i, m := range msgs {
		if m.IdempotencyKey == "" {
			write = append(write, i)
			continue
		}
		k := keyOf{m.AccountID, m.IdempotencyKey}
		if j, ok := first[k]; ok {
			sameKey[i] = j
			continue
		}
		first[k] = i
		keyed = append(keyed, i)
		write = append(write, i)
	}
	// A fixed order of the key claims, so that two batches sharing keys
	// cannot deadlock.
	sort.Slice(keyed, func(a, b int) bool {
		ma, mb := msgs[keyed[a]], msgs[keyed[b]]
		if ma.AccountID != mb.AccountID {
			return ma.AccountID < mb.AccountID
		}
		return ma.IdempotencyKey < mb.IdempotencyKey
	})

	uids, err := parseIDs(msgs)
	if err != nil {
		return nil, fmt.Errorf("accept: %w", err)
	}
	ids := accountIDs(msgs)
	accountUUIDs := make([]pgtype.UUID, len(ids))
	for i, id := range ids {
		accountUUIDs[i] = pgUUID(uuid.MustParse(id)) // parsed above
	}
	b := &pgx.Batch{}
	b.Queue(lockAccountsSQL, ids)
	b.Queue(`SELECT 1 / (count(*) / $2)::int FROM accounts WHERE id = ANY($1::uuid[])`, accountUUIDs, len(ids))
	// stored[i]: the key row of msgs[i] (a first of its key) after the claim.
	stored := make(map[int]storedKey, len(keyed))
	if len(keyed) > 0 {
		queueClaimKeys(b, msgs, uids, keyed)
	}
	if err := queueInserts(b, msgs, uids, write); err != nil {
		return nil, fmt.Errorf("accept: %w", err)
	}
	if len(keyed) > 0 {
		queueReadKeys(b, msgs, uids, keyed, stored)
	}
	if err := db.SendBatch(ctx, b).Close(); err != nil {
		if pgerr.Is(err, pgerr.DivisionByZero) { // raised on purpose: an account is gone
			return nil, fmt.Errorf("accept: %w", ErrAccountGone)
		}
		return nil, fmt.Errorf("accept: %w", err)
	}
	for _, i := range write {
		m := msgs[i]
		if m.IdempotencyKey == "" {
			out[i] = Accepted{MessageID: m.ID, Status: m.Status}
			continue
		}
		out[i] = stored[i].answer(m)
	}
	for i, j := range sameKey {
		// Compared with the key's row as the first of the key left it: a
		// replay of that message (stored now or earlier), or a mismatch.
		out[i] = stored[j].answer(msgs[i])
	}
	return out, nil
}

// storedKey is an idempotency key's row as the batch left it.
type storedKey struct {
	found     bool
	hash      []byte
	messageID string
	status    msgstatus.Status
}

// answer is the outcome of m under the key: stored now when the key names
// m, else a replay of the earlier message (or a mismatch).
func (k storedKey) answer(m *NewMessage) Accepted {
	switch {
	case !k.found:
		// The claim either wrote the row or locked a live one: not reached.
		return Accepted{Err: fmt.Errorf("idempotency key %q of message %s not found after its claim", m.IdempotencyKey, m.ID)}
	case k.messageID == m.ID:
		return Accepted{MessageID: m.ID, Status: m.Status}
	case !bytes.Equal(k.hash, m.RequestHash):
		return Accepted{Err: ErrIdempotencyMismatch}
	}
	return Accepted{MessageID: k.messageID, Status: k.status, Replay: true}
}

// queueClaimKeys claims the keys of msgs[keyed] (each a different key, in
// a fixed order): each key's advisory lock first (lockKeysSQL, a statement of
// its own, so the claim's snapshot is taken once the locks are granted and
// sees a concurrent claim that committed meanwhile), then a row naming its
// message for each key that has no live row (younger than IdempotencyTTL).
// A live key is left as it is; a concurrent claim of any of these keys waits
// for this batch. idempotency_keys is partitioned by created_at, so a key is
// not unique by a constraint: the lock makes it so (idempotency.go).
func queueClaimKeys(b *pgx.Batch, msgs []*NewMessage, uids []messageIDs, keyed []int) {
	n := len(keyed)
	accounts, ids, keys := make([]pgtype.UUID, n), make([]pgtype.UUID, n), make([]string, n)
	hashes, statuses, at := make([][]byte, n), make([]int16, n), make([]time.Time, n)
	for j, i := range keyed {
		m := msgs[i]
		accounts[j], keys[j], ids[j] = uids[i].account, m.IdempotencyKey, uids[i].id
		hashes[j], statuses[j], at[j] = m.RequestHash, int16(m.Status), m.CreatedAt
	}
	b.Queue(lockKeysSQL, accounts, keys)
	b.Queue(`
		INSERT INTO idempotency_keys (account_id, key, request_hash, message_id, status, created_at)
		SELECT u.account_id, u.key, u.request_hash, u.message_id, u.status, u.created_at
		FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::uuid[], $5::smallint[], $6::timestamptz[])
			WITH ORDINALITY AS u(account_id, key, request_hash, message_id, status, created_at, ord)
		WHERE NOT EXISTS (SELECT 1 FROM idempotency_keys k
			WHERE k.account_id = u.account_id AND k.key = u.key AND k.created_at >= u.created_at - $7::interval)
		ORDER BY u.ord`,
		accounts, keys, hashes, ids, statuses, at, IdempotencyTTL)
}

// queueReadKeys reads the key rows of msgs[keyed] after the claim into stored.
func queueReadKeys(b *pgx.Batch, msgs []*NewMessage, uids []messageIDs, keyed []int, stored map[int]storedKey) {
	n := len(keyed)
	accounts, keys, ords := make([]pgtype.UUID, n), make([]string, n), make([]int32, n)
	since := make([]time.Time, n)
	for j, i := range keyed {
		accounts[j], keys[j], ords[j] = uids[i].account, msgs[i].IdempotencyKey, int32(i)
		since[j] = msgs[i].CreatedAt.Add(-IdempotencyTTL)
	}
	b.Queue(`
		SELECT u.ord, k.request_hash, k.message_id::text, k.status
		FROM unnest($1::uuid[], $2::text[], $3::integer[], $4::timestamptz[]) AS u(account_id, key, ord, since)
		JOIN LATERAL (SELECT request_hash, message_id, status FROM idempotency_keys k
			WHERE k.account_id = u.account_id AND k.key = u.key AND k.created_at >= u.since
			ORDER BY k.created_at DESC LIMIT 1) k ON true`,
		accounts, keys, ords, since).Query(func(rows pgx.Rows) error {
		var (
			ord int32
			k   storedKey
			st  int16
		)
		_, err := pgx.ForEachRow(rows, []any{&ord, &k.hash, &k.messageID, &st}, func() error {
			k.found, k.status = true, msgstatus.Status(st)
			stored[int(ord)] = k
			return nil
		})
		if err != nil {
			return fmt.Errorf("read idempotency keys: %w", err)
		}
		return nil
	})
}

// claimedSQL is the condition under which a message is written: it has no
// idempotency key, or its key was claimed for it (the key row names it)
// earlier in the batch. x is the alias of the rows with the account_id, key
// and message id (mid) columns.
func claimedSQL(x string) string {
	return x + `.key = '' OR EXISTS (SELECT 1 FROM idempotency_keys k
		WHERE k.account_id = ` + x + `.account_id AND k.key = ` + x + `.key AND k.message_id = ` + x + `.mid)`
}

// queueInserts adds the statement that stores msgs[write] to b: their
// messages, recipients and outbox rows, one statement (one plan, one
// execution) whose recipients and outbox rows are those of the messages it
// inserted (claimedSQL).
func queueInserts(b *pgx.Batch, msgs []*NewMessage, uids []messageIDs, write []int) error {
	n := len(write)
	var (
		ids, accounts, providers         = make([]pgtype.UUID, n), make([]pgtype.UUID, n), make([]pgtype.UUID, n)
		kinds, keys, subjectsNATS        = make([]string, n), make([]string, n), make([]string, n)
		froms, fromNames, subjects, tags = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		traces                           = make([]string, n)
		statuses                         = make([]int16, n)
		statusKeys                       = make([]int64, n)
		rcptCounts, sizes                = make([]int32, n), make([]int32, n)
		contents                         = make([][]byte, n)
		sendAts                          = make([]pgtype.Timestamptz, n)
		created                          = make([]time.Time, n)
	)
	var (
		rMsg                []pgtype.UUID
		rIdx                []int16
		rKind, rAddr, rName []string
	)
	for j, i := range write {
		m := msgs[i]
		t := "{}"
		if len(m.Tags) > 0 {
			enc, err := json.Marshal(m.Tags)
			if err != nil {
				return fmt.Errorf("encode tags: %w", err)
			}
			t = string(enc)
		}
		ids[j], accounts[j], providers[j], kinds[j] = uids[i].id, uids[i].account, uids[i].provider, m.ProviderKind
		froms[j], fromNames[j], subjects[j], tags[j] = m.FromAddress, m.FromName, m.Subject, t
		keys[j], subjectsNATS[j], traces[j] = m.IdempotencyKey, m.NATSSubject, m.Traceparent
		statuses[j], statusKeys[j] = int16(m.Status), msgstatus.Key(m.Status, 0)
		rcptCounts[j], sizes[j] = int32(len(m.Recipients)), int32(len(m.Content))
		contents[j], created[j] = m.Content, m.CreatedAt
		sendAts[j] = pgtype.Timestamptz{Time: m.SendAt, Valid: !m.SendAt.IsZero()}
		for k, r := range m.Recipients {
			rMsg, rIdx = append(rMsg, uids[i].id), append(rIdx, int16(k))
			rKind, rAddr, rName = append(rKind, r.Kind), append(rAddr, r.Address), append(rName, r.Name)
		}
	}
	// The outbox's not_before comes from the database clock, as the relay
	// compares it with it.
	b.Queue(`
		WITH m AS (
			SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::smallint[], $6::text[],
				$7::text[], $8::text[], $9::text[], $10::integer[], $11::integer[], $12::bytea[],
				$13::timestamptz[], $14::timestamptz[], $15::text[], $16::bigint[], $17::text[], $18::text[])
				AS m(mid, account_id, provider_id, provider_kind, status, from_address, from_name, subject, tags,
					recipient_count, size_bytes, content, send_at, created_at, key, status_key, nats_subject, traceparent)
		), stored AS (
			INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, from_name,
				subject, tags, recipient_count, size_bytes, send_at, created_at, updated_at)
			SELECT m.mid, m.account_id, m.provider_id, m.provider_kind, m.status, m.from_address, m.from_name,
				m.subject, m.tags::jsonb, m.recipient_count, m.size_bytes, m.send_at, m.created_at, m.created_at
			FROM m WHERE `+claimedSQL("m")+`
			RETURNING id
		), contents AS (
			INSERT INTO message_contents (message_id, account_id, content)
			SELECT m.mid, m.account_id, m.content FROM m JOIN stored s ON s.id = m.mid
		), rcpts AS (
			INSERT INTO recipients (message_id, idx, account_id, kind, address, name, status, status_key, updated_at)
			SELECT r.mid, r.idx, m.account_id, r.kind, r.address, r.name, m.status, m.status_key, m.created_at
			FROM unnest($19::uuid[], $20::smallint[], $21::text[], $22::text[], $23::text[]) AS r(mid, idx, kind, address, name)
			JOIN stored s ON s.id = r.mid JOIN m ON m.mid = r.mid
		)
		INSERT INTO outbox (message_id, account_id, subject, not_before, traceparent)
		SELECT m.mid, m.account_id, m.nats_subject, COALESCE(m.send_at, now()), m.traceparent
		FROM m JOIN stored s ON s.id = m.mid`,
		ids, accounts, providers, kinds, statuses, froms, fromNames, subjects, tags, rcptCounts, sizes,
		contents, sendAts, created, keys, statusKeys, subjectsNATS, traces,
		rMsg, rIdx, rKind, rAddr, rName)
	return nil
}

// messageIDs are the uuid columns of a message, parsed: pgx sends a
// pgtype.UUID in binary at once (a string makes it try binary, fail and fall
// back to text; a uuid.UUID in an array goes through reflection).
type messageIDs struct{ id, account, provider pgtype.UUID }

func parseIDs(msgs []*NewMessage) ([]messageIDs, error) {
	out := make([]messageIDs, len(msgs))
	for i, m := range msgs {
		for _, f := range []struct {
			what, s string
			to      *pgtype.UUID
		}{{"message", m.ID, &out[i].id}, {"account", m.AccountID, &out[i].account}, {"provider", m.ProviderID, &out[i].provider}} {
			u, err := uuid.Parse(f.s)
			if err != nil {
				return nil, fmt.Errorf("%s id %q: %w", f.what, f.s, err)
			}
			*f.to = pgUUID(u)
		}
	}
	return out, nil
}

func pgUUID(u uuid.UUID) pgtype.UUID { return pgtype.UUID{Bytes: u, Valid: true} }

// lockAccountsSQL takes the shared advisory lock of each account (in id
// order). DeleteAccount takes the same lock exclusively, so it waits for the
// accepts in flight and deletes what they stored, and an accept that starts
// after it sees the account gone: no message outlives its account's deletion.
// An advisory lock lives in the lock manager only; a row lock (FOR KEY SHARE)
// would write the shared accounts row for every call, which under concurrency
// is a MultiXact per caller.
//
// It also makes the statements after it in the accept batch use generic
// plans: they take their rows from arrays (unnest), so their plans do not
// depend on the values, and planning them anew for every call (PostgreSQL's
// custom plans) costs more than running them. The setting is local: it ends
// with the batch's transaction.
const lockAccountsSQL = `SELECT pg_advisory_xact_lock_shared(hashtextextended(a, 7261)),
		set_config('plan_cache_mode', 'force_generic_plan', true)
	FROM unnest($1::text[]) AS a ORDER BY a`

// accountIDs lists the distinct accounts of msgs.
func accountIDs(msgs []*NewMessage) []string {
	seen := map[string]bool{}
	var ids []string
	for _, m := range msgs {
		if !seen[m.AccountID] {
			seen[m.AccountID] = true
			ids = append(ids, m.AccountID)
		}
	}
	return ids
}
