package main

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/queue"
)

// outcome is a final status of seeded messages: its share, what the message
// and its recipients say, and the events that led there.
type outcome struct {
	status    msgstatus.Status
	share     float64
	attempts  int32
	lastError string
	// detail is each recipient's detail (the provider's answer).
	detail string
	events []seedEvent
}

type seedEvent struct {
	typ      string
	status   msgstatus.Status
	after    time.Duration // after the message's creation
	attempt  int32
	response string
	class    string
}

// The timelines of the outcomes.
var (
	accepted  = seedEvent{typ: queue.EventAccepted, status: msgstatus.Queued}
	started   = seedEvent{typ: queue.EventStarted, status: msgstatus.Sending, after: time.Second, attempt: 1}
	sent      = seedEvent{typ: queue.EventSent, status: msgstatus.Sent, after: 2 * time.Second, attempt: 1, response: "250 2.0.0 Ok: queued as 4F1C2A9B"}
	scheduled = seedEvent{typ: queue.EventScheduled, status: msgstatus.Scheduled}
)

// outcomes: mostly SENT and DELIVERED, some BOUNCED and FAILED, a little of
// everything else. The shares add up to 1.
var outcomes = []outcome{
	{status: msgstatus.Delivered, share: 0.71, attempts: 1, detail: "250 2.0.0 Ok",
		events: []seedEvent{accepted, started, sent, {typ: queue.EventDelivered, status: msgstatus.Delivered, after: 30 * time.Second, attempt: 1, response: "250 2.0.0 Ok: delivered"}}},
	{status: msgstatus.Sent, share: 0.19, attempts: 1, detail: "250 2.0.0 Ok",
		events: []seedEvent{accepted, started, sent}},
	{status: msgstatus.Bounced, share: 0.04, attempts: 1, lastError: "550 5.1.1 user unknown", detail: "550 5.1.1 user unknown",
		events: []seedEvent{accepted, started, sent, {typ: queue.EventBounced, status: msgstatus.Bounced, after: time.Minute, attempt: 1, response: "550 5.1.1 user unknown", class: "hard"}}},
	{status: msgstatus.Failed, share: 0.025, attempts: 1, lastError: "554 5.7.1 message rejected", detail: "554 5.7.1 message rejected",
		events: []seedEvent{accepted, started, {typ: queue.EventFailed, status: msgstatus.Failed, after: 2 * time.Second, attempt: 1, response: "554 5.7.1 message rejected", class: "permanent"}}},
	{status: msgstatus.Suppressed, share: 0.01, detail: "suppressed: earlier hard bounce",
		events: []seedEvent{{typ: queue.EventSuppressed, status: msgstatus.Suppressed}}},
	{status: msgstatus.Complained, share: 0.005, attempts: 1, detail: "complaint: abuse",
		events: []seedEvent{accepted, started, sent, {typ: queue.EventComplained, status: msgstatus.Complained, after: time.Hour, attempt: 1, class: "abuse"}}},
	{status: msgstatus.Canceled, share: 0.005,
		events: []seedEvent{scheduled, {typ: queue.EventCanceled, status: msgstatus.Canceled, after: time.Minute}}},
	{status: msgstatus.Retrying, share: 0.005, attempts: 2, lastError: "421 4.7.0 try again later", detail: "421 4.7.0 try again later",
		events: []seedEvent{accepted, started, {typ: queue.EventRetry, status: msgstatus.Retrying, after: 2 * time.Second, attempt: 1, response: "421 4.7.0 try again later", class: "transient"}}},
	{status: msgstatus.Scheduled, share: 0.005, events: []seedEvent{scheduled}},
	{status: msgstatus.Queued, share: 0.005, events: []seedEvent{accepted}},
}

// Tags: a fifth of the messages have none, half are {"type": "transactional"},
// the rest {"type": "marketing", "campaign": c} with c from campaigns by a
// Zipf law (weight rank^-1.5): the last is rare (about 0.4% of all messages).
const (
	noTagsShare         = 0.2
	transactionalShare  = 0.5
	commonTagKey        = "type"
	commonTagValue      = "transactional"
	campaignTagKey      = "campaign"
	marketingTypeValue  = "marketing"
	campaignZipfExp     = 1.5
	rareCampaignAtIndex = -1 // the last campaign
)

var campaigns = []string{"spring", "summer", "autumn", "winter", "launch", "digest", "promo", "survey", "webinar", "reengage", "holiday", "beta"}

// rareCampaign is the campaign the rare-tag shape asks for.
func rareCampaign() string { return campaigns[len(campaigns)+rareCampaignAtIndex] }

// seedArgs are the outcome, event and campaign tables as the seeding SQL
// takes them (arrays).
type seedArgs struct {
	status                      []int16
	lo, hi                      []float64
	key                         []int64
	attempts                    []int32
	lastError, detail           []string
	evFinal, evStatus           []int16
	evType, evResponse, evClass []string
	evAfter                     []float64
	evAttempt                   []int32
	campaign                    []string
	campaignLo, campaignHi      []float64
	noTags, transactional       float64
	// providerAccepted: the statuses whose messages have a provider message id.
	providerAccepted                          []int16
	commonKey, commonValue, campKey, campType string
}

func newSeedArgs() seedArgs {
	var a seedArgs
	lo := 0.0
	for i, o := range outcomes {
		hi := lo + o.share
		if i == len(outcomes)-1 {
			hi = 1.0000001
		}
		a.status, a.lo, a.hi = append(a.status, int16(o.status)), append(a.lo, lo), append(a.hi, hi)
		a.key, a.attempts = append(a.key, msgstatus.Key(o.status, int(o.attempts))), append(a.attempts, o.attempts)
		a.lastError, a.detail = append(a.lastError, o.lastError), append(a.detail, o.detail)
		for _, e := range o.events {
			a.evFinal, a.evStatus = append(a.evFinal, int16(o.status)), append(a.evStatus, int16(e.status))
			a.evType, a.evResponse, a.evClass = append(a.evType, e.typ), append(a.evResponse, e.response), append(a.evClass, e.class)
			a.evAfter, a.evAttempt = append(a.evAfter, e.after.Seconds()), append(a.evAttempt, e.attempt)
		}
		lo = hi
	}
	var sum float64
	w := make([]float64, len(campaigns))
	for i := range campaigns {
		w[i] = 1 / math.Pow(float64(i+1), campaignZipfExp)
		sum += w[i]
	}
	lo = 0
	for i, c := range campaigns {
		hi := lo + w[i]/sum
		if i == len(campaigns)-1 {
			hi = 1.0000001
		}
		a.campaign, a.campaignLo, a.campaignHi = append(a.campaign, c), append(a.campaignLo, lo), append(a.campaignHi, hi)
		lo = hi
	}
	for _, st := range []msgstatus.Status{msgstatus.Sent, msgstatus.Delivered, msgstatus.Bounced, msgstatus.Complained} {
		a.providerAccepted = append(a.providerAccepted, int16(st))
	}
	a.noTags, a.transactional = noTagsShare, noTagsShare+transactionalShare
	a.commonKey, a.commonValue, a.campKey, a.campType = commonTagKey, commonTagValue, campaignTagKey, marketingTypeValue
	return a
}

// seedDay inserts the messages created in [from, to), day d of p.Days, with
// their recipients and events, in one transaction, through the parent tables
// with explicit column lists (whatever the tables' partitioning).
func seedDay(ctx context.Context, pool *pgxpool.Pool, p seedParams, d int, from, to time.Time) error {
	a := newSeedArgs()
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
			return err
		}
		// The day's messages, in id order, with everything derived from them.
		if _, err := tx.Exec(ctx, `
			CREATE TEMP TABLE seed_chunk ON COMMIT DROP AS
			WITH base AS (
				SELECT a.rank, a.id AS account_id, a.addr_pop,
					$1::timestamptz + random() * ($2::timestamptz - $1::timestamptz) AS created_at,
					random() AS rp, random() AS rs, random() AS rt, random() AS rc, random() AS rn,
					2000 + floor(random() * 48000)::integer AS size
				FROM `+accountsTable+` a,
					generate_series(1, a.messages / $3 + CASE WHEN $4 < a.messages % $3 THEN 1 ELSE 0 END) g
			), ided AS (
				SELECT b.*,
					-- a UUIDv7 of created_at, like the ids ingest gives
					(lpad(to_hex(floor(extract(epoch FROM b.created_at) * 1000)::bigint), 12, '0') || '7'
						|| substr(replace(gen_random_uuid()::text, '-', ''), 14))::uuid AS id
				FROM base b
			)
			SELECT b.id, b.rank, b.account_id, b.addr_pop, b.created_at, b.size,
				p.id AS provider_id, p.kind AS provider_kind,
				s.status, s.key, s.attempts, s.last_error, s.detail,
				CASE WHEN s.status = ANY($20::smallint[]) THEN substr(md5(b.id::text), 1, 20) ELSE '' END AS provider_message_id,
				CASE WHEN b.rt < $14 THEN '{}'::jsonb
					WHEN b.rt < $15 THEN jsonb_build_object($16::text, $17::text)
					ELSE jsonb_build_object($16::text, $18::text, $19::text, c.name) END AS tags,
				CASE WHEN b.rn < 0.7 THEN 1 WHEN b.rn < 0.9 THEN 2 ELSE 3 END AS nrcpt
			FROM ided b
			JOIN `+providersTable+` p ON p.rank = b.rank AND b.rp >= p.lo AND b.rp < p.hi
			JOIN unnest($5::smallint[], $6::float8[], $7::float8[], $8::bigint[], $9::integer[], $10::text[], $21::text[])
				AS s(status, lo, hi, key, attempts, last_error, detail) ON b.rs >= s.lo AND b.rs < s.hi
			JOIN unnest($11::text[], $12::float8[], $13::float8[]) AS c(name, lo, hi) ON b.rc >= c.lo AND b.rc < c.hi
			ORDER BY b.id`,
			from, to, int64(p.Days), int64(d),
			a.status, a.lo, a.hi, a.key, a.attempts, a.lastError,
			a.campaign, a.campaignLo, a.campaignHi,
			a.noTags, a.transactional, a.commonKey, a.commonValue, a.campType, a.campKey,
			a.providerAccepted, a.detail); err != nil {
			return fmt.Errorf("generate messages: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, from_name,
				subject, tags, recipient_count, size_bytes, attempts, provider_message_id, last_error,
				created_at, updated_at)
			SELECT id, account_id, provider_id, provider_kind, status, 'news@account' || rank || '.example',
				'Account ' || rank, 'Your order ' || left(id::text, 8) || ' is on its way', tags, nrcpt, size,
				attempts, provider_message_id, last_error, created_at, created_at + interval '30 seconds'
			FROM seed_chunk`); err != nil {
			return fmt.Errorf("insert messages: %w", err)
		}
		// Recipient addresses by a power law over the account's population:
		// a few addresses get many messages, most get one or two.
		if _, err := tx.Exec(ctx, `
			INSERT INTO recipients (message_id, idx, account_id, kind, address, name, status, status_key,
				detail, updated_at)
			SELECT c.id, r.i, c.account_id, (ARRAY['to', 'cc', 'bcc'])[r.i + 1],
				'user' || r.a || '@d' || (r.a % 97) || '.example', '', c.status, c.key, c.detail,
				c.created_at + interval '30 seconds'
			FROM seed_chunk c,
				LATERAL (SELECT i::smallint AS i, floor(c.addr_pop * power(random(), 2))::integer AS a
					FROM generate_series(0, c.nrcpt - 1) i) r`); err != nil {
			return fmt.Errorf("insert recipients: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO events (id, message_id, account_id, type, status, occurred_at, attempt, recipients,
				provider_response, error_class, detail)
			SELECT gen_random_uuid(), c.id, c.account_id, e.type, e.status,
				c.created_at + make_interval(secs => e.after), e.attempt, '{}', e.response, e.class, ''
			FROM seed_chunk c
			JOIN unnest($1::smallint[], $2::smallint[], $3::text[], $4::float8[], $5::integer[], $6::text[], $7::text[])
				AS e(final, status, type, after, attempt, response, class) ON e.final = c.status
			ORDER BY c.id, e.after`,
			a.evFinal, a.evStatus, a.evType, a.evAfter, a.evAttempt, a.evResponse, a.evClass); err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
		return nil
	})
}
