package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"

	"github.com/namirasoft/email-sender/pkg/limits"
	"github.com/namirasoft/email-sender/services/ingest"
)

const setLimitsUsage = "ingest admin set-limits --account ID [--rate N|default] [--daily-quota N|default]"

// setLimits stores an account's overrides of RATE_LIMIT_DEFAULT and
// DAILY_QUOTA_DEFAULT: a number (0 = unlimited) or "default". Every replica
// applies them within LIMITS_CACHE_TTL.
func setLimits(ctx context.Context, cfg ingest.Config, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("admin set-limits", flag.ContinueOnError)
	account := fs.String("account", "", "account id (required)")
	rate := fs.String("rate", "", "API calls per second, all replicas together: N (0 = unlimited) or default")
	quota := fs.String("daily-quota", "", "messages accepted per UTC day: N (0 = unlimited) or default")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *account == "" || (*rate == "" && *quota == "") {
		return errors.New("usage: " + setLimitsUsage)
	}
	parse := func(name, v string) (*limits.Override, error) {
		switch v {
		case "":
			return nil, nil
		case "default":
			return &limits.Override{Default: true}, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("--%s: want a number >= 0 or \"default\", got %q", name, v)
		}
		return &limits.Override{Value: n}, nil
	}
	r, err := parse("rate", *rate)
	if err != nil {
		return err
	}
	q, err := parse("daily-quota", *quota)
	if err != nil {
		return err
	}
	pool, err := adminPool(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := limits.Set(ctx, pool, *account, r, q); err != nil {
		return err
	}
	got, err := limits.Get(ctx, pool, *account, limits.Limits{Rate: cfg.API.Limits.RateDefault, DailyQuota: cfg.API.Limits.DailyQuotaDefault})
	if err != nil {
		return err
	}
	show := func(n int, unit string) string {
		if n == 0 {
			return "unlimited"
		}
		return strconv.Itoa(n) + unit
	}
	fmt.Fprintf(stdout, "account %s: rate %s, daily quota %s (in force within %s on every replica)\n",
		*account, show(got.Rate, " calls/s"), show(got.DailyQuota, " messages"), cfg.API.Limits.CacheTTL)
	return nil
}
