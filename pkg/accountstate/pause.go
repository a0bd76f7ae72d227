package accountstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Pause is a provider configuration of an account whose sending is paused
// (by the reputation guard): sends naming it are refused and its queued mail
// is held, not lost, until the owner resumes it. It is the account state
// narrowed to one provider configuration, kept and announced the same way:
// PostgreSQL table provider_pauses is the record, mirrored into the same
// bucket under the key "<account>.<provider>", applied by the same Views and
// confirmed to the writer the same way.
type Pause struct {
	Account  string `json:"account"`
	Provider string `json:"provider"`
	// Paused is false for a pause that was lifted (the key's removal).
	Paused    bool      `json:"paused"`
	Reason    string    `json:"reason,omitempty"`
	Actor     string    `json:"actor,omitempty"`
	ChangedAt time.Time `json:"changed_at"`
	Version   int64     `json:"version"`
}

// pauseKey is the bucket key of a pause.
func pauseKey(account, provider string) string { return account + "." + provider }

// LookupPause reads whether a provider configuration of an account is paused
// from PostgreSQL.
func LookupPause(ctx context.Context, db DB, account, provider string) (Pause, error) {
	p := Pause{Account: account, Provider: provider}
	err := db.QueryRow(ctx, `SELECT reason, actor, changed_at, version FROM provider_pauses
		WHERE account_id = $1 AND provider_id = $2`, account, provider).
		Scan(&p.Reason, &p.Actor, &p.ChangedAt, &p.Version)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, nil
	}
	if err != nil {
		return Pause{}, fmt.Errorf("read pause of provider %s of account %s: %w", provider, account, err)
	}
	p.Paused = true
	return p, nil
}

// AccountPauses reads the paused provider configurations of an account.
func AccountPauses(ctx context.Context, db DB, account string) ([]Pause, error) {
	return queryPauses(ctx, db, `WHERE account_id = $1`, account)
}

func queryPauses(ctx context.Context, db DB, where string, args ...any) ([]Pause, error) {
	rows, err := db.Query(ctx, `SELECT account_id::text, provider_id::text, reason, actor, changed_at, version
		FROM provider_pauses `+where+` ORDER BY account_id, provider_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("read provider pauses: %w", err)
	}
	defer rows.Close()
	var out []Pause
	for rows.Next() {
		p := Pause{Paused: true}
		if err := rows.Scan(&p.Account, &p.Provider, &p.Reason, &p.Actor, &p.ChangedAt, &p.Version); err != nil {
			return nil, fmt.Errorf("read provider pauses: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read provider pauses: %w", err)
	}
	return out, nil
}

// WritePause stores p in PostgreSQL through db (a transaction of the caller,
// or a pool) and returns it with its version; a lifted pause (Paused false)
// removes the row. Announce it with Store.AnnouncePause once committed.
func WritePause(ctx context.Context, db DB, p Pause) (Pause, error) {
	if p.Account == "" || p.Provider == "" || strings.ContainsAny(p.Account+p.Provider, ".*> ") {
		return Pause{}, fmt.Errorf("pause: bad account %q or provider %q", p.Account, p.Provider)
	}
	if p.ChangedAt.IsZero() {
		p.ChangedAt = time.Now()
	}
	p.ChangedAt = p.ChangedAt.UTC()
	if err := db.QueryRow(ctx, `SELECT nextval('account_states_version')`).Scan(&p.Version); err != nil {
		return Pause{}, fmt.Errorf("pause version: %w", err)
	}
	var err error
	if !p.Paused {
		_, err = db.Exec(ctx, `DELETE FROM provider_pauses WHERE account_id = $1 AND provider_id = $2`, p.Account, p.Provider)
	} else {
		_, err = db.Exec(ctx, `
			INSERT INTO provider_pauses (account_id, provider_id, reason, actor, changed_at, version) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (account_id, provider_id) DO UPDATE SET reason = $3, actor = $4, changed_at = $5, version = $6`,
			p.Account, p.Provider, p.Reason, p.Actor, p.ChangedAt, p.Version)
	}
	if err != nil {
		return Pause{}, fmt.Errorf("write pause of provider %s of account %s: %w", p.Provider, p.Account, err)
	}
	return p, nil
}

// SetPause writes a pause (or lifts it) and announces it: it returns once
// every watching View applied it (or fails after Confirm, saying so; the
// pause is stored either way).
func (s *Store) SetPause(ctx context.Context, p Pause) (Pause, error) {
	p, err := WritePause(ctx, s.db, p)
	if err != nil {
		return Pause{}, err
	}
	return p, s.AnnouncePause(ctx, p)
}

// AnnouncePause mirrors p into the bucket and waits until every watching View
// applied it.
func (s *Store) AnnouncePause(ctx context.Context, p Pause) error {
	kv, err := Bucket(ctx, s.js, s.replicas)
	if err != nil {
		return err
	}
	// A lift is a value too (not a purge): it carries its version, so a
	// View never applies an older pause over it.
	b, err := json.Marshal(p)
	if err == nil {
		_, err = kv.Put(ctx, pauseKey(p.Account, p.Provider), b)
	}
	if err != nil {
		return fmt.Errorf("announce pause of provider %s of account %s: %w", p.Provider, p.Account, err)
	}
	return s.confirm(ctx)
}
