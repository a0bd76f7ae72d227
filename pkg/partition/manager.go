package partition

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/namirasoft/email-sender/pkg/envconfig"
	"github.com/namirasoft/email-sender/pkg/pgerr"
)

// Config sizes the partitions. Its tags are environment variables of the
// ingest service, which runs the Manager.
type Config struct {
	Period time.Duration `env:"PARTITION_PERIOD" default:"24h" help:"time range of one partition of messages, recipients, events, message contents, usage records and idempotency keys (whole minutes, at least 1h)"`
	Ahead  int           `env:"PARTITION_AHEAD" default:"3" help:"partitions made ahead of the current one"`
}

// WithDefaults fills unset fields from the default tags.
func (c Config) WithDefaults() Config {
	if c.Period == 0 {
		_ = envconfig.FillDefaults(&c, "Period")
	}
	if c.Ahead == 0 {
		_ = envconfig.FillDefaults(&c, "Ahead")
	}
	return c
}

// Validate checks a configuration after WithDefaults.
func (c Config) Validate() error {
	switch {
	case c.Period < time.Hour || c.Period%time.Minute != 0:
		return fmt.Errorf("PARTITION_PERIOD=%s: want whole minutes, at least 1h", c.Period)
	case c.Ahead < 1:
		return fmt.Errorf("PARTITION_AHEAD=%d: want 1 or more", c.Ahead)
	}
	return nil
}

// lockTimeout bounds the wait for a table's lock: creating and dropping
// partitions takes the parent's ACCESS EXCLUSIVE lock for a moment, and a
// wait behind a long query would hold every query after it. A pass that
// times out is tried again at the next one.
const lockTimeout = 500 * time.Millisecond

// maxCatchUp is how many past periods a pass makes one by one; more missed
// periods become one partition.
const maxCatchUp = 7

// Deps are what a Manager uses.
type Deps struct {
	Pool   *pgxpool.Pool
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Manager keeps every table of the Layout partitioned: each pass makes the
// partitions of the current period and Config.Ahead more, and drops the
// partitions whose whole range is older than their class's retention. One
// replica at a time runs a pass (a session advisory lock per schema).
type Manager struct {
	cfg  Config
	ret  Retention
	deps Deps
}

// New returns a manager.
func New(cfg Config, ret Retention, deps Deps) (*Manager, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := ret.validate(); err != nil {
		return nil, err
	}
	if deps.Pool == nil {
		return nil, errors.New("partition: Pool is required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	return &Manager{cfg: cfg, ret: ret, deps: deps}, nil
}

// Pass is what one RunOnce did.
type Pass struct {
	// Skipped: another replica was running a pass.
	Skipped bool
	// Created and Dropped name partitions.
	Created, Dropped []string
	// Kept names expired partitions kept because the outbox still holds a
	// message of their range (Table.KeepWhileQueued).
	Kept []string
	// Moved counts rows moved out of a _future partition into new periods.
	Moved int64
}

// RunOnce makes and drops the partitions due at the clock's now. A table
// whose maintenance fails (e.g. its lock was not granted in time) does not
// stop the others; the errors are joined.
func (m *Manager) RunOnce(ctx context.Context) (Pass, error) {
	var pass Pass
	conn, err := m.deps.Pool.Acquire(ctx)
	if err != nil {
		return pass, fmt.Errorf("partition maintenance: %w", err)
	}
	defer conn.Release()
	const key = `hashtextextended('emailsender-partitions:' || current_schema(), 0)`
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(`+key+`)`).Scan(&locked); err != nil {
		return pass, fmt.Errorf("partition maintenance lock: %w", err)
	}
	if !locked {
		pass.Skipped = true
		return pass, nil
	}
	defer func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(`+key+`)`); err != nil {
			// A session that cannot unlock must not go back to the pool
			// holding the lock: closing it releases the lock.
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	now := m.deps.Now().UTC()
	tables := Layout()
	state, err := m.read(ctx, conn.Conn(), tables)
	if err != nil {
		return pass, err
	}
	var errs []error
	for _, t := range tables {
		parts := state.parts[t.Name]
		if m.behind(parts, now) {
			if err := m.extend(ctx, conn.Conn(), t, now, &pass); err != nil {
				errs = append(errs, fmt.Errorf("make partitions of %s: %w", t.Name, err))
			}
		}
		switch drop, kept := m.expired(t, parts, state.pending, now); {
		case len(drop) > 0:
			if err := m.expire(ctx, conn.Conn(), t, now, &pass); err != nil {
				errs = append(errs, fmt.Errorf("drop expired partitions of %s: %w", t.Name, err))
			}
		case kept != "":
			pass.Kept = append(pass.Kept, kept)
		}
	}
	log := m.deps.Logger
	if len(pass.Created) > 0 || pass.Moved > 0 {
		log.InfoContext(ctx, "partitions created", "partitions", pass.Created, "rows_moved", pass.Moved)
	}
	if len(pass.Dropped) > 0 {
		log.InfoContext(ctx, "expired partitions dropped", "partitions", pass.Dropped)
	}
	if len(pass.Kept) > 0 {
		log.InfoContext(ctx, "expired partitions kept: the outbox holds messages of their range", "partitions", pass.Kept)
	}
	return pass, errors.Join(errs...)
}

// state is what a pass reads before it changes anything.
type state struct {
	parts map[string][]Partition
	// pending is the lowest message id in the outbox; nil when it is empty.
	pending *uuid.UUID
}

// read reads every table's partitions and the outbox's lowest message id
// in one transaction: a pass with nothing to do costs this one read.
func (m *Manager) read(ctx context.Context, conn *pgx.Conn, tables []Table) (state, error) {
	st := state{parts: map[string][]Partition{}}
	err := pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := utc(ctx, tx); err != nil {
			return err
		}
		for _, t := range tables {
			parts, err := partitions(ctx, tx, t)
			if err != nil {
				return err
			}
			st.parts[t.Name] = parts
		}
		var err error
		st.pending, err = oldestQueued(ctx, tx)
		return err
	})
	if err != nil {
		return st, fmt.Errorf("partition maintenance: %w", err)
	}
	return st, nil
}

// oldestQueued is the lowest message id in the outbox; nil when it is empty.
func oldestQueued(ctx context.Context, tx pgx.Tx) (*uuid.UUID, error) {
	var id uuid.UUID
	err := tx.QueryRow(ctx, `SELECT message_id FROM outbox ORDER BY message_id LIMIT 1`).Scan(&id)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("oldest message in the outbox: %w", err)
	}
	return &id, nil
}

// target is the upper end of the periods a pass makes: the end of the
// current period and Ahead more.
func (m *Manager) target(now time.Time) time.Time {
	return floor(now, m.cfg.Period).Add(time.Duration(m.cfg.Ahead+1) * m.cfg.Period)
}

// behind reports whether parts (in key order) lack a partition reaching
// MAXVALUE or do not reach target with periods.
func (m *Manager) behind(parts []Partition, now time.Time) bool {
	if len(parts) == 0 {
		return true // extend says what is wrong
	}
	top := parts[len(parts)-1]
	return top.hi.inf <= 0 || top.lo.inf != 0 || top.lo.before(at(m.target(now)))
}

// ddl runs fn in a transaction whose lock waits are bounded (lockTimeout)
// and that reads bounds in UTC.
func ddl(ctx context.Context, conn *pgx.Conn, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf(`SET LOCAL lock_timeout = %d`, lockTimeout.Milliseconds())); err != nil {
			return fmt.Errorf("set lock timeout: %w", err)
		}
		if err := utc(ctx, tx); err != nil {
			return err
		}
		return fn(tx)
	})
}

// extend makes the periods from the lower bound of the _future partition
// up to target: it detaches _future, creates the periods, moves the rows
// of their range that _future held into them, and attaches _future again
// above them. Periods are made ahead, so _future holds none unless a clock
// ran ahead or an id was not made by NewMessageID: moving rows between
// partitions is not MVCC-safe (a REPEATABLE READ transaction whose
// snapshot predates the move, reading the row by its key, finds it in
// neither partition), which is acceptable for those strays only.
func (m *Manager) extend(ctx context.Context, conn *pgx.Conn, t Table, now time.Time, pass *Pass) error {
	target := m.target(now)
	var (
		created []string
		moved   int64
	)
	err := ddl(ctx, conn, func(tx pgx.Tx) error {
		parts, err := partitions(ctx, tx, t)
		if err != nil {
			return err
		}
		if len(parts) == 0 {
			return fmt.Errorf("%s: %w: it has no partitions", t.Name, ErrNotPartitioned)
		}
		top := parts[len(parts)-1]
		parent := pgx.Identifier{t.Name}.Sanitize()
		if top.hi.inf <= 0 {
			// No partition reaches MAXVALUE (dropped by hand): make one.
			name := t.Name + futureSuffix
			if _, err := tx.Exec(ctx, `CREATE TABLE `+pgx.Identifier{name}.Sanitize()+` PARTITION OF `+parent+
				` FOR VALUES FROM (`+t.literal(top.hi)+`) TO (MAXVALUE)`); err != nil {
				return fmt.Errorf("create %s: %w", name, err)
			}
			created = append(created, name)
			top = Partition{Name: name, lo: top.hi, hi: maxValue}
		}
		start := top.lo
		if start.inf != 0 {
			return fmt.Errorf("%s: partition %s covers every key: nothing to split", t.Name, top.Name)
		}
		if !start.before(at(target)) {
			return nil
		}
		future := pgx.Identifier{top.Name}.Sanitize()
		if _, err := tx.Exec(ctx, `ALTER TABLE `+parent+` DETACH PARTITION `+future); err != nil {
			return fmt.Errorf("detach %s: %w", top.Name, err)
		}
		cur := floor(now, m.cfg.Period)
		catchUp := cur.Sub(start.t) > maxCatchUp*m.cfg.Period
		for lo := start.t; lo.Before(target); {
			hi := floor(lo, m.cfg.Period).Add(m.cfg.Period)
			if catchUp && hi.Before(cur) {
				// Many periods past that were never made (no pass ran for
				// long, or a clock jumped): one partition, not one each.
				hi = cur
			}
			name := PeriodName(t.Name, lo)
			if _, err := tx.Exec(ctx, `CREATE TABLE `+pgx.Identifier{name}.Sanitize()+` PARTITION OF `+parent+
				` FOR VALUES FROM (`+t.literal(at(lo))+`) TO (`+t.literal(at(hi))+`)`); err != nil {
				return fmt.Errorf("create %s: %w", name, err)
			}
			created = append(created, name)
			lo = hi
		}
		tag, err := tx.Exec(ctx, `WITH moved AS (DELETE FROM `+future+` WHERE `+t.rangeSQL(start, at(target))+
			` RETURNING *) INSERT INTO `+parent+` SELECT * FROM moved`)
		if err != nil {
			return fmt.Errorf("move rows out of %s: %w", top.Name, err)
		}
		moved = tag.RowsAffected()
		if _, err := tx.Exec(ctx, `ALTER TABLE `+parent+` ATTACH PARTITION `+future+
			` FOR VALUES FROM (`+t.literal(at(target))+`) TO (MAXVALUE)`); err != nil {
			return fmt.Errorf("attach %s: %w", top.Name, err)
		}
		return nil
	})
	if err != nil {
		return lockError(err)
	}
	pass.Created = append(pass.Created, created...)
	pass.Moved += moved
	return nil
}

// expired returns the partitions of t to drop at now: from the bottom, those
// whose range (and its last key's Table.Span) ends at or before now minus
// t's retention, up to the first
// that is not expired or, for KeepWhileQueued, holds the message id pending
// (kept names that one). Only the empty _past partition is not worth a
// drop: nil then.
func (m *Manager) expired(t Table, parts []Partition, pending *uuid.UUID, now time.Time) (drop []Partition, kept string) {
	cutoff := at(now.Add(-m.ret.of(t.Class)))
	for _, p := range parts {
		if p.hi.inf != 0 {
			break
		}
		end := p.hi.t.Add(t.Span) // the end of the times its keys stand for
		if cutoff.before(at(end)) {
			break
		}
		if t.KeepWhileQueued && pending != nil && bytes.Compare(pending[:], idBound(end)) < 0 {
			if !strings.HasSuffix(p.Name, pastSuffix) {
				kept = p.Name
			}
			break
		}
		drop = append(drop, p)
	}
	if len(drop) == 1 && drop[0].Name == t.Name+pastSuffix {
		return nil, kept
	}
	return drop, kept
}

// expire drops the expired partitions of t (expired, read again under the
// table's lock) and makes the _past partition cover what they covered, so
// that no key is left without a partition. The _past partition goes with
// them: it holds only keys older than every partition above it, expired
// too.
func (m *Manager) expire(ctx context.Context, conn *pgx.Conn, t Table, now time.Time, pass *Pass) error {
	var (
		dropped []string
		kept    string
	)
	err := ddl(ctx, conn, func(tx pgx.Tx) error {
		parts, err := partitions(ctx, tx, t)
		if err != nil {
			return err
		}
		var pending *uuid.UUID
		if t.KeepWhileQueued {
			if pending, err = oldestQueued(ctx, tx); err != nil {
				return err
			}
		}
		var drop []Partition
		drop, kept = m.expired(t, parts, pending, now)
		if len(drop) == 0 {
			return nil
		}
		for _, p := range drop {
			if _, err := tx.Exec(ctx, `DROP TABLE `+pgx.Identifier{p.Name}.Sanitize()); err != nil {
				return fmt.Errorf("drop %s: %w", p.Name, err)
			}
			if !strings.HasSuffix(p.Name, pastSuffix) {
				dropped = append(dropped, p.Name)
			}
		}
		past := t.Name + pastSuffix
		if _, err := tx.Exec(ctx, `CREATE TABLE `+pgx.Identifier{past}.Sanitize()+` PARTITION OF `+
			pgx.Identifier{t.Name}.Sanitize()+` FOR VALUES FROM (MINVALUE) TO (`+t.literal(drop[len(drop)-1].hi)+`)`); err != nil {
			return fmt.Errorf("create %s: %w", past, err)
		}
		return nil
	})
	if err != nil {
		return lockError(err)
	}
	if kept != "" {
		pass.Kept = append(pass.Kept, kept)
	}
	pass.Dropped = append(pass.Dropped, dropped...)
	return nil
}

func idBound(t time.Time) []byte {
	b := IDBound(t)
	return b[:]
}

// ErrLockTimeout wraps a table maintenance that gave up waiting for the
// table's lock; the next pass tries again.
var ErrLockTimeout = errors.New("lock not granted in time; postponed to the next pass")

func lockError(err error) error {
	if pgerr.Is(err, pgerr.LockNotAvailable) {
		return fmt.Errorf("%w: %w", ErrLockTimeout, err)
	}
	return err
}
