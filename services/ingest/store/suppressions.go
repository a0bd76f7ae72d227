package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Suppression is an address nothing is sent to.
type Suppression struct {
	Address   string
	Reason    string
	CreatedAt time.Time
}

// AddSuppression suppresses address (lower-cased) for accountID; adding it
// again updates the reason and keeps the first time.
func AddSuppression(ctx context.Context, db DBTX, accountID, address, reason string, now time.Time) (Suppression, error) {
	var s Suppression
	err := db.QueryRow(ctx, `
		INSERT INTO suppressions (account_id, address, reason, created_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (account_id, address) DO UPDATE SET reason = EXCLUDED.reason
		RETURNING address, reason, created_at`, accountID, address, reason, now).Scan(&s.Address, &s.Reason, &s.CreatedAt)
	if err != nil {
		return Suppression{}, fmt.Errorf("add suppression: %w", err)
	}
	return s, nil
}

// ListSuppressions returns up to limit suppressions of accountID with addresses
// after after, by address; with contains, only those whose address contains
// it, without regard to case (a walk of the account's suppressions in
// address order, so the cost of a rare text grows with the account's list).
func ListSuppressions(ctx context.Context, db DBTX, accountID, after, contains string, limit int) ([]Suppression, error) {
	rows, err := db.Query(ctx, `
		SELECT address, reason, created_at FROM suppressions
		WHERE account_id = $1 AND address > $2
		  AND ($3 = '' OR strpos(lower(address), lower($3)) > 0)
		ORDER BY address LIMIT $4`, accountID, after, contains, limit)
	if err != nil {
		return nil, fmt.Errorf("list suppressions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Suppression, error) {
		var s Suppression
		return s, r.Scan(&s.Address, &s.Reason, &s.CreatedAt)
	})
	if err != nil {
		return nil, fmt.Errorf("list suppressions: %w", err)
	}
	return out, nil
}

// RemoveSuppression deletes a suppression; ErrNotFound when there is none.
func RemoveSuppression(ctx context.Context, db DBTX, accountID, address string) error {
	tag, err := db.Exec(ctx, `DELETE FROM suppressions WHERE account_id = $1 AND address = $2`, accountID, address)
	if err != nil {
		return fmt.Errorf("remove suppression: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}
