// Package pgstats keeps PostgreSQL's planner statistics of fast-growing
// tables from saying far fewer rows than the tables hold, where autovacuum
// does not (it is off, or its analyze is disabled for the table).
//
// Statistics that undercount are not a matter of a slightly worse plan. A
// table whose pages VACUUM found empty (rows deleted while an older
// transaction still saw them, so the pages stay) has a density of zero rows
// per page in pg_class, and the planner then believes the table holds no
// rows however many pages it grows to. Every index of it looks equally
// cheap, one page, and a lookup by primary key in a batch of ids can be
// planned as a full scan of another index that holds the key as a later
// column (the report's apply read 22,000 index entries per batch of 64 events
// behind 20,000 messages that way, 1 to 3 s a batch). No query shape avoids
// that when every index of messages ends in its id; statistics that count the
// rows do.
package pgstats

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Querier is what Refresh needs: a pool or a connection.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// MinRows is the live rows below which a table's statistics are left alone:
// any plan reads a table that small quickly.
const MinRows = 1000

// Refresh analyzes the tables of the current schema among tables, and the
// partitions of those that are partitioned, whose statistics count fewer
// than half of their live rows (pg_stat_get_live_tuples, n_live_tup, which
// PostgreSQL keeps current as rows are written) and that hold at least
// MinRows, unless autovacuum looks after the table. It returns the tables
// it analyzed. ANALYZE updates pg_class, which invalidates the cached plans
// made on the old statistics.
//
// Tables the connecting role does not own are skipped by ANALYZE with a
// warning, not an error.
func Refresh(ctx context.Context, db Querier, tables ...string) ([]string, error) {
	// pg_stat_get_live_tuples on the candidates, not pg_stat_user_tables:
	// the view computes its columns for every table of the database.
	rows, err := db.Query(ctx, `
		SELECT format('%I.%I', n.nspname, c.relname)
		FROM unnest($1::text[]) AS t(name)
		CROSS JOIN LATERAL pg_partition_tree(to_regclass(t.name)) AS pt
		JOIN pg_class c ON c.oid = pt.relid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r'
			AND pg_stat_get_live_tuples(c.oid) >= $2
			AND pg_stat_get_live_tuples(c.oid) > 2 * greatest(c.reltuples, 0)
			AND NOT (current_setting('autovacuum')::boolean
				AND coalesce((SELECT option_value::boolean FROM pg_options_to_table(c.reloptions)
					WHERE option_name = 'autovacuum_enabled'), true))
		ORDER BY 1`, tables, MinRows)
	if err != nil {
		return nil, fmt.Errorf("stale statistics: %w", err)
	}
	stale, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("stale statistics: %w", err)
	}
	for i, t := range stale {
		if _, err := db.Exec(ctx, `ANALYZE `+t); err != nil {
			return stale[:i], fmt.Errorf("analyze %s: %w", t, err)
		}
	}
	return stale, nil
}
