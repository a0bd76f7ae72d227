package reputation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/accountstate"
	"github.com/namirasoft/email-sender/pkg/queue"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
)

// Actor is who the guard's pauses are set by.
const Actor = "reputation-guard"

// Key names one provider configuration of one account.
type Key struct{ Account, Provider string }

// Observation is one applied event that counts: a SENT, BOUNCED or
// COMPLAINED event of a message.
type Observation struct {
	Account, Message string
	// Type is the event type, Class its error class (a BOUNCED event's
	// bounce class: soft bounces do not count).
	Type, Class string
	// Recipients the event concerns; 0 means all of the message's.
	Recipients int
}

// counted reports whether an event of type typ and class counts.
func counted(typ, class string) bool {
	switch typ {
	case queue.EventSent, queue.EventComplained:
		return true
	case queue.EventBounced:
		return class != "soft_bounce"
	}
	return false
}

// Adverse reports whether an event of type typ and class counts against a
// provider configuration's reputation: a BOUNCED event that is not a soft
// bounce, or a COMPLAINED one. Only such events can raise its level; SENT
// events lower its rates (a first assessment once MinSends is reached may
// still raise it).
func Adverse(typ, class string) bool {
	return counted(typ, class) && typ != queue.EventSent
}

// Querier is what counting needs of PostgreSQL (the caller's transaction).
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Count adds obs (events the caller's transaction applies for the first
// time) to the current bucket of their message's provider configuration and
// returns the pairs it touched, for Guard.Assess once committed.
func (c Config) Count(ctx context.Context, tx Querier, obs []Observation, now time.Time) ([]Key, error) {
	var accts, msgs, types []string
	var ns []int32
	for _, o := range obs {
		if !counted(o.Type, o.Class) {
			continue
		}
		accts, msgs, types, ns = append(accts, o.Account), append(msgs, o.Message), append(types, o.Type), append(ns, int32(o.Recipients))
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	rows, err := tx.Query(ctx, `
		INSERT INTO reputation_counts AS c (account_id, provider_id, bucket, sends, bounces, complaints)
		SELECT m.account_id, m.provider_id, $5::timestamptz,
			sum(CASE WHEN u.typ = 'SENT' THEN n.n ELSE 0 END),
			sum(CASE WHEN u.typ = 'BOUNCED' THEN n.n ELSE 0 END),
			sum(CASE WHEN u.typ = 'COMPLAINED' THEN n.n ELSE 0 END)
		FROM unnest($1::text[], $2::text[]::uuid[], $3::text[], $4::integer[]) AS u(account_id, message_id, typ, n)
		-- The messages by their primary key (= ANY), the account compared as
		-- text so that the planner never scans an account's index for them.
		JOIN messages m ON m.id = u.message_id AND m.account_id::text = u.account_id AND m.id = ANY($2::text[]::uuid[]) -- only their partitions (pkg/partition)
		CROSS JOIN LATERAL (SELECT CASE WHEN u.n > 0 THEN u.n ELSE m.recipient_count END AS n) n
		GROUP BY m.account_id, m.provider_id
		ORDER BY m.account_id, m.provider_id
		ON CONFLICT (account_id, provider_id, bucket) DO UPDATE SET
			sends = c.sends + EXCLUDED.sends, bounces = c.bounces + EXCLUDED.bounces,
			complaints = c.complaints + EXCLUDED.complaints
		RETURNING account_id::text, provider_id::text`,
		accts, msgs, types, ns, now.UTC().Truncate(c.bucket()))
	if err != nil {
		return nil, fmt.Errorf("count reputation: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Key, error) {
		var k Key
		return k, r.Scan(&k.Account, &k.Provider)
	})
	if err != nil {
		return nil, fmt.Errorf("count reputation: %w", err)
	}
	return keys, nil
}

// Crossing is one change of level.
type Crossing struct {
	Key
	From, To Level
	// Event is the event type published for it.
	Event  string
	Counts Counts
}

// Guard assesses provider configurations and acts on crossings.
type Guard struct {
	cfg    Config
	db     TxBeginner
	states *accountstate.Store
	pub    queue.Publisher
	log    *slog.Logger
	now    func() time.Time
}

// TxBeginner begins transactions (a *pgxpool.Pool).
type TxBeginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// NewGuard returns the guard of cfg: pauses are written through states,
// events published on pub.
func NewGuard(cfg Config, db TxBeginner, states *accountstate.Store, pub queue.Publisher, log *slog.Logger) *Guard {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Guard{cfg: cfg, db: db, states: states, pub: pub, log: log, now: time.Now}
}

// Config returns the guard's thresholds.
func (g *Guard) Config() Config { return g.cfg }

// Assess assesses each pair of keys (distinct or not) and acts on the
// crossings: the level is stored, the event published and, at the pause
// threshold, the provider configuration paused (announced to every View
// before Assess returns). It returns the crossings; an error of one pair does
// not stop the others.
func (g *Guard) Assess(ctx context.Context, keys []Key) ([]Crossing, error) {
	slices.SortFunc(keys, func(a, b Key) int { return strings.Compare(a.Account+a.Provider, b.Account+b.Provider) })
	keys = slices.Compact(keys)
	var (
		out  []Crossing
		errs []error
	)
	for _, k := range keys {
		c, ok, err := g.assess(ctx, k)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			out = append(out, c)
		}
	}
	return out, errors.Join(errs...)
}

func (g *Guard) assess(ctx context.Context, k Key) (Crossing, bool, error) {
	now := g.now().UTC()
	tx, err := g.db.Begin(ctx)
	if err != nil {
		return Crossing{}, false, fmt.Errorf("assess reputation: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `
		INSERT INTO reputation (account_id, provider_id, level, changed_at, assessed_at)
		VALUES ($1, $2, 'ok', $3, $3) ON CONFLICT DO NOTHING`, k.Account, k.Provider, now); err != nil {
		return Crossing{}, false, fmt.Errorf("assess reputation: %w", err)
	}
	var (
		cur     Level
		changed time.Time
	)
	if err := tx.QueryRow(ctx, `SELECT level, changed_at FROM reputation
		WHERE account_id = $1 AND provider_id = $2 FOR UPDATE`, k.Account, k.Provider).Scan(&cur, &changed); err != nil {
		return Crossing{}, false, fmt.Errorf("assess reputation: %w", err)
	}
	n, err := g.cfg.window(ctx, tx, k, now)
	if err != nil {
		return Crossing{}, false, err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM reputation_counts WHERE account_id = $1 AND provider_id = $2 AND bucket < $3`,
		k.Account, k.Provider, g.cfg.windowStart(now)); err != nil {
		return Crossing{}, false, fmt.Errorf("prune reputation counts: %w", err)
	}
	next, ev := Transition(cur, g.cfg.Assess(n))
	if _, err := tx.Exec(ctx, `
		UPDATE reputation SET level = $3, sends = $4, bounces = $5, complaints = $6, assessed_at = $7,
			changed_at = CASE WHEN level <> $3 THEN $7 ELSE changed_at END
		WHERE account_id = $1 AND provider_id = $2`,
		k.Account, k.Provider, string(next), n.Sends, n.Bounces, n.Complaints, now); err != nil {
		return Crossing{}, false, fmt.Errorf("assess reputation: %w", err)
	}
	if ev == "" {
		return Crossing{}, false, tx.Commit(ctx)
	}
	why := g.cfg.Why(n)
	var pause accountstate.Pause
	if next == Paused {
		pause, err = accountstate.WritePause(ctx, tx, accountstate.Pause{
			Account: k.Account, Provider: k.Provider, Paused: true, Actor: Actor, ChangedAt: now,
			Reason: "paused by the reputation guard: " + why,
		})
		if err != nil {
			return Crossing{}, false, err
		}
	}
	// Published before the commit, with an id derived from the level being
	// left: a commit that fails is assessed again and publishes the same id,
	// which JetStream drops.
	id := uuid.NewSHA1(eventNamespace, fmt.Appendf(nil, "%s|%s|%s|%d", k.Account, k.Provider, ev, changed.UnixNano())).String()
	if err := Publish(ctx, g.pub, k, id, ev, why, g.cfg.Snapshot(next, n), now); err != nil {
		return Crossing{}, false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return Crossing{}, false, fmt.Errorf("assess reputation: commit: %w", err)
	}
	if next == Paused {
		if err := g.states.AnnouncePause(ctx, pause); err != nil {
			g.log.ErrorContext(ctx, "announce reputation pause", "account_id", k.Account, "provider_id", k.Provider, "error", err)
		}
	}
	g.log.InfoContext(ctx, "reputation crossing", "account_id", k.Account, "provider_id", k.Provider,
		"from", cur, "to", next, "event", ev, "detail", why)
	return Crossing{Key: k, From: cur, To: next, Event: ev, Counts: n}, true, nil
}

var eventNamespace = uuid.MustParse("3b0b7a52-0f55-4f7e-9a1c-6c1f3f0f2d41")

// Snapshot is the level reached and the counts of the window, as a
// reputation event carries them.
func (c Config) Snapshot(l Level, n Counts) *queuev1.ReputationSnapshot {
	return &queuev1.ReputationSnapshot{Level: string(l), Sends: n.Sends, Bounces: n.Bounces, Complaints: n.Complaints,
		WindowSeconds: int64(c.Window / time.Second)}
}

// Publish publishes a reputation event about k on the events stream: detail
// in words, snap in numbers.
func Publish(ctx context.Context, pub queue.Publisher, k Key, id, typ, detail string, snap *queuev1.ReputationSnapshot, at time.Time) error {
	data, err := proto.Marshal(&queuev1.DeliveryEvent{
		EventId: id, MessageId: k.Provider, AccountId: k.Account, Type: typ,
		OccurredAt: timestamppb.New(at), Detail: detail, ProviderId: k.Provider, Reputation: snap,
	})
	if err != nil {
		return fmt.Errorf("encode %s event: %w", typ, err)
	}
	m := queue.NewMsg(queue.EventSubject(k.Account, k.Provider), id, data)
	if err := queue.PublishAll(ctx, pub, []*nats.Msg{m}, 5*time.Second)[0]; err != nil {
		return fmt.Errorf("publish %s event: %w", typ, err)
	}
	return nil
}

// row is what window reads from.
type row interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// window sums k's counts over the window ending at now.
func (c Config) window(ctx context.Context, db row, k Key, now time.Time) (Counts, error) {
	var n Counts
	err := db.QueryRow(ctx, `
		SELECT COALESCE(sum(sends), 0), COALESCE(sum(bounces), 0), COALESCE(sum(complaints), 0)
		FROM reputation_counts WHERE account_id = $1 AND provider_id = $2 AND bucket >= $3`,
		k.Account, k.Provider, c.windowStart(now)).Scan(&n.Sends, &n.Bounces, &n.Complaints)
	if err != nil {
		return Counts{}, fmt.Errorf("reputation window: %w", err)
	}
	return n, nil
}

// windowStart is the first bucket of the window ending at now.
func (c Config) windowStart(now time.Time) time.Time { return now.Add(-c.Window).Truncate(c.bucket()) }
