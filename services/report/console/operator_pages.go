package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/namirasoft/email-sender/pkg/partition"
	"github.com/namirasoft/email-sender/pkg/queue"
)

// The operator view: the installation's health across accounts. Each part
// reads a bounded amount, so that the page answers quickly at 10 million
// messages: provider configurations in trouble (a few thousand rows), the
// JetStream streams' consumers (the server's counters), the day's failovers
// (a partial index of FAILOVER events, migration 0018), the suspended and
// paused (small tables), and the accounts' share of the day's messages from
// the message_stats rollup. The share reads one index range per account (a
// quarter of a second for 1000 accounts on the data set of make
// bench-scale), so it is kept for shareTTL and the page says when it was
// computed.

// shareTTL is how long the accounts' share is reused.
const shareTTL = time.Minute

// operatorWindow is the time the failovers and the share cover.
const operatorWindow = 24 * time.Hour

type providerHealth struct {
	Account, ID, Name, Kind string
	Healthy                 bool
	HealthNote              string
	VerifiedAt              *time.Time
	VerifyOK                *bool
	VerifyDetail            string
	Reputation              string
	Paused                  bool
	PauseReason             string
	Fallback                string
}

type consumerLag struct {
	Name                                      string
	Pending, AckPending, Redelivered, Waiting uint64
	LastActive                                *time.Time
}

type streamLag struct {
	Name      string
	Missing   bool
	Error     string
	Messages  uint64
	Bytes     uint64
	Consumers []consumerLag
}

type failover struct {
	At                           time.Time
	Account, MessageID, Provider string
	Recipients                   []string
	TraceURL                     string
}

type accountShare struct {
	Account string
	Count   int64
	Percent float64
}

type accountState struct {
	Account, State, Reason, Actor string
	ChangedAt                     time.Time
}

type providerPause struct {
	Account, Provider, Name, Reason, Actor string
	ChangedAt                              time.Time
}

type operatorData struct {
	Since                                               time.Time
	ProvidersTotal, ProvidersUnhealthy, ProvidersPaused int
	Providers                                           []providerHealth
	Streams                                             []streamLag
	FailoverCount                                       int
	Failovers                                           []failover
	Share                                               []accountShare
	ShareTotal                                          int64
	ShareAsOf                                           time.Time
	States                                              []accountState
	Pauses                                              []providerPause
	CanControl                                          bool
	Done                                                string
	Traces                                              bool
}

// shareCache keeps the accounts' share for shareTTL.
type shareCache struct {
	mu    sync.Mutex
	at    time.Time
	total int64
	rows  []accountShare
}

func (c *Console) operatorOverview(w http.ResponseWriter, r *http.Request, sess *OperatorSession) {
	now := c.now()
	d := operatorData{Since: now.Add(-operatorWindow), CanControl: c.canControl(sess), Done: r.URL.Query().Get("done"),
		Traces: c.cfg.TraceURLTemplate != ""}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	// The parts read in parallel, each into its own fields of d.
	var (
		wg   sync.WaitGroup
		errs [4]error
	)
	wg.Go(func() { errs[0] = c.providerHealth(ctx, &d) })
	wg.Go(func() { d.Streams = c.streamLag(ctx) })
	wg.Go(func() { errs[1] = c.failovers(ctx, &d) })
	wg.Go(func() { errs[2] = c.states(ctx, &d) })
	wg.Go(func() { errs[3] = c.share(ctx, now, &d) })
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		c.log.ErrorContext(r.Context(), "console operator view", "error", err)
		c.renderOperator(w, r, http.StatusServiceUnavailable, "error", page{Title: "Unavailable", Operator: sess,
			Error: "The operator view cannot read the database; try again."})
		return
	}
	c.renderOperator(w, r, http.StatusOK, "operator", page{Title: "Operator", Operator: sess, Data: d})
}

// providerHealth counts the provider configurations and lists those in
// trouble: unhealthy, paused, at a reputation warning or pause, or whose
// last verification failed.
func (c *Console) providerHealth(ctx context.Context, d *operatorData) error {
	err := c.deps.Pool.QueryRow(ctx, `
		SELECT count(*), count(*) FILTER (WHERE NOT healthy), (SELECT count(*) FROM provider_pauses)
		FROM provider_configs`).Scan(&d.ProvidersTotal, &d.ProvidersUnhealthy, &d.ProvidersPaused)
	if err != nil {
		return fmt.Errorf("count providers: %w", err)
	}
	rows, err := c.deps.Pool.Query(ctx, `
		SELECT pc.account_id::text, pc.id::text, pc.name, pc.kind, pc.healthy, pc.health_note, pc.verified_at,
			(pc.last_verify->>'ok')::boolean, COALESCE(pc.last_verify->>'detail', ''), COALESCE(r.level, 'ok'),
			pp.provider_id IS NOT NULL, COALESCE(pp.reason, ''), COALESCE(fb.name, '')
		FROM provider_configs pc
		LEFT JOIN provider_pauses pp ON pp.account_id = pc.account_id AND pp.provider_id = pc.id
		LEFT JOIN reputation r ON r.account_id = pc.account_id AND r.provider_id = pc.id
		LEFT JOIN provider_configs fb ON fb.id = pc.fallback_provider_id AND fb.account_id = pc.account_id
		WHERE NOT pc.healthy OR pp.provider_id IS NOT NULL OR r.level IN ('warning', 'paused')
			OR (pc.last_verify->>'ok') = 'false'
		ORDER BY pc.healthy, pp.provider_id IS NULL, pc.updated_at DESC
		LIMIT 100`)
	if err != nil {
		return fmt.Errorf("providers in trouble: %w", err)
	}
	d.Providers, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (providerHealth, error) {
		var p providerHealth
		err := row.Scan(&p.Account, &p.ID, &p.Name, &p.Kind, &p.Healthy, &p.HealthNote, &p.VerifiedAt,
			&p.VerifyOK, &p.VerifyDetail, &p.Reputation, &p.Paused, &p.PauseReason, &p.Fallback)
		return p, err
	})
	if err != nil {
		return fmt.Errorf("providers in trouble: %w", err)
	}
	return nil
}

// operatorStreams are the streams the operator view shows.
var operatorStreams = []string{queue.SendStream, queue.EventStream, queue.InboundStream}

// streamLag reads each stream's consumers: pending (not yet delivered) and
// ack pending (delivered, not acked) are the lag. Errors are shown, not
// fatal: NATS may be down while the database is not.
func (c *Console) streamLag(ctx context.Context) []streamLag {
	out := make([]streamLag, 0, len(operatorStreams))
	for _, name := range operatorStreams {
		sl := streamLag{Name: name}
		if c.deps.JetStream == nil {
			sl.Error = "the console has no JetStream connection"
			out = append(out, sl)
			continue
		}
		st, err := c.deps.JetStream.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			sl.Missing = true
			out = append(out, sl)
			continue
		}
		if err != nil {
			sl.Error = err.Error()
			out = append(out, sl)
			continue
		}
		info, err := st.Info(ctx)
		if err != nil {
			sl.Error = err.Error()
			out = append(out, sl)
			continue
		}
		sl.Messages, sl.Bytes = info.State.Msgs, info.State.Bytes
		lister := st.ListConsumers(ctx)
		for ci := range lister.Info() {
			cl := consumerLag{Name: ci.Name, Pending: ci.NumPending, AckPending: uint64(ci.NumAckPending),
				Redelivered: uint64(ci.NumRedelivered), Waiting: uint64(ci.NumWaiting)}
			if ci.Delivered.Last != nil {
				t := *ci.Delivered.Last
				cl.LastActive = &t
			}
			sl.Consumers = append(sl.Consumers, cl)
		}
		if err := lister.Err(); err != nil {
			sl.Error = err.Error()
		}
		out = append(out, sl)
	}
	return out
}

// failovers counts the day's FAILOVER events and lists the newest, from the
// partial index events_failover (message ids are UUIDv7 of the creation
// time: the day's messages are a range of ids).
func (c *Console) failovers(ctx context.Context, d *operatorData) error {
	from := partition.IDsFrom(d.Since)
	if err := c.deps.Pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE type = 'FAILOVER' AND message_id >= $1`, from).
		Scan(&d.FailoverCount); err != nil {
		return fmt.Errorf("count failovers: %w", err)
	}
	rows, err := c.deps.Pool.Query(ctx, `
		SELECT e.occurred_at, e.account_id::text, e.message_id::text, e.recipients, COALESCE(pc.name, m.provider_kind, '')
		FROM events e
		LEFT JOIN messages m ON m.id = e.message_id
		LEFT JOIN provider_configs pc ON pc.id = m.provider_id
		WHERE e.type = 'FAILOVER' AND e.message_id >= $1
		ORDER BY e.message_id DESC
		LIMIT 50`, from)
	if err != nil {
		return fmt.Errorf("failovers: %w", err)
	}
	d.Failovers, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (failover, error) {
		var f failover
		err := row.Scan(&f.At, &f.Account, &f.MessageID, &f.Recipients, &f.Provider)
		f.TraceURL = c.traceURL(f.MessageID)
		return f, err
	})
	if err != nil {
		return fmt.Errorf("failovers: %w", err)
	}
	return nil
}

// states lists the suspended, terminated and deleted accounts, and the
// paused provider configurations.
func (c *Console) states(ctx context.Context, d *operatorData) error {
	rows, err := c.deps.Pool.Query(ctx, `
		SELECT account::text, state, reason, actor, changed_at FROM account_states
		ORDER BY state <> 'suspended', changed_at DESC LIMIT 100`)
	if err != nil {
		return fmt.Errorf("account states: %w", err)
	}
	if d.States, err = pgx.CollectRows(rows, pgx.RowToStructByPos[accountState]); err != nil {
		return fmt.Errorf("account states: %w", err)
	}
	rows, err = c.deps.Pool.Query(ctx, `
		SELECT pp.account_id::text, pp.provider_id::text, COALESCE(pc.name, ''), pp.reason, pp.actor, pp.changed_at
		FROM provider_pauses pp LEFT JOIN provider_configs pc ON pc.id = pp.provider_id
		ORDER BY pp.changed_at DESC LIMIT 100`)
	if err != nil {
		return fmt.Errorf("provider pauses: %w", err)
	}
	if d.Pauses, err = pgx.CollectRows(rows, pgx.RowToStructByPos[providerPause]); err != nil {
		return fmt.Errorf("provider pauses: %w", err)
	}
	return nil
}

// share is the top accounts by messages created in the window, from the
// rollup (message_stats and the changes not yet folded into it), one index
// range per account; reused for shareTTL.
func (c *Console) share(ctx context.Context, now time.Time, d *operatorData) error {
	sc := &c.shareCache
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.at.IsZero() || now.Sub(sc.at) >= shareTTL || now.Before(sc.at) {
		hour := now.Add(-operatorWindow).Truncate(time.Hour)
		rows, err := c.deps.Pool.Query(ctx, `
			SELECT a.id::text, s.n + COALESCE(p.n, 0)
			FROM accounts a
			CROSS JOIN LATERAL (SELECT COALESCE(sum(count), 0)::bigint AS n FROM message_stats WHERE account_id = a.id AND hour >= $1) s
			LEFT JOIN LATERAL (SELECT sum(delta)::bigint AS n FROM message_stats_pending WHERE account_id = a.id AND hour >= $1) p ON true
			WHERE s.n + COALESCE(p.n, 0) > 0
			ORDER BY 2 DESC`, hour)
		if err != nil {
			return fmt.Errorf("account share: %w", err)
		}
		all, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (accountShare, error) {
			var a accountShare
			err := row.Scan(&a.Account, &a.Count)
			return a, err
		})
		if err != nil {
			return fmt.Errorf("account share: %w", err)
		}
		var total int64
		for _, a := range all {
			total += a.Count
		}
		if len(all) > 20 {
			all = all[:20]
		}
		for i := range all {
			all[i].Percent = 100 * float64(all[i].Count) / float64(total)
		}
		sc.at, sc.total, sc.rows = now, total, all
	}
	d.Share, d.ShareTotal, d.ShareAsOf = sc.rows, sc.total, sc.at
	return nil
}

// traceURL is CONSOLE_TRACE_URL_TEMPLATE for a message ("" when unset).
// Neither messages nor events keep a trace id (the traceparent of the
// accepting call lives in the outbox only until relayed), so the template
// names the message: {message_id}, e.g. a trace search by the message_id
// attribute.
func (c *Console) traceURL(messageID string) string {
	if c.cfg.TraceURLTemplate == "" {
		return ""
	}
	return strings.ReplaceAll(c.cfg.TraceURLTemplate, "{message_id}", url.QueryEscape(messageID))
}

// operatorTrace sends the operator to the tracing UI's search for a
// message id (CONSOLE_TRACE_URL_TEMPLATE).
func (c *Console) operatorTrace(w http.ResponseWriter, r *http.Request, sess *OperatorSession) {
	id, err := uuid.Parse(strings.TrimSpace(r.URL.Query().Get("message_id")))
	if c.cfg.TraceURLTemplate == "" || err != nil {
		c.renderOperator(w, r, http.StatusBadRequest, "error", page{Title: "Bad request", Operator: sess,
			Error: "Give a message id (a UUID); trace links need CONSOLE_TRACE_URL_TEMPLATE."})
		return
	}
	http.Redirect(w, r, c.traceURL(id.String()), http.StatusSeeOther)
}
