package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
)

// measure makes o.warmup unmeasured calls of the shape, then o.calls measured
// ones, one at a time, then one more whose SQL it records and explains.
func measure(ctx context.Context, svc *reportService, sh shape, o options) (ShapeResult, error) {
	res := ShapeResult{Name: sh.name, RPC: sh.rpc, Account: sh.account.label, Calls: o.calls, SlowPath: sh.slowPath}
	req, err := protojson.MarshalOptions{}.Marshal(sh.requests[0])
	if err != nil {
		return res, err
	}
	res.Request = string(req)
	if len(sh.requests) > 1 {
		res.Request = fmt.Sprintf("%d requests like %s", len(sh.requests), req)
	}
	for i := range o.warmup {
		if _, err := sh.call(ctx, i); err != nil {
			return res, err
		}
	}
	durations := make([]time.Duration, 0, o.calls)
	for i := range o.calls {
		t := time.Now()
		n, err := sh.call(ctx, o.warmup+i)
		d := time.Since(t)
		if err != nil {
			return res, err
		}
		durations = append(durations, d)
		res.Rows = n
	}
	slices.Sort(durations)
	res.P50ms, res.P95ms = ms(percentile(durations, 0.50)), ms(percentile(durations, 0.95))
	res.MaxMs = ms(durations[len(durations)-1])
	res.Met = res.P95ms < ms(o.target)

	key := sh.account.label + "/" + sh.name
	ectx := metadata.AppendToOutgoingContext(ctx, shapeHeader, key)
	if _, err := sh.call(ectx, 0); err != nil {
		return res, err
	}
	for _, st := range svc.rec.take(key) {
		if !explainable(st.sql) {
			continue
		}
		e, err := explain(ctx, svc.db.pool, st)
		if err != nil {
			return res, fmt.Errorf("explain %s: %w", normalizeSQL(st.sql), err)
		}
		res.Explains = append(res.Explains, e)
	}
	return res, nil
}

// explain runs EXPLAIN (ANALYZE, BUFFERS) of a statement as the report ran
// it. A statement run as a named prepared statement (pgx's default mode, the
// statement cache) is prepared likewise and executed five times first, so the
// plan shown is the one PostgreSQL settles on (from the sixth execution on it
// may switch to a generic plan, made without the arguments' values); one run
// as an unnamed statement (an explicit pgx.QueryExecMode other than
// QueryExecModeCacheStatement) is planned with its arguments every time.
func explain(ctx context.Context, pool *pgxpool.Pool, st statement) (Explain, error) {
	e := Explain{SQL: normalizeSQL(st.sql)}
	args, mode := st.args, pgx.QueryExecModeCacheStatement
	if len(args) > 0 {
		if m, ok := args[0].(pgx.QueryExecMode); ok {
			args, mode = args[1:], m
		}
	}
	for _, a := range args {
		e.Args = append(e.Args, fmt.Sprint(a))
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return e, err
	}
	defer conn.Release()
	lines := func(sql string, args ...any) error {
		rows, err := conn.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
		e.Plan = plan
		return err
	}
	if mode != pgx.QueryExecModeCacheStatement {
		e.Mode = "unnamed statement (" + mode.String() + "): planned with the arguments at every call"
		return e, lines(`EXPLAIN (ANALYZE, BUFFERS) `+st.sql, args...)
	}
	e.Mode = "prepared statement (pgx statement cache): the plan of its sixth execution"
	const name = "bench_scale_explain"
	sd, err := conn.Conn().Prepare(ctx, name, st.sql)
	if err != nil {
		return e, err
	}
	defer func() { _ = conn.Conn().Deallocate(context.WithoutCancel(ctx), name) }()
	for range 5 {
		rows, err := conn.Query(ctx, name, args...)
		if err != nil {
			return e, err
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return e, err
		}
	}
	// EXECUTE takes its arguments as SQL: each as a literal of its
	// parameter's type, written by PostgreSQL itself.
	lits := make([]string, len(args))
	for i, a := range args {
		var typ, lit string
		if err := conn.QueryRow(ctx, `SELECT format_type($1::oid, NULL)`, sd.ParamOIDs[i]).Scan(&typ); err != nil {
			return e, err
		}
		if err := conn.QueryRow(ctx, `SELECT quote_nullable($1::`+typ+`)`, a).Scan(&lit); err != nil {
			return e, fmt.Errorf("argument %d: %w", i+1, err)
		}
		lits[i] = lit + "::" + typ
	}
	call := name
	if len(lits) > 0 {
		call += "(" + strings.Join(lits, ", ") + ")"
	}
	return e, lines(`EXPLAIN (ANALYZE, BUFFERS) EXECUTE ` + call)
}

// explainable: statements that only read (EXPLAIN ANALYZE runs them).
func explainable(sql string) bool {
	s := strings.ToUpper(strings.TrimSpace(sql))
	if !strings.HasPrefix(s, "SELECT") && !strings.HasPrefix(s, "WITH") {
		return false
	}
	for _, w := range []string{"INSERT ", "UPDATE ", "DELETE ", "FOR UPDATE"} {
		if strings.Contains(s, w) {
			return false
		}
	}
	return true
}

// normalizeSQL puts a statement on as few lines as reads well: the
// indentation of Go source is dropped.
func normalizeSQL(sql string) string {
	lines := strings.Split(strings.TrimSpace(sql), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return strings.Join(lines, "\n")
}

// percentile by the nearest rank of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }
