package main

import (
	"context"
	"fmt"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/partition"
	"github.com/namirasoft/email-sender/pkg/queue"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

const (
	grpcConns   = 4
	batchSize   = 100
	batchCalls  = 4
	ingestWarm  = time.Second
	ingestQuiet = 500 * time.Millisecond
)

// message returns a send request with a text body of size bytes.
func message(to string, size int) *v1.SendEmailRequest {
	line := "The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs.\n"
	body := strings.Repeat(line, size/len(line)+1)[:size]
	return &v1.SendEmailRequest{Message: &v1.EmailMessage{
		From:     &v1.Address{Address: "sender@example.com", Name: "Bench Sender"},
		To:       []*v1.Address{{Address: to, Name: "Bench Recipient"}},
		Subject:  "Benchmark message",
		TextBody: body,
	}}
}

func (e *env) authCtx(ctx context.Context, account string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+e.accounts[account].APIKey)
}

func runIngest(ctx context.Context, e *env, o options, res *Results) error {
	conns, closeConns, err := dialN(e.ingestAddr, grpcConns)
	if err != nil {
		return err
	}
	defer closeConns()
	clients := make([]v1.SendServiceClient, len(conns))
	for i, c := range conns {
		clients[i] = v1.NewSendServiceClient(c)
	}
	req := message("someone@example.com", 1024)
	lim, err := newIngestLimit(ctx, e, req)
	if err != nil {
		return err
	}
	defer lim.close()
	plain, err := newPlainLimit(ctx, e, req)
	if err != nil {
		return err
	}
	defer plain.close()

	counts, err := parseCounts(o.ingestClients)
	if err != nil {
		return err
	}
	for _, n := range counts {
		if err := ctx.Err(); err != nil {
			return err
		}
		e.log.Info("ingest SendEmail", "clients", n, "duration", o.ingestDur)
		var prof *profiler
		if n == 64 || o.profileAll {
			prof = startProfile(e, fmt.Sprintf("ingest-sendemail-c%d", n))
		}
		r := loadLoop(ctx, "load", n, ingestWarm, o.ingestDur, func(ctx context.Context, i int) error {
			_, err := clients[i%len(clients)].SendEmail(e.authCtx(ctx, "ingest"), req)
			return err
		})
		prof.stop(res)
		if err := e.resetIngest(ctx); err != nil {
			return err
		}
		if o.noLimits {
			res.Ingest = append(res.Ingest, IngestPoint{Clients: n, Ingest: r})
			e.log.Info("ingest point", "clients", n, "ingest_per_s", int(r.PerSecond), "p50_ms", r.P50ms, "p99_ms", r.P99ms,
				"errors", r.Errors, "first_error", r.FirstError)
			continue
		}
		e.log.Info("ingest limit", "clients", n)
		if n == 64 {
			prof = startProfile(e, fmt.Sprintf("ingest-limit-c%d", n))
		}
		l := loadLoop(ctx, "limit", n, ingestWarm, o.ingestDur, lim.one)
		prof.stop(res)
		if err := e.resetIngest(ctx); err != nil {
			return err
		}
		e.log.Info("ingest plain limit", "clients", n)
		if n == 64 {
			prof = startProfile(e, fmt.Sprintf("ingest-plain-c%d", n))
		}
		pl := loadLoop(ctx, "limit", n, ingestWarm, o.ingestDur, plain.one)
		prof.stop(res)
		if err := e.resetIngest(ctx); err != nil {
			return err
		}
		p := IngestPoint{Clients: n, Ingest: r, Limit: l, Plain: pl}
		if l.PerSecond > 0 {
			p.Ratio = r.PerSecond / l.PerSecond
		}
		if pl.PerSecond > 0 {
			p.PlainRatio = r.PerSecond / pl.PerSecond
		}
		res.Ingest = append(res.Ingest, p)
		e.log.Info("ingest point", "clients", n, "ingest_per_s", int(r.PerSecond), "limit_per_s", int(l.PerSecond),
			"plain_per_s", int(pl.PerSecond), "ratio", fmt.Sprintf("%.2f", p.Ratio), "plain_ratio", fmt.Sprintf("%.2f", p.PlainRatio),
			"p99_ms", r.P99ms, "errors", r.Errors+l.Errors+pl.Errors)
		if err := e.failed(); err != nil {
			return err
		}
	}

	// SendBatch: batchCalls concurrent callers, batchSize messages per call.
	e.log.Info("ingest SendBatch", "callers", batchCalls, "batch", batchSize)
	breq := &v1.SendBatchRequest{}
	for range batchSize {
		breq.Messages = append(breq.Messages, req)
	}
	var items atomic.Int64
	prof := startProfile(e, "ingest-sendbatch")
	b := loadLoop(ctx, "load", batchCalls, ingestWarm, o.batchDur, func(ctx context.Context, i int) error {
		resp, err := clients[i%len(clients)].SendBatch(e.authCtx(ctx, "ingest"), breq)
		if err != nil {
			return err
		}
		for _, r := range resp.GetResults() {
			if r.GetAccepted() == nil {
				return fmt.Errorf("batch item rejected: %s", r.GetErrorMessage())
			}
		}
		return nil
	}, &items)
	prof.stop(res)
	res.Batch = BatchResult{Callers: batchCalls, BatchSize: batchSize, Calls: b,
		MessagesPerSecond: b.PerSecond * batchSize}
	e.log.Info("ingest SendBatch", "messages_per_s", int(res.Batch.MessagesPerSecond))
	return e.resetIngest(ctx)
}

// parseCounts parses a comma separated list of client counts.
func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range splitComma(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("client count %q: want a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// resetIngest drops what the ingest runs left on the stream (the parked
// sandbox jobs) and in the outbox, and analyzes the tables the runs filled.
//
// The messages, recipients and events rows stay: deleting them and vacuuming
// the empty tables (as this did) left statistics that said empty while the
// next point filled them faster than autovacuum looks (a minute), and the
// report's read of each ACCEPTED event's message (lockMessages) then cost
// ~200 µs of PostgreSQL CPU per message at whichever points came after the
// first, whatever their client count, against ~20 µs at the first (0.75 of
// the machine's 2 cores at 64 clients in the committed run; the "collapse"
// at 256 clients). Tables that grow with statistics that describe them are
// what a running system has.
func (e *env) resetIngest(ctx context.Context) error {
	time.Sleep(ingestQuiet) // the outbox deleter's last batch
	nc, js, err := e.jetstream("bench-reset")
	if err != nil {
		return err
	}
	defer nc.Close()
	// Ingest publishes each message's ACCEPTED event, which the report
	// stores: the next phase starts once they are applied (a backlog of the
	// ingest runs' events would hold the report's consumer).
	if err := awaitEventsDrained(ctx, e, js); err != nil {
		return err
	}
	st, err := js.Stream(ctx, queue.SendStream)
	if err != nil {
		return err
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSubject(queue.SendFilter("sandbox"))); err != nil {
		return fmt.Errorf("purge sandbox jobs: %w", err)
	}
	acc := e.accounts["ingest"].AccountID
	if _, err := e.db.Exec(ctx, "DELETE FROM outbox WHERE account_id = $1", acc); err != nil {
		return fmt.Errorf("clean outbox: %w", err)
	}
	_, err = e.db.Exec(ctx, "ANALYZE messages, message_contents, recipients, events, outbox")
	return err
}

// loadLoop runs n goroutines calling fn for warm+dur and measures the calls
// that started after warm and ended before warm+dur. The goroutines carry
// pprof label part=label. count, when given, is incremented per success.
func loadLoop(ctx context.Context, label string, n int, warm, dur time.Duration, fn func(ctx context.Context, i int) error, count ...*atomic.Int64) LoadResult {
	start := time.Now()
	from, to := start.Add(warm), start.Add(warm+dur)
	lat := make([][]time.Duration, n)
	errs := make([]int, n)
	var firstErr atomic.Value
	var wg sync.WaitGroup
	pprof.Do(ctx, pprof.Labels("part", label), func(ctx context.Context) {
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				samples := make([]time.Duration, 0, 4096)
				for {
					t0 := time.Now()
					if !t0.Before(to) || ctx.Err() != nil {
						break
					}
					err := fn(ctx, i)
					t1 := time.Now()
					if t0.Before(from) || t1.After(to) {
						continue
					}
					if err != nil {
						errs[i]++
						firstErr.CompareAndSwap(nil, err.Error())
						continue
					}
					samples = append(samples, t1.Sub(t0))
					for _, c := range count {
						c.Add(1)
					}
				}
				lat[i] = samples
			}()
		}
		wg.Wait()
	})
	var all []time.Duration
	r := LoadResult{Concurrency: n, Seconds: dur.Seconds()}
	for i := range n {
		all = append(all, lat[i]...)
		r.Errors += errs[i]
	}
	if v, ok := firstErr.Load().(string); ok {
		r.FirstError = v
	}
	r.Calls = len(all)
	r.PerSecond = float64(len(all)) / dur.Seconds()
	r.P50ms, r.P95ms, r.P99ms = percentiles(all)
	return r
}

// ingestLimit does what ingest does for one message with nothing around it,
// one message at a time: one pgx batch (an implicit transaction) inserting
// the same message, recipient and outbox rows, a JetStream publish of the
// same payload waiting for its ack, and the outbox row deleted in batches
// afterwards.
type ingestLimit struct {
	e       *env
	pool    *pgxpool.Pool
	nc      *nats.Conn
	js      jetstream.JetStream
	account string
	subject string
	req     *v1.SendEmailRequest
	del     chan string
	done    chan struct{}
}

func newIngestLimit(ctx context.Context, e *env, req *v1.SendEmailRequest) (*ingestLimit, error) {
	var l *ingestLimit
	var err error
	pprof.Do(ctx, pprof.Labels("part", "limit"), func(ctx context.Context) {
		var pool *pgxpool.Pool
		if pool, err = e.pool(ctx, pgConns, "limit"); err != nil {
			return
		}
		var nc *nats.Conn
		var js jetstream.JetStream
		if nc, js, err = e.jetstream("bench-limit"); err != nil {
			pool.Close()
			return
		}
		acc := e.accounts["ingest"]
		l = &ingestLimit{e: e, pool: pool, nc: nc, js: js, account: acc.AccountID,
			subject: queue.SendSubject("sandbox", acc.AccountID), req: req,
			del: make(chan string, 100_000), done: make(chan struct{})}
		go l.deleter()
	})
	return l, err
}

func (l *ingestLimit) close() {
	close(l.del)
	<-l.done
	l.nc.Close()
	l.pool.Close()
}

func (l *ingestLimit) deleter() {
	defer close(l.done)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	var ids []string
	flush := func() {
		if len(ids) == 0 {
			return
		}
		_, _ = l.pool.Exec(context.Background(), `DELETE FROM outbox WHERE account_id = $1 AND message_id = ANY($2::uuid[])`, l.account, ids)
		ids = ids[:0]
	}
	for {
		select {
		case id, ok := <-l.del:
			if !ok {
				flush()
				return
			}
			if ids = append(ids, id); len(ids) >= 500 {
				flush()
			}
		case <-t.C:
			flush()
		}
	}
}

func (l *ingestLimit) one(ctx context.Context, _ int) error {
	m := l.req.GetMessage()
	now := time.Now()
	id := uuid.Must(partition.NewMessageID(now)).String()
	acc := l.e.accounts["ingest"]
	content, err := proto.Marshal(&queuev1.SendJob{MessageId: id, AccountId: acc.AccountID, ProviderId: acc.ProviderID,
		ProviderKind: "sandbox", Message: m, AcceptedAt: timestamppb.New(now)})
	if err != nil {
		return err
	}
	status := int16(msgstatus.Queued)
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, from_name,
			subject, tags, recipient_count, size_bytes, send_at, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)`,
		id, acc.AccountID, acc.ProviderID, "sandbox", status, m.GetFrom().GetAddress(), m.GetFrom().GetName(),
		m.GetSubject(), "{}", 1, len(content), pgtype.Timestamptz{}, now)
	b.Queue(`INSERT INTO message_contents (message_id, account_id, content) VALUES ($1, $2, $3)`, id, acc.AccountID, content)
	b.Queue(`INSERT INTO recipients (message_id, idx, account_id, kind, address, name, status, status_key, updated_at)
		VALUES ($1, 0, $2, 'to', $3, $4, $5, $6, $7)`,
		id, acc.AccountID, m.GetTo()[0].GetAddress(), m.GetTo()[0].GetName(), status, msgstatus.Key(msgstatus.Queued, 0), now)
	b.Queue(`INSERT INTO outbox (message_id, account_id, subject, not_before, traceparent)
		VALUES ($1, $2, $3, now(), '')`, id, acc.AccountID, l.subject)
	if err := l.pool.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	msg := nats.NewMsg(l.subject)
	msg.Data = content
	msg.Header.Set(jetstream.MsgIDHeader, id)
	f, err := l.js.PublishMsgAsync(msg, jetstream.WithExpectStream(queue.SendStream))
	if err != nil {
		return err
	}
	select {
	case <-f.Ok():
	case err := <-f.Err():
		return err
	case <-time.After(5 * time.Second):
		return fmt.Errorf("no publish ack")
	}
	l.del <- id
	return nil
}

// plainLimit is the least a durable accept can do per message: one INSERT of
// the message row (the same columns and content, in its own transaction) and
// one JetStream publish of its job, awaited; no recipient or outbox row.
// Group commit lets SendEmail do more per message than this and still beat it
// under concurrency.
type plainLimit struct {
	e       *env
	pool    *pgxpool.Pool
	nc      *nats.Conn
	js      jetstream.JetStream
	subject string
	req     *v1.SendEmailRequest
}

func newPlainLimit(ctx context.Context, e *env, req *v1.SendEmailRequest) (*plainLimit, error) {
	var l *plainLimit
	var err error
	pprof.Do(ctx, pprof.Labels("part", "limit"), func(ctx context.Context) {
		var pool *pgxpool.Pool
		if pool, err = e.pool(ctx, pgConns, "plain"); err != nil {
			return
		}
		var nc *nats.Conn
		var js jetstream.JetStream
		if nc, js, err = e.jetstream("bench-plain"); err != nil {
			pool.Close()
			return
		}
		acc := e.accounts["ingest"]
		l = &plainLimit{e: e, pool: pool, nc: nc, js: js, subject: queue.SendSubject("sandbox", acc.AccountID), req: req}
	})
	return l, err
}

func (l *plainLimit) close() {
	l.nc.Close()
	l.pool.Close()
}

func (l *plainLimit) one(ctx context.Context, _ int) error {
	m := l.req.GetMessage()
	id := uuid.Must(uuid.NewV7()).String()
	now := time.Now()
	acc := l.e.accounts["ingest"]
	content, err := proto.Marshal(&queuev1.SendJob{MessageId: id, AccountId: acc.AccountID, ProviderId: acc.ProviderID,
		ProviderKind: "sandbox", Message: m, AcceptedAt: timestamppb.New(now)})
	if err != nil {
		return err
	}
	// One statement: the message row and its content (message_contents,
	// where the content lives since the tables are time-partitioned).
	_, err = l.pool.Exec(ctx, `WITH c AS (
			INSERT INTO message_contents (message_id, account_id, content) VALUES ($1, $2, $12))
		INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, from_name,
			subject, tags, recipient_count, size_bytes, send_at, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $13, $14, $14)`,
		id, acc.AccountID, acc.ProviderID, "sandbox", int16(msgstatus.Queued), m.GetFrom().GetAddress(), m.GetFrom().GetName(),
		m.GetSubject(), "{}", 1, len(content), content, pgtype.Timestamptz{}, now)
	if err != nil {
		return err
	}
	msg := nats.NewMsg(l.subject)
	msg.Data = content
	msg.Header.Set(jetstream.MsgIDHeader, id)
	f, err := l.js.PublishMsgAsync(msg, jetstream.WithExpectStream(queue.SendStream))
	if err != nil {
		return err
	}
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return err
	case <-time.After(5 * time.Second):
		return fmt.Errorf("no publish ack")
	}
}
