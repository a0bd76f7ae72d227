package partition

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Partition is one partition of a table as the catalog has it.
type Partition struct {
	Name string
	// From and To are the range [From, To); zero for MINVALUE (From) and
	// MAXVALUE (To).
	From, To time.Time
	lo, hi   bound
}

// Beginner starts transactions: a pool or a connection.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// ErrNotPartitioned is returned for a table of the layout that the schema
// does not partition as the layout says.
var ErrNotPartitioned = errors.New("not partitioned as the layout says")

// List returns the partitions of the layout's table name in key order.
func List(ctx context.Context, db Beginner, name string) ([]Partition, error) {
	for _, t := range Layout() {
		if t.Name != name {
			continue
		}
		var out []Partition
		err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
			if err := utc(ctx, tx); err != nil {
				return err
			}
			var err error
			out, err = partitions(ctx, tx, t)
			return err
		})
		return out, err
	}
	return nil, fmt.Errorf("partition: %s is not a table of the layout", name)
}

// utc makes tx print timestamps as partitions parses them.
func utc(ctx context.Context, tx pgx.Tx) error {
	for _, q := range []string{`SET LOCAL TimeZone = 'UTC'`, `SET LOCAL DateStyle = 'ISO, YMD'`} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

// partitions lists the partitions of t in key order, read in tx (after utc).
func partitions(ctx context.Context, tx pgx.Tx, t Table) ([]Partition, error) {
	var keydef *string
	err := tx.QueryRow(ctx, `SELECT pg_get_partkeydef(to_regclass($1))`, t.Name).Scan(&keydef)
	if err != nil {
		return nil, fmt.Errorf("read partition key of %s: %w", t.Name, err)
	}
	if want := "RANGE (" + t.Key + ")"; keydef == nil || *keydef != want {
		got := "nothing"
		if keydef != nil {
			got = *keydef
		}
		return nil, fmt.Errorf("%s: %w: want %s, the schema has %s", t.Name, ErrNotPartitioned, want, got)
	}
	rows, err := tx.Query(ctx, `
		SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid)
		FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = to_regclass($1)`, t.Name)
	if err != nil {
		return nil, fmt.Errorf("list partitions of %s: %w", t.Name, err)
	}
	type row struct{ name, expr string }
	rs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		return x, r.Scan(&x.name, &x.expr)
	})
	if err != nil {
		return nil, fmt.Errorf("list partitions of %s: %w", t.Name, err)
	}
	out := make([]Partition, 0, len(rs))
	for _, r := range rs {
		lo, hi, err := parseBounds(t.Kind, r.expr)
		if err != nil {
			return nil, fmt.Errorf("partition %s of %s: %w", r.name, t.Name, err)
		}
		p := Partition{Name: r.name, lo: lo, hi: hi}
		if lo.inf == 0 {
			p.From = lo.t
		}
		if hi.inf == 0 {
			p.To = hi.t
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].lo.before(out[j].lo) })
	return out, nil
}

var boundsRE = regexp.MustCompile(`^FOR VALUES FROM \((.+)\) TO \((.+)\)$`)

// parseBounds reads pg_get_expr of a range partition's bound.
func parseBounds(kind KeyKind, expr string) (lo, hi bound, err error) {
	m := boundsRE.FindStringSubmatch(expr)
	if m == nil {
		return lo, hi, fmt.Errorf("unexpected bound %q", expr)
	}
	if lo, err = parseBound(kind, m[1]); err != nil {
		return lo, hi, err
	}
	hi, err = parseBound(kind, m[2])
	return lo, hi, err
}

func parseBound(kind KeyKind, s string) (bound, error) {
	switch s {
	case "MINVALUE":
		return minValue, nil
	case "MAXVALUE":
		return maxValue, nil
	}
	v, ok := strings.CutPrefix(s, "'")
	if v, ok = strings.CutSuffix(v, "'"); !ok || strings.Contains(v, "'") {
		return bound{}, fmt.Errorf("unexpected bound value %q", s)
	}
	if kind == MessageID {
		id, err := uuid.Parse(v)
		if err != nil {
			return bound{}, fmt.Errorf("bound %q: %w", s, err)
		}
		return at(IDTime(id)), nil
	}
	// timestamptz as PostgreSQL prints it with DateStyle ISO, TimeZone UTC.
	t, err := time.Parse("2006-01-02 15:04:05.999999999-07", v)
	if err != nil {
		return bound{}, fmt.Errorf("bound %q: %w", s, err)
	}
	return at(t), nil
}
