// Package costmeter measures what a unit of work costs, for benchmarks that
// report it per message rather than per wall-clock second (a shared machine
// makes throughput noisy; CPU time and round trips are not): the CPU time of
// this process, the CPU time of the PostgreSQL backends serving one pool, the
// statements sent on that pool, and the messages one NATS connection sent and
// received. Allocations come from the benchmark itself (b.ReportAllocs).
package costmeter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
)

// Pool is a PostgreSQL pool whose statements are counted and whose backends
// are found by their application_name.
type Pool struct {
	*pgxpool.Pool
	name       string
	statements atomic.Int64

	mu     sync.Mutex
	byText map[string]*stmtStats
}

// stmtStats are the executions of one statement text and the time from
// sending it to its end, as the client saw it.
type stmtStats struct {
	n    int64
	took time.Duration
}

type startKey struct{}

type started struct {
	text string
	at   time.Time
}

// NewPool connects to url (a pgtest.DB URL) with maxConns connections; it is
// closed when tb ends.
func NewPool(tb testing.TB, url string, maxConns int32) *Pool {
	tb.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatalf("costmeter: %v", err)
	}
	p := &Pool{name: "costmeter_" + hex.EncodeToString(b[:]), byText: map[string]*stmtStats{}}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		tb.Fatalf("costmeter: parse url: %v", err)
	}
	cfg.MaxConns = maxConns
	cfg.ConnConfig.RuntimeParams["application_name"] = p.name
	cfg.ConnConfig.Tracer = (*tracer)(p)
	if p.Pool, err = pgxpool.NewWithConfig(context.Background(), cfg); err != nil {
		tb.Fatalf("costmeter: connect: %v", err)
	}
	tb.Cleanup(p.Pool.Close)
	return p
}

// tracer counts the statements of a pool: a query, an exec, each statement
// of a batch and each COPY.
type tracer Pool

func (t *tracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	t.statements.Add(1)
	return context.WithValue(ctx, startKey{}, started{text: d.SQL, at: time.Now()})
}

func (t *tracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	s, ok := ctx.Value(startKey{}).(started)
	if !ok {
		return
	}
	t.mu.Lock()
	st := t.byText[s.text]
	if st == nil {
		st = &stmtStats{}
		t.byText[s.text] = st
	}
	st.n++
	st.took += time.Since(s.at)
	t.mu.Unlock()
}

func (t *tracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

func (t *tracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {
	t.statements.Add(1)
}

func (t *tracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

func (t *tracer) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromStartData) context.Context {
	t.statements.Add(1)
	return ctx
}

func (t *tracer) TraceCopyFromEnd(context.Context, *pgx.Conn, pgx.TraceCopyFromEndData) {}

// backendCPU is the CPU time of the pool's backends now alive.
func (p *Pool) backendCPU(ctx context.Context) (map[int]time.Duration, error) {
	rows, err := p.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, p.name)
	if err != nil {
		return nil, err
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, err
	}
	out := map[int]time.Duration{}
	for _, pid := range pids {
		out[int(pid)] = procCPU(int(pid))
	}
	return out, nil
}

// procCPU is the user and system time of process pid (0 when it cannot be read).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	st := string(b)
	end := strings.LastIndexByte(st, ')')
	if end < 0 {
		return 0
	}
	f := strings.Fields(st[end+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	s, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(u+s) * time.Second / 100 // USER_HZ
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Meter is one measurement, from Start to Report.
type Meter struct {
	pool     *Pool
	conns    []*nats.Conn
	cpu      time.Duration
	pgCPU    map[int]time.Duration
	stmts    int64
	out, in  uint64
	finished bool
}

// Start begins a measurement of this process, of pool (nil: none) and of
// the NATS connections conns.
func Start(tb testing.TB, pool *Pool, conns ...*nats.Conn) *Meter {
	tb.Helper()
	m := &Meter{pool: pool, conns: conns}
	if pool != nil {
		var err error
		if m.pgCPU, err = pool.backendCPU(context.Background()); err != nil {
			tb.Fatalf("costmeter: %v", err)
		}
		m.stmts = pool.statements.Load()
	}
	for _, nc := range conns {
		st := nc.Stats()
		m.out, m.in = m.out+st.OutMsgs, m.in+st.InMsgs
	}
	m.cpu = selfCPU()
	return m
}

// Cost is what a measurement found, per unit of work.
type Cost struct {
	// CPU is this process's CPU time per unit (with everything running in it:
	// an in-process nats-server, SMTP sink, the benchmark's own goroutines).
	CPU time.Duration
	// PostgresCPU is the CPU time of the pool's backends per unit.
	PostgresCPU time.Duration
	// Statements are the statements sent on the pool per unit.
	Statements float64
	// NATSOut and NATSIn are the messages the connections sent (publishes,
	// requests, acks) and received per unit.
	NATSOut, NATSIn float64
}

// String is the cost in the units Report reports.
func (c Cost) String() string {
	return fmt.Sprintf("cpu %.0fµs, postgres cpu %.0fµs, %.2f statements, nats %.2f out %.2f in",
		float64(c.CPU)/1e3, float64(c.PostgresCPU)/1e3, c.Statements, c.NATSOut, c.NATSIn)
}

// Stop ends the measurement and returns the cost per unit of n units.
func (m *Meter) Stop(tb testing.TB, n int) Cost {
	tb.Helper()
	if m.finished || n <= 0 {
		tb.Fatalf("costmeter: Stop called twice or with %d units", n)
	}
	m.finished = true
	c := Cost{CPU: (selfCPU() - m.cpu) / time.Duration(n)}
	var out, in uint64
	for _, nc := range m.conns {
		st := nc.Stats()
		out, in = out+st.OutMsgs, in+st.InMsgs
	}
	c.NATSOut, c.NATSIn = float64(out-m.out)/float64(n), float64(in-m.in)/float64(n)
	if m.pool != nil {
		c.Statements = float64(m.pool.statements.Load()-m.stmts) / float64(n)
		now, err := m.pool.backendCPU(context.Background())
		if err != nil {
			tb.Fatalf("costmeter: %v", err)
		}
		var pg time.Duration
		for pid, t := range now {
			pg += t - m.pgCPU[pid] // a backend started since counts from zero
		}
		c.PostgresCPU = pg / time.Duration(n)
	}
	return c
}

// Report ends the measurement and reports the cost per unit of n units (unit
// names a unit: "msg", "event") as benchmark metrics.
func (m *Meter) Report(b *testing.B, n int, unit string) Cost {
	b.Helper()
	c := m.Stop(b, n)
	b.ReportMetric(float64(c.CPU)/1e3, "cpu-µs/"+unit)
	if m.pool != nil {
		if testing.Verbose() {
			m.pool.logStatements()
		}
		b.ReportMetric(float64(c.PostgresCPU)/1e3, "pg-cpu-µs/"+unit)
		b.ReportMetric(c.Statements, "pg-stmts/"+unit)
	}
	if len(m.conns) > 0 {
		b.ReportMetric(c.NATSOut, "nats-out/"+unit)
		b.ReportMetric(c.NATSIn, "nats-in/"+unit)
	}
	return c
}

// Warm opens every connection of the pool, so that connecting is not
// measured.
func (p *Pool) Warm(tb testing.TB) {
	tb.Helper()
	ctx := context.Background()
	conns := make([]*pgxpool.Conn, p.Config().MaxConns)
	for i := range conns {
		c, err := p.Acquire(ctx)
		if err != nil {
			tb.Fatalf("costmeter: warm pool: %v", err)
		}
		conns[i] = c
	}
	for _, c := range conns {
		c.Release()
	}
}

// logStatements writes the pool's statements to stderr (go test -v), most
// time first: how often each ran and how long it took from the client's side
// (all since the pool was made, the measurement's own included).
func (p *Pool) logStatements() {
	p.mu.Lock()
	defer p.mu.Unlock()
	texts := make([]string, 0, len(p.byText))
	for t := range p.byText {
		texts = append(texts, t)
	}
	slices.SortFunc(texts, func(a, b string) int { return int(p.byText[b].took - p.byText[a].took) })
	for _, t := range texts {
		st := p.byText[t]
		fmt.Fprintf(os.Stderr, "%6d × %8.1fµs  %s\n", st.n, float64(st.took)/float64(st.n)/1e3, oneLine(t, 110))
	}
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}
