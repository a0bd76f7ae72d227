package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/namirasoft/email-sender/pkg/limits"
	"github.com/namirasoft/email-sender/pkg/partition"
	"github.com/namirasoft/email-sender/pkg/schema"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
)

// seedVersion changes whenever the seeded data would: a database seeded by
// another version is seeded again.
const seedVersion = 2

// seedParams are what a seeded database holds; its marker stores them.
type seedParams struct {
	Version  int     `json:"version"`
	Messages int64   `json:"messages"`
	Accounts int     `json:"accounts"`
	BigShare float64 `json:"big_share"`
	Days     int     `json:"days"`
}

func (p seedParams) validate() error {
	switch {
	case p.Accounts < 2:
		return errors.New("-accounts: want at least 2 (a big one and a small one)")
	case p.BigShare <= 0 || p.BigShare >= 1:
		return errors.New("-big-share: want a fraction between 0 and 1")
	case p.Days < 31:
		return errors.New("-days: want at least 31 (GetStats is measured over 30 days)")
	case p.Messages < int64(p.Accounts)*int64(p.Days):
		return fmt.Errorf("-messages: want at least one per account and day (%d)", p.Accounts*p.Days)
	}
	return nil
}

// seedMarker is the row that says a database is seeded, and with what.
type seedMarker struct {
	Params seedParams `json:"params"`
	// Reference is the seed time: the messages were created in the Days
	// before it, and the measured ranges end at it.
	Reference   time.Time `json:"reference"`
	SeedSeconds float64   `json:"seed_seconds"`
	// Rows are the row counts seeded per table.
	Rows map[string]int64 `json:"rows"`
}

// seededDB is the seeded database the harness measures.
type seededDB struct {
	cfg    *pgxpool.Config // of the seeded database; the report's pool is made from it
	pool   *pgxpool.Pool   // the harness's own
	marker seedMarker
}

func (d *seededDB) close() { d.pool.Close() }

// poolConfig returns a pool configuration for the seeded database.
func (d *seededDB) poolConfig() *pgxpool.Config { return d.cfg.Copy() }

// Tables of the harness in the seeded database. They are not part of the
// schema: the report never reads them.
const (
	markerTable    = "bench_scale_seed"
	accountsTable  = "bench_scale_accounts"
	providersTable = "bench_scale_providers"
)

// openSeeded returns the seeded database: the existing one when its marker
// matches o.seed (with pending migrations applied), else a fresh one seeded now.
func openSeeded(ctx context.Context, o options, log *slog.Logger) (*seededDB, error) {
	adminURL := pgtest.URL()
	admin, err := pgxpool.New(ctx, adminURL)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", adminURL, err)
	}
	defer admin.Close()
	cfg := admin.Config().Copy()
	cfg.ConnConfig.Database = o.database
	cfg.MaxConns = int32(max(4, o.seedWorkers+2))

	var exists bool
	if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, o.database).Scan(&exists); err != nil {
		return nil, fmt.Errorf("look for database %s: %w", o.database, err)
	}
	if exists && !o.reseed {
		db, ok, err := reuse(ctx, cfg, o.seed, log)
		if err != nil {
			return nil, err
		}
		if ok {
			return db, nil
		}
	}
	if exists {
		log.Info("dropping database", "database", o.database)
		if _, err := admin.Exec(ctx, `DROP DATABASE `+pgx.Identifier{o.database}.Sanitize()+` WITH (FORCE)`); err != nil {
			return nil, fmt.Errorf("drop database %s: %w", o.database, err)
		}
	}
	if _, err := admin.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{o.database}.Sanitize()); err != nil {
		return nil, fmt.Errorf("create database %s: %w", o.database, err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", o.database, err)
	}
	db := &seededDB{cfg: cfg, pool: pool}
	if _, err := schema.Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("migrate %s: %w", o.database, err)
	}
	if err := seed(ctx, db, o, log); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

// reuse opens the database and reports whether its marker matches p; when it
// does, pending migrations are applied and the tables analyzed again.
func reuse(ctx context.Context, cfg *pgxpool.Config, p seedParams, log *slog.Logger) (*seededDB, bool, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, false, fmt.Errorf("connect %s: %w", cfg.ConnConfig.Database, err)
	}
	var raw []byte
	err = pool.QueryRow(ctx, `SELECT marker FROM `+markerTable).Scan(&raw)
	var m seedMarker
	if err == nil {
		err = json.Unmarshal(raw, &m)
	}
	if err != nil || m.Params != p {
		pool.Close()
		log.Info("the seeded database does not match; seeding again", "database", cfg.ConnConfig.Database, "found", m.Params, "want", p, "error", err)
		return nil, false, nil
	}
	applied, err := schema.Migrate(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, false, fmt.Errorf("migrate %s: %w", cfg.ConnConfig.Database, err)
	}
	if len(applied) > 0 {
		log.Info("applied migrations to the seeded database; analyzing", "migrations", applied)
		if _, err := pool.Exec(ctx, `ANALYZE`); err != nil {
			pool.Close()
			return nil, false, fmt.Errorf("analyze: %w", err)
		}
	}
	log.Info("reusing the seeded database", "database", cfg.ConnConfig.Database, "seeded_for", m.Reference)
	return &seededDB{cfg: cfg, pool: pool, marker: m}, true, nil
}

// accountPlan is how many messages each account gets: rank 0 (the big
// account) BigShare of them, the others the rest by a Zipf-like law
// (weight rank^-0.7), so a few accounts are large and most are small.
func accountPlan(p seedParams) []int64 {
	counts := make([]int64, p.Accounts)
	counts[0] = int64(math.Round(float64(p.Messages) * p.BigShare))
	rest := p.Messages - counts[0]
	var sum float64
	for r := 1; r < p.Accounts; r++ {
		sum += math.Pow(float64(r), -0.7)
	}
	var given int64
	for r := 1; r < p.Accounts; r++ {
		counts[r] = int64(float64(rest) * math.Pow(float64(r), -0.7) / sum)
		given += counts[r]
	}
	for r := 1; given < rest; r = r%(p.Accounts-1) + 1 {
		counts[r]++
		given++
	}
	return counts
}

// providerShares are the shares of an account's provider configurations:
// the big account has five, the others two to four (the first shares,
// normalised).
var providerShares = []float64{0.50, 0.25, 0.15, 0.07, 0.03}

var providerKinds = []string{"ses", "smtp", "sandbox", "smtp", "ses"}

// seed creates the accounts, their providers and messages, and marks the
// database seeded.
func seed(ctx context.Context, db *seededDB, o options, log *slog.Logger) error {
	start := time.Now()
	p := o.seed
	ref := start.UTC().Truncate(time.Minute)
	if err := dayPartitions(ctx, db.pool, ref.Add(-time.Duration(p.Days)*24*time.Hour), ref, log); err != nil {
		return err
	}
	if err := seedAccounts(ctx, db.pool, p); err != nil {
		return err
	}
	dropped, err := dropSecondaryIndexes(ctx, db.pool)
	if err != nil {
		return err
	}
	log.Info("seeding", "messages", p.Messages, "accounts", p.Accounts, "days", p.Days, "until", ref, "workers", o.seedWorkers)
	var done atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.seedWorkers)
	for d := range p.Days {
		g.Go(func() error {
			from := ref.Add(-time.Duration(p.Days-d) * 24 * time.Hour)
			if err := seedDay(gctx, db.pool, p, d, from, from.Add(24*time.Hour)); err != nil {
				return fmt.Errorf("seed day %d: %w", d, err)
			}
			if n := done.Add(1); n%10 == 0 || int(n) == p.Days {
				log.Info("seeded days", "done", n, "of", p.Days, "elapsed", time.Since(start).Round(time.Second))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	log.Info("creating the secondary indexes", "indexes", len(dropped))
	if err := createIndexes(ctx, db.pool, dropped, o.seedWorkers); err != nil {
		return err
	}
	log.Info("vacuum analyze", "elapsed", time.Since(start).Round(time.Second))
	for _, t := range []string{"messages", "recipients", "events"} {
		if _, err := db.pool.Exec(ctx, `VACUUM (ANALYZE) `+t); err != nil {
			return fmt.Errorf("vacuum analyze %s: %w", t, err)
		}
	}
	if _, err := db.pool.Exec(ctx, `ANALYZE`); err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	m := seedMarker{Params: p, Reference: ref, Rows: map[string]int64{}}
	for _, t := range []string{"accounts", "provider_configs", "messages", "recipients", "events"} {
		var n int64
		if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM `+t).Scan(&n); err != nil {
			return fmt.Errorf("count %s: %w", t, err)
		}
		m.Rows[t] = n
	}
	m.SeedSeconds = time.Since(start).Seconds()
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if _, err := db.pool.Exec(ctx, `CREATE TABLE `+markerTable+` (marker jsonb NOT NULL)`); err != nil {
		return fmt.Errorf("create marker: %w", err)
	}
	if _, err := db.pool.Exec(ctx, `INSERT INTO `+markerTable+` (marker) VALUES ($1)`, raw); err != nil {
		return fmt.Errorf("write marker: %w", err)
	}
	db.marker = m
	log.Info("seeded", "seconds", math.Round(m.SeedSeconds), "rows", m.Rows)
	return nil
}

// seedAccounts creates the accounts (rank 0 is the big one), their provider
// configurations, and the harness's tables that name them; the accounts'
// request rate is unlimited (the harness calls as fast as answers come).
func seedAccounts(ctx context.Context, pool *pgxpool.Pool, p seedParams) error {
	counts := accountPlan(p)
	ranks := make([]int32, p.Accounts)
	for i := range ranks {
		ranks[i] = int32(i)
	}
	var (
		pRanks, pOrd []int32
		pKinds       []string
		pLo, pHi     []float64
	)
	for r := range p.Accounts {
		n := len(providerShares)
		if r > 0 {
			n = 2 + r%3
		}
		var total float64
		for _, s := range providerShares[:n] {
			total += s
		}
		lo := 0.0
		for i, s := range providerShares[:n] {
			hi := lo + s/total
			if i == n-1 {
				hi = 1.0000001 // random() < 1: the last takes the rest
			}
			pRanks, pOrd, pKinds = append(pRanks, int32(r)), append(pOrd, int32(i)), append(pKinds, providerKinds[i])
			pLo, pHi = append(pLo, lo), append(pHi, hi)
			lo = hi
		}
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		stmts := []struct {
			sql  string
			args []any
		}{
			{`CREATE TABLE ` + accountsTable + ` (
				rank     integer PRIMARY KEY,
				id       uuid NOT NULL UNIQUE,
				messages bigint NOT NULL,
				-- recipient addresses the account sends to
				addr_pop integer NOT NULL)`, nil},
			{`INSERT INTO ` + accountsTable + ` (rank, id, messages, addr_pop)
				SELECT r, gen_random_uuid(), n, greatest(100, n / 2)
				FROM unnest($1::integer[], $2::bigint[]) AS u(r, n)`, []any{ranks, counts}},
			{`CREATE TABLE ` + providersTable + ` (
				rank integer NOT NULL,
				ord  integer NOT NULL,
				id   uuid NOT NULL UNIQUE,
				kind text NOT NULL,
				-- the share [lo, hi) of the account's messages
				lo   double precision NOT NULL,
				hi   double precision NOT NULL,
				PRIMARY KEY (rank, ord))`, nil},
			{`INSERT INTO ` + providersTable + ` (rank, ord, id, kind, lo, hi)
				SELECT r, o, gen_random_uuid(), k, l, h
				FROM unnest($1::integer[], $2::integer[], $3::text[], $4::float8[], $5::float8[]) AS u(r, o, k, l, h)`,
				[]any{pRanks, pOrd, pKinds, pLo, pHi}},
			{`INSERT INTO accounts (id, name, created_at)
				SELECT id, 'bench-' || rank, now() - interval '400 days' FROM ` + accountsTable, nil},
			{`INSERT INTO provider_configs (id, account_id, name, kind, settings)
				SELECT p.id, a.id, p.kind || '-' || p.ord, p.kind, '{}'
				FROM ` + providersTable + ` p JOIN ` + accountsTable + ` a USING (rank)`, nil},
			{`UPDATE accounts a SET default_provider_id = p.id
				FROM ` + providersTable + ` p JOIN ` + accountsTable + ` b USING (rank)
				WHERE b.id = a.id AND p.ord = 0`, nil},
		}
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s.sql, s.args...); err != nil {
				return fmt.Errorf("seed accounts: %w", err)
			}
		}
		rows, err := tx.Query(ctx, `SELECT id::text FROM `+accountsTable+` ORDER BY rank`)
		if err != nil {
			return fmt.Errorf("seed accounts: %w", err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("seed accounts: %w", err)
		}
		unlimited := &limits.Override{Value: 0}
		for _, id := range ids {
			if err := limits.Set(ctx, tx, id, unlimited, nil); err != nil {
				return err
			}
		}
		return nil
	})
}

// dayPartitions lays out the (empty) tables partitioned by message id (and
// message_stats, by hour) as
// ingest's partition manager would have after running daily since from:
// below from's day a catch-all, then a partition per day up to after to.
// The migration made a history partition that takes every id before the
// minute it ran, which would hold the whole seed; it is dropped, a
// partition below from's day made in its place, and the manager, with a
// clock going from from to to a day at a time, makes the days.
func dayPartitions(ctx context.Context, pool *pgxpool.Pool, from, to time.Time, log *slog.Logger) error {
	const day = 24 * time.Hour
	first := from.UTC().Truncate(day)
	for _, t := range partition.Layout() {
		// The tables of the messages' times: by message id, and GetStats'
		// rollup by hour.
		bound := "'" + partition.IDBound(first).String() + "'"
		switch {
		case t.Kind == partition.MessageID:
		case t.Name == "message_stats":
			bound = "'" + first.Format(time.RFC3339) + "'::timestamptz"
		default:
			continue
		}
		parts, err := partition.List(ctx, pool, t.Name)
		if err != nil {
			return err
		}
		err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			for _, part := range parts {
				if _, err := tx.Exec(ctx, `DROP TABLE `+pgx.Identifier{part.Name}.Sanitize()); err != nil {
					return fmt.Errorf("drop %s: %w", part.Name, err)
				}
			}
			// The layout's catch-all below every period (partition: "_past").
			_, err := tx.Exec(ctx, `CREATE TABLE `+pgx.Identifier{t.Name + "_past"}.Sanitize()+` PARTITION OF `+
				pgx.Identifier{t.Name}.Sanitize()+` FOR VALUES FROM (MINVALUE) TO (`+bound+`)`)
			return err
		})
		if err != nil {
			return fmt.Errorf("partitions of %s: %w", t.Name, err)
		}
	}
	clock := first
	keep := 100 * 365 * day
	mgr, err := partition.New(partition.Config{Period: day, Ahead: 1},
		partition.Retention{Content: keep, Metadata: keep, Usage: keep, Idempotency: keep},
		partition.Deps{Pool: pool, Now: func() time.Time { return clock }})
	if err != nil {
		return err
	}
	var made int
	for ; !clock.After(to); clock = clock.Add(day) {
		pass, err := mgr.RunOnce(ctx)
		if err != nil {
			return fmt.Errorf("make day partitions: %w", err)
		}
		made += len(pass.Created)
	}
	log.Info("made day partitions", "from", first, "partitions", made)
	return nil
}

// index is a secondary index dropped for the seeding and made again after.
type index struct {
	name, table, def string
}

// dropSecondaryIndexes drops the indexes of messages, recipients and events
// that no constraint needs (building them once after the load is much faster
// than maintaining them row by row) and returns their definitions.
func dropSecondaryIndexes(ctx context.Context, pool *pgxpool.Pool) ([]index, error) {
	rows, err := pool.Query(ctx, `
		SELECT i.relname, t.relname, pg_get_indexdef(i.oid)
		FROM pg_index x
		JOIN pg_class i ON i.oid = x.indexrelid
		JOIN pg_class t ON t.oid = x.indrelid
		WHERE t.relname IN ('messages', 'recipients', 'events')
			AND t.relnamespace = current_schema()::regnamespace
			AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)
		ORDER BY 2, 1`)
	if err != nil {
		return nil, fmt.Errorf("list indexes: %w", err)
	}
	var out []index
	var ix index
	if _, err := pgx.ForEachRow(rows, []any{&ix.name, &ix.table, &ix.def}, func() error {
		// A partitioned table's index is defined ON ONLY the parent; made
		// again, it must cover the partitions too.
		ix.def = strings.Replace(ix.def, " ON ONLY ", " ON ", 1)
		out = append(out, ix)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list indexes: %w", err)
	}
	for _, ix := range out {
		if _, err := pool.Exec(ctx, `DROP INDEX `+pgx.Identifier{ix.name}.Sanitize()); err != nil {
			return nil, fmt.Errorf("drop index %s: %w", ix.name, err)
		}
	}
	return out, nil
}

func createIndexes(ctx context.Context, pool *pgxpool.Pool, ixs []index, workers int) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for _, ix := range ixs {
		g.Go(func() error {
			conn, err := pool.Acquire(gctx)
			if err != nil {
				return err
			}
			defer conn.Release()
			if _, err := conn.Exec(gctx, `SET maintenance_work_mem = '512MB'`); err != nil {
				return err
			}
			if _, err := conn.Exec(gctx, ix.def); err != nil {
				return fmt.Errorf("create index %s: %w", ix.name, err)
			}
			return nil
		})
	}
	return g.Wait()
}
