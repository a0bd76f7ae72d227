package reputation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/namirasoft/email-sender/pkg/accountstate"
	"github.com/namirasoft/email-sender/pkg/queue"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
)

// ErrNotPaused: the provider configuration is not paused.
var ErrNotPaused = errors.New("the provider configuration is not paused")

// Resume lifts the pause of a provider configuration (the owner's or the
// operator's decision): sends are accepted again and held mail goes out. Its
// window starts afresh (its counts are removed, its level is ok again), and a
// REPUTATION_RESUMED event says who resumed it. The lift is announced to
// every View before Resume returns (an announcement that fails is returned;
// the lift is stored either way).
func Resume(ctx context.Context, db TxBeginner, states *accountstate.Store, pub queue.Publisher, k Key, actor string, now time.Time) (accountstate.Pause, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return accountstate.Pause{}, fmt.Errorf("resume: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	// Locks out a concurrent assessment of the pair.
	if _, err := tx.Exec(ctx, `SELECT 1 FROM reputation WHERE account_id = $1 AND provider_id = $2 FOR UPDATE`, k.Account, k.Provider); err != nil {
		return accountstate.Pause{}, fmt.Errorf("resume: %w", err)
	}
	cur, err := lockPause(ctx, tx, k)
	if err != nil {
		return accountstate.Pause{}, err
	}
	if !cur.Paused {
		return accountstate.Pause{}, ErrNotPaused
	}
	lift, err := accountstate.WritePause(ctx, tx, accountstate.Pause{Account: k.Account, Provider: k.Provider, Actor: actor, ChangedAt: now,
		Reason: "resumed by " + actor})
	if err != nil {
		return accountstate.Pause{}, err
	}
	if _, err := tx.Exec(ctx, `
		UPDATE reputation SET level = 'ok', sends = 0, bounces = 0, complaints = 0, changed_at = $3, assessed_at = $3
		WHERE account_id = $1 AND provider_id = $2`, k.Account, k.Provider, now); err != nil {
		return accountstate.Pause{}, fmt.Errorf("resume: %w", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM reputation_counts WHERE account_id = $1 AND provider_id = $2`, k.Account, k.Provider); err != nil {
		return accountstate.Pause{}, fmt.Errorf("resume: %w", err)
	}
	id := uuid.NewSHA1(eventNamespace, fmt.Appendf(nil, "%s|%s|resumed|%d", k.Account, k.Provider, lift.Version)).String()
	// The counts start afresh; the window is the report's setting, not
	// known here (0).
	snap := &queuev1.ReputationSnapshot{Level: string(OK)}
	if err := Publish(ctx, pub, k, id, queue.EventReputationResumed, "resumed by "+actor+"; the rates start afresh", snap, now); err != nil {
		return accountstate.Pause{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return accountstate.Pause{}, fmt.Errorf("resume: commit: %w", err)
	}
	return lift, states.AnnouncePause(ctx, lift)
}

// lockPause reads and locks the pause row of k.
func lockPause(ctx context.Context, tx pgx.Tx, k Key) (accountstate.Pause, error) {
	p := accountstate.Pause{Account: k.Account, Provider: k.Provider}
	err := tx.QueryRow(ctx, `SELECT version FROM provider_pauses WHERE account_id = $1 AND provider_id = $2 FOR UPDATE`,
		k.Account, k.Provider).Scan(&p.Version)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, nil
	}
	if err != nil {
		return accountstate.Pause{}, fmt.Errorf("resume: read pause: %w", err)
	}
	p.Paused = true
	return p, nil
}

// Status is where one provider configuration stands, for GetStats.
type Status struct {
	Provider string
	// Level as last assessed (ok when never).
	Level Level
	// Counts over the window, now.
	Counts Counts
	// Paused, with the pause's reason and time.
	Paused   bool
	Reason   string
	PausedAt time.Time
}

// Statuses are the account's provider configurations' standing (one, when
// provider is set), ordered by provider id.
func (c Config) Statuses(ctx context.Context, db Querier, account, provider string, now time.Time) ([]Status, error) {
	rows, err := db.Query(ctx, `
		SELECT p.id::text, COALESCE(r.level, 'ok'),
			COALESCE((SELECT sum(sends) FROM reputation_counts c WHERE c.account_id = p.account_id AND c.provider_id = p.id AND c.bucket >= $3), 0),
			COALESCE((SELECT sum(bounces) FROM reputation_counts c WHERE c.account_id = p.account_id AND c.provider_id = p.id AND c.bucket >= $3), 0),
			COALESCE((SELECT sum(complaints) FROM reputation_counts c WHERE c.account_id = p.account_id AND c.provider_id = p.id AND c.bucket >= $3), 0),
			pp.account_id IS NOT NULL, COALESCE(pp.reason, ''), pp.changed_at
		FROM provider_configs p
		LEFT JOIN reputation r ON r.account_id = p.account_id AND r.provider_id = p.id
		LEFT JOIN provider_pauses pp ON pp.account_id = p.account_id AND pp.provider_id = p.id
		WHERE p.account_id = $1 AND ($2 = '' OR p.id = NULLIF($2, '')::uuid)
		ORDER BY p.id`, account, provider, c.windowStart(now))
	if err != nil {
		return nil, fmt.Errorf("reputation statuses: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Status, error) {
		var (
			s  Status
			at *time.Time
		)
		err := r.Scan(&s.Provider, &s.Level, &s.Counts.Sends, &s.Counts.Bounces, &s.Counts.Complaints, &s.Paused, &s.Reason, &at)
		if at != nil {
			s.PausedAt = *at
		}
		if s.Paused {
			s.Level = Paused
		}
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("reputation statuses: %w", err)
	}
	return out, nil
}
