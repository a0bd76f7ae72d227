package limits

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// takeRate takes up to want tokens (never past limit) from the account's
// current one-second window and returns how many it got and how long the
// window has left.
func takeRate(ctx context.Context, db DBTX, accountID string, want, limit int) (int, time.Duration, error) {
	var granted int
	var leftSec float64
	err := db.QueryRow(ctx, `
		INSERT INTO rate_windows AS r (account_id, window_start, used, last_grant)
		VALUES ($1, date_trunc('second', clock_timestamp()), LEAST($2::int, $3::int), LEAST($2::int, $3::int))
		ON CONFLICT (account_id) DO UPDATE SET
			used = CASE WHEN r.window_start >= EXCLUDED.window_start
				THEN GREATEST(r.used, LEAST($3::int, r.used + $2::int)) ELSE EXCLUDED.used END,
			last_grant = CASE WHEN r.window_start >= EXCLUDED.window_start
				THEN GREATEST(0, LEAST($3::int, r.used + $2::int) - r.used) ELSE EXCLUDED.used END,
			window_start = GREATEST(r.window_start, EXCLUDED.window_start)
		RETURNING last_grant, EXTRACT(EPOCH FROM (window_start + interval '1 second' - clock_timestamp()))::float8`,
		accountID, want, limit).Scan(&granted, &leftSec)
	if err != nil {
		return 0, 0, fmt.Errorf("take rate tokens: %w", err)
	}
	return granted, max(time.Duration(leftSec*float64(time.Second)), time.Millisecond), nil
}

// takeQuota takes up to want messages (never past limit) of the account's
// quota for the database's current UTC day, and returns how many it got, the
// day, and how long the day has left.
func takeQuota(ctx context.Context, db DBTX, accountID string, want, limit int) (int, string, time.Duration, error) {
	var granted int
	var day time.Time
	var leftSec float64
	err := db.QueryRow(ctx, `
		INSERT INTO daily_quota_usage AS q (account_id, day, used, last_grant)
		VALUES ($1, (clock_timestamp() AT TIME ZONE 'UTC')::date, LEAST($2::int, $3::int), LEAST($2::int, $3::int))
		ON CONFLICT (account_id, day) DO UPDATE SET
			used = GREATEST(q.used, LEAST($3::int, q.used + $2::int)),
			last_grant = GREATEST(0, LEAST($3::int, q.used + $2::int) - q.used)
		RETURNING last_grant, day,
			EXTRACT(EPOCH FROM ((day + 1)::timestamp - (clock_timestamp() AT TIME ZONE 'UTC')))::float8`,
		accountID, want, limit).Scan(&granted, &day, &leftSec)
	if err != nil {
		return 0, "", 0, fmt.Errorf("take daily quota: %w", err)
	}
	return granted, day.Format(time.DateOnly), max(time.Duration(leftSec*float64(time.Second)), time.Millisecond), nil
}

// Get returns the account's effective limits: its overrides, else def.
func Get(ctx context.Context, db DBTX, accountID string, def Limits) (Limits, error) {
	var rate, quota *int32
	err := db.QueryRow(ctx, `SELECT rate_per_second, daily_quota FROM account_limits WHERE account_id = $1`, accountID).Scan(&rate, &quota)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Limits{}, fmt.Errorf("read limits of account %s: %w", accountID, err)
	}
	if rate != nil {
		def.Rate = int(*rate)
	}
	if quota != nil {
		def.DailyQuota = int(*quota)
	}
	return def, nil
}

// Override is one limit to set: Default restores the configured default,
// otherwise Value is the limit (0 = unlimited). A nil *Override leaves the
// limit as it is.
type Override struct {
	Default bool
	Value   int
}

// Set stores the account's overrides (they take effect within
// LIMITS_CACHE_TTL on every replica).
func Set(ctx context.Context, db DBTX, accountID string, rate, dailyQuota *Override) error {
	if rate == nil && dailyQuota == nil {
		return errors.New("set limits: nothing to set")
	}
	var exists bool
	if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1)`, accountID).Scan(&exists); err != nil {
		return fmt.Errorf("set limits: look up account: %w", err)
	}
	if !exists {
		return fmt.Errorf("set limits: no account %s", accountID)
	}
	arg := func(o *Override) (keep bool, val *int32, err error) {
		if o == nil {
			return true, nil, nil
		}
		if o.Default {
			return false, nil, nil
		}
		if o.Value < 0 || o.Value > 1<<31-1 {
			return false, nil, fmt.Errorf("set limits: %d out of range", o.Value)
		}
		v := int32(o.Value)
		return false, &v, nil
	}
	keepRate, rateVal, err := arg(rate)
	if err != nil {
		return err
	}
	keepQuota, quotaVal, err := arg(dailyQuota)
	if err != nil {
		return err
	}
	_, err = db.Exec(ctx, `
		INSERT INTO account_limits AS l (account_id, rate_per_second, daily_quota)
		VALUES ($1, $3, $5)
		ON CONFLICT (account_id) DO UPDATE SET
			rate_per_second = CASE WHEN $2 THEN l.rate_per_second ELSE EXCLUDED.rate_per_second END,
			daily_quota = CASE WHEN $4 THEN l.daily_quota ELSE EXCLUDED.daily_quota END,
			updated_at = now()`,
		accountID, keepRate, rateVal, keepQuota, quotaVal)
	if err != nil {
		return fmt.Errorf("set limits of account %s: %w", accountID, err)
	}
	return nil
}
