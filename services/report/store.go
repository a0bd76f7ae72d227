package report

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/partition"
	"github.com/namirasoft/email-sender/pkg/reputation"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// store is the report's data layer. Every read takes the caller's account id
// and filters by it in SQL.
type store struct {
	pool *pgxpool.Pool
	// reputation counts the events that matter to the reputation guard as
	// they are applied; nil: nothing counted.
	reputation *reputation.Config
	// subjectScan bounds a subject search's walk; 0: subjectScanRows.
	subjectScan int
}

const summaryColumns = `m.id::text, m.status, m.from_address, m.from_name, m.subject,
	m.provider_id::text, m.provider_kind, m.tags, m.recipient_count, m.attempts,
	m.created_at, m.updated_at, m.send_at, m.provider_message_id, m.last_error`

// summaryFields are the columns summaryColumns reads, for a subquery that
// selects them.
const summaryFields = `m.id, m.status, m.from_address, m.from_name, m.subject, m.provider_id,
	m.provider_kind, m.tags, m.recipient_count, m.attempts, m.created_at, m.updated_at, m.send_at,
	m.provider_message_id, m.last_error`

func scanSummary(row pgx.Row) (*emailsenderv1.MessageSummary, error) {
	var (
		m                    emailsenderv1.MessageSummary
		st                   int16
		fromAddr, fromName   string
		tags                 map[string]any
		created, updated     time.Time
		sendAt               *time.Time
		recipients, attempts int32
	)
	if err := row.Scan(&m.MessageId, &st, &fromAddr, &fromName, &m.Subject,
		&m.ProviderId, &m.ProviderKind, &tags, &recipients, &attempts,
		&created, &updated, &sendAt, &m.ProviderMessageId, &m.LastError); err != nil {
		return nil, err
	}
	m.Status = emailsenderv1.MessageStatus_Value(st)
	m.From = &emailsenderv1.Address{Address: fromAddr, Name: fromName}
	m.RecipientCount, m.Attempts = recipients, attempts
	m.CreatedAt, m.UpdatedAt = timestamppb.New(created), timestamppb.New(updated)
	if sendAt != nil {
		m.SendAt = timestamppb.New(*sendAt)
	}
	if len(tags) > 0 {
		m.Tags = make(map[string]string, len(tags))
		for k, v := range tags {
			if s, ok := v.(string); ok {
				m.Tags[k] = s
			} else {
				m.Tags[k] = fmt.Sprint(v)
			}
		}
	}
	return &m, nil
}

// message returns one message of the account with its recipients and events,
// read from one snapshot.
func (s *store) message(ctx context.Context, accountID, messageID string) (*emailsenderv1.GetMessageResponse, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("begin read: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()

	summary, err := scanSummary(tx.QueryRow(ctx, `SELECT `+summaryColumns+`
		FROM messages m WHERE m.account_id = $1 AND m.id = $2`, accountID, messageID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get message %s: %w", messageID, err)
	}
	resp := &emailsenderv1.GetMessageResponse{Message: summary}

	rows, err := tx.Query(ctx, `
		SELECT address, name, kind, status, updated_at, detail FROM recipients
		WHERE account_id = $1 AND message_id = $2 ORDER BY idx`, accountID, messageID)
	if err != nil {
		return nil, fmt.Errorf("get recipients of %s: %w", messageID, err)
	}
	var (
		r        emailsenderv1.RecipientStatus
		addr     emailsenderv1.Address
		st       int16
		updated  time.Time
		occurred time.Time
		retryAt  *time.Time
	)
	if _, err := pgx.ForEachRow(rows, []any{&addr.Address, &addr.Name, &r.Kind, &st, &updated, &r.Detail}, func() error {
		resp.Recipients = append(resp.Recipients, &emailsenderv1.RecipientStatus{
			Address:   &emailsenderv1.Address{Address: addr.Address, Name: addr.Name},
			Kind:      r.Kind,
			Status:    emailsenderv1.MessageStatus_Value(st),
			UpdatedAt: timestamppb.New(updated),
			Detail:    r.Detail,
		})
		return nil
	}); err != nil {
		return nil, fmt.Errorf("get recipients of %s: %w", messageID, err)
	}

	rows, err = tx.Query(ctx, `
		SELECT id::text, type, status, occurred_at, attempt, recipients, provider_response,
			error_class, detail, retry_at
		FROM events WHERE account_id = $1 AND message_id = $2 ORDER BY occurred_at, id`, accountID, messageID)
	if err != nil {
		return nil, fmt.Errorf("get events of %s: %w", messageID, err)
	}
	var e emailsenderv1.MessageEvent
	if _, err := pgx.ForEachRow(rows, []any{&e.EventId, &e.Type, &st, &occurred, &e.Attempt, &e.Recipients,
		&e.ProviderResponse, &e.ErrorClass, &e.Detail, &retryAt}, func() error {
		ev := &emailsenderv1.MessageEvent{
			EventId: e.EventId, Type: e.Type, Status: emailsenderv1.MessageStatus_Value(st),
			OccurredAt: timestamppb.New(occurred), Attempt: e.Attempt, Recipients: e.Recipients,
			ProviderResponse: e.ProviderResponse, ErrorClass: e.ErrorClass, Detail: e.Detail,
		}
		if retryAt != nil {
			ev.RetryAt = timestamppb.New(*retryAt)
		}
		resp.Events = append(resp.Events, ev)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("get events of %s: %w", messageID, err)
	}
	return resp, nil
}

// listFilter is a validated ListMessages request.
type listFilter struct {
	statuses      []int16
	providerID    string
	recipient     string
	tagsJSON      string // "" for none
	createdAfter  *time.Time
	createdBefore *time.Time
	afterID       string // cursor: ids strictly below this one
	// subject is subject_contains as an ILIKE pattern ("" for none).
	subject string
	limit   int
}

// subjectScanRows bounds the messages one subject search reads (after the
// other filters, newest first): at 10 million messages, reading 20,000 of
// the largest account's took 30 ms warm, 50,000 took 84 ms (make
// bench-scale's data set). A page that is not full by then ends with a
// token that goes on reading below the last message read.
const subjectScanRows = 20000

// likeContains is the ILIKE pattern matching text anywhere.
func likeContains(text string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(text) + "%"
}

// extraRow scans a summary row followed by more columns.
type extraRow struct {
	pgx.Row
	extra []any
}

func (r extraRow) Scan(dest ...any) error { return r.Row.Scan(append(dest, r.extra...)...) }

// list returns up to f.limit messages of the account, newest first (listScan
// without where a subject search stopped).
func (s *store) list(ctx context.Context, accountID string, f listFilter) ([]*emailsenderv1.MessageSummary, error) {
	out, _, err := s.listScan(ctx, accountID, f)
	return out, err
}

// listScan returns up to f.limit messages of the account, newest first.
//
// Every filter is answered by walking an index in id order until the page is
// full: (account_id, id) or (account_id, status, id) or (account_id,
// provider_id, id) on messages, and for a recipient (account_id, address,
// message_id) on recipients, whose message ids are then looked up one by
// one. Which index serves best depends on the values of a status, provider,
// tag or recipient filter (a rare tag against a common one, an account of
// millions of messages against one of a few), so such a statement is planned
// with its arguments every time (QueryExecModeCacheDescribe); a prepared
// statement's generic plan, made once without them, chose a bitmap scan and a
// sort of every match for a common tag. Without those filters the walk along
// (account_id, id) is right whatever the values, and planning each call
// (every partition of messages, a few milliseconds) would cost more than the
// query: the statement is prepared (pgx's statement cache).
//
// With a subject filter and no recipient, the walk reads at most
// subjectScanRows messages (row_number over the walk, which PostgreSQL
// evaluates as it goes, so a full page stops it early); scanEnd is then the
// id of the last message read when the bound was reached, where the next
// page goes on ("" when the walk ended before). With a recipient, the
// subject is one more filter of the recipient's messages.
func (s *store) listScan(ctx context.Context, accountID string, f listFilter) (_ []*emailsenderv1.MessageSummary, scanEnd string, _ error) {
	mode := pgx.QueryExecModeCacheStatement
	if len(f.statuses) > 0 || f.providerID != "" || f.tagsJSON != "" || f.recipient != "" {
		mode = pgx.QueryExecModeCacheDescribe
	}
	var (
		where = []string{"m.account_id = $1"}
		args  = []any{mode, accountID}
	)
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args)-1)
	}
	if len(f.statuses) > 0 {
		where = append(where, "m.status = ANY("+arg(f.statuses)+"::smallint[])")
	}
	if f.providerID != "" {
		where = append(where, "m.provider_id = "+arg(f.providerID)+"::uuid")
	}
	if f.tagsJSON != "" {
		where = append(where, "m.tags @> "+arg(f.tagsJSON)+"::jsonb")
	}
	// The id bounds change nothing but let PostgreSQL skip the partitions
	// outside the range (messages are partitioned by id, a UUIDv7 of
	// created_at).
	// The same bounds of the recipients' message ids.
	var ids []string
	if f.createdAfter != nil {
		from := arg(partition.IDsFrom(*f.createdAfter))
		where = append(where, "m.created_at >= "+arg(*f.createdAfter), "m.id >= "+from)
		ids = append(ids, "r.message_id >= "+from)
	}
	if f.createdBefore != nil {
		before := arg(partition.IDsBefore(*f.createdBefore))
		where = append(where, "m.created_at < "+arg(*f.createdBefore), "m.id < "+before)
		ids = append(ids, "r.message_id < "+before)
	}
	if f.afterID != "" {
		cursor := arg(f.afterID) + "::uuid"
		where = append(where, "m.id < "+cursor)
		ids = append(ids, "r.message_id < "+cursor)
	}
	var q string
	bounded := f.subject != "" && f.recipient == ""
	switch {
	case bounded:
		bound := s.subjectScan
		if bound <= 0 {
			bound = subjectScanRows
		}
		pat, scan := arg(f.subject), arg(bound)
		q = `SELECT ` + summaryColumns + `, m.subject ILIKE ` + pat + `, m.rn = ` + scan + ` FROM (
				SELECT ` + summaryFields + `, row_number() OVER (ORDER BY m.id DESC) AS rn FROM (
					SELECT ` + summaryFields + ` FROM messages m WHERE ` + strings.Join(where, " AND ") + `
					ORDER BY m.id DESC LIMIT ` + scan + `) m) m
			WHERE m.subject ILIKE ` + pat + ` OR m.rn = ` + scan + `
			ORDER BY m.id DESC LIMIT ` + arg(f.limit)
	case f.recipient == "":
		q = `SELECT ` + summaryColumns + ` FROM messages m WHERE ` + strings.Join(where, " AND ") +
			` ORDER BY m.id DESC LIMIT ` + arg(f.limit)
	default:
		if f.subject != "" {
			where = append(where, "m.subject ILIKE "+arg(f.subject))
		}
		// The recipient's messages, newest first, from the recipients
		// index; each looked up (LIMIT 1 keeps it a lookup per id, not a
		// join the planner might make by scanning messages) and filtered.
		rwhere := append([]string{"r.account_id = $1", "r.address = " + arg(f.recipient)}, ids...)
		q = `SELECT ` + summaryColumns + ` FROM (
				SELECT DISTINCT r.message_id FROM recipients r WHERE ` + strings.Join(rwhere, " AND ") + `
				ORDER BY r.message_id DESC) r
			CROSS JOIN LATERAL (SELECT ` + summaryFields + ` FROM messages m
				WHERE m.id = r.message_id AND ` + strings.Join(where, " AND ") + ` LIMIT 1) m
			ORDER BY r.message_id DESC LIMIT ` + arg(f.limit)
	}
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list messages: %w", err)
	}
	defer rows.Close()
	var (
		out               []*emailsenderv1.MessageSummary
		matched, boundary bool
		row               pgx.Row = rows
	)
	if bounded {
		row = extraRow{Row: rows, extra: []any{&matched, &boundary}}
	}
	for rows.Next() {
		m, err := scanSummary(row)
		if err != nil {
			return nil, "", fmt.Errorf("list messages: %w", err)
		}
		if boundary {
			scanEnd = m.GetMessageId()
		}
		if !bounded || matched {
			out = append(out, m)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list messages: %w", err)
	}
	return out, scanEnd, nil
}

// reputationOf is the reputation guard's standing of the account's provider
// configurations (one, when providerID is set).
func (s *store) reputationOf(ctx context.Context, accountID, providerID string, now time.Time) ([]*emailsenderv1.ProviderReputation, error) {
	if s.reputation == nil {
		return nil, nil
	}
	sts, err := s.reputation.Statuses(ctx, s.pool, accountID, providerID, now)
	if err != nil {
		return nil, err
	}
	out := make([]*emailsenderv1.ProviderReputation, len(sts))
	for i, st := range sts {
		r := &emailsenderv1.ProviderReputation{
			ProviderId: st.Provider, State: string(st.Level),
			Sends: st.Counts.Sends, Bounces: st.Counts.Bounces, Complaints: st.Counts.Complaints,
			BounceRate: st.Counts.BounceRate(), ComplaintRate: st.Counts.ComplaintRate(),
			Window: durationpb.New(s.reputation.Window),
		}
		if st.Paused {
			r.PauseReason, r.PausedAt = st.Reason, timestamppb.New(st.PausedAt)
		}
		out[i] = r
	}
	return out, nil
}

// Content returns the content of a message of accountID while it is retained
// (message_contents; ok false once RETENTION_PERIOD dropped it, or for an id
// that is not the account's). The console shows it; the API never returns
// bodies.
func (s *store) Content(ctx context.Context, accountID, messageID string) (*emailsenderv1.EmailMessage, bool, error) {
	id, err := uuid.Parse(messageID)
	if err != nil {
		return nil, false, nil
	}
	var b []byte
	err = s.pool.QueryRow(ctx, `SELECT content FROM message_contents WHERE message_id = $1 AND account_id = $2`, id, accountID).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("get content of %s: %w", messageID, err)
	}
	var job queuev1.SendJob
	if err := proto.Unmarshal(b, &job); err != nil {
		return nil, false, fmt.Errorf("decode content of %s: %w", messageID, err)
	}
	return job.GetMessage(), true, nil
}

// maxShownRecipients is how many recipients of each message Recipients
// returns.
const maxShownRecipients = 3

// Recipients returns the first recipients (to, cc, bcc in order, at most
// maxShownRecipients) of messageIDs of accountID, for the console's list:
// one query for a page.
func (s *store) Recipients(ctx context.Context, accountID string, messageIDs []string) (map[string][]string, error) {
	ids := make([]uuid.UUID, 0, len(messageIDs))
	for _, id := range messageIDs {
		if u, err := uuid.Parse(id); err == nil {
			ids = append(ids, u)
		}
	}
	out := map[string][]string{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `
		SELECT message_id::text, address FROM recipients
		WHERE account_id = $1 AND message_id = ANY($2) AND idx < $3 ORDER BY message_id, idx`,
		accountID, ids, maxShownRecipients)
	if err != nil {
		return nil, fmt.Errorf("list recipients: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, addr string
		if err := rows.Scan(&id, &addr); err != nil {
			return nil, fmt.Errorf("list recipients: %w", err)
		}
		out[id] = append(out[id], addr)
	}
	return out, rows.Err()
}
