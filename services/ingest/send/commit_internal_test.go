package send

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
	"github.com/namirasoft/email-sender/services/ingest/outbox"
	"github.com/namirasoft/email-sender/services/ingest/store"
)

// commitBundle is a send Server on real PostgreSQL and JetStream, for its
// committer.
type commitBundle struct {
	db       *pgtest.DB
	js       jetstream.JetStream
	s        *Server
	accounts []string
}

func setupCommit(t *testing.T, cfg Config) *commitBundle {
	t.Helper()
	b := &commitBundle{db: pgtest.New(t)}
	ns := natstest.Start(t)
	nc, err := nats.Connect(ns.URL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	b.js, err = jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, queue.EnsureStreams(t.Context(), b.js, queue.StreamConfig{}))
	for range 2 {
		id := uuid.NewString()
		require.NoError(t, store.CreateAccount(t.Context(), b.db.Pool, store.NewAccount{ID: id, Name: "commit"}))
		b.accounts = append(b.accounts, id)
	}
	log := slog.New(slog.DiscardHandler)
	deleter := outbox.NewDeleter(b.db.Pool, outbox.DeleterConfig{Interval: 10 * time.Millisecond}, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- deleter.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	b.s = New(cfg, Deps{DB: b.db.Pool, Publisher: b.js, Deleter: deleter, Logger: log})
	return b
}

// messages are n new messages of account (with key and request hash when
// key is set).
func messages(account string, n int, key, hash string) []*store.NewMessage {
	var out []*store.NewMessage
	for range n {
		id := uuid.Must(uuid.NewV7()).String()
		m := &store.NewMessage{
			ID: id, AccountID: account, ProviderID: uuid.NewString(), ProviderKind: "sandbox", Status: msgstatus.Queued,
			FromAddress: "a@example.com", Recipients: []store.Recipient{{Kind: "to", Address: "b@example.com"}},
			Content: []byte("job " + id), NATSSubject: queue.SendSubject("sandbox", account), CreatedAt: time.Now(),
			IdempotencyKey: key,
		}
		if key != "" {
			m.RequestHash = []byte(hash)
		}
		out = append(out, m)
	}
	return out
}

type commitResult struct {
	out []store.Accepted
	err error
}

// group commits calls as one group: the test holds every slot while
// the calls gather behind the first one, then lets them go.
func (b *commitBundle) group(t *testing.T, calls ...[]*store.NewMessage) []commitResult {
	t.Helper()
	c := b.s.commits
	for range cap(c.slots) {
		c.slots <- struct{}{}
	}
	res := make([]commitResult, len(calls))
	var wg sync.WaitGroup
	for i, msgs := range calls {
		c.begin()
		wg.Go(func() { res[i].out, res[i].err = c.commit(context.Background(), msgs) })
		require.Eventually(t, func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.open != nil && len(c.open.calls) == i+1
		}, 10*time.Second, time.Millisecond, "call %d joins the group", i)
	}
	for range cap(c.slots) {
		<-c.slots
	}
	wg.Wait()
	return res
}

// transactions counts the transactions that stored ids.
func (b *commitBundle) transactions(t *testing.T, ids ...string) int {
	t.Helper()
	var n int
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT count(DISTINCT xmin::text) FROM messages WHERE id = ANY($1::uuid[])`, ids).Scan(&n))
	return n
}

func (b *commitBundle) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), sql, args...).Scan(&n))
	return n
}

// jobs counts the send stream's jobs.
func (b *commitBundle) jobs(t *testing.T) int {
	t.Helper()
	s, err := b.js.Stream(t.Context(), queue.SendStream)
	require.NoError(t, err)
	info, err := s.Info(t.Context())
	require.NoError(t, err)
	return int(info.State.Msgs)
}

func ids(msgs ...[]*store.NewMessage) []string {
	var out []string
	for _, l := range msgs {
		for _, m := range l {
			out = append(out, m.ID)
		}
	}
	return out
}

// Calls of a group are stored in one transaction, their jobs published, and
// each gets its own messages' outcomes; a call the database refuses fails
// alone, and so does a message whose idempotency key is taken.
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// calls of accounts[0] and accounts[1]; goneB deletes accounts[1]
		// first.
		calls func(a, b string) [][]*store.NewMessage
		goneB bool
		// want per call: nil (every message stored now), errGone, or the
		// outcomes: stored, replay of call i's first message (replayOf),
		// mismatch.
		want         []any
		transactions int
	}{
		{name: "three calls, two accounts, one transaction", calls: func(a, b string) [][]*store.NewMessage {
			return [][]*store.NewMessage{messages(a, 1, "", ""), messages(b, 2, "", ""), messages(a, 1, "", "")}
		}, want: []any{nil, nil, nil}, transactions: 1},
		{name: "a deleted account fails only its call", goneB: true, calls: func(a, b string) [][]*store.NewMessage {
			return [][]*store.NewMessage{messages(a, 1, "", ""), messages(b, 1, "", ""), messages(a, 2, "", "")}
		}, want: []any{nil, store.ErrAccountGone, nil}, transactions: 2},
		{name: "one key in two calls: the second is a replay", calls: func(a, _ string) [][]*store.NewMessage {
			return [][]*store.NewMessage{messages(a, 1, "k", "h"), messages(a, 1, "k", "h"), messages(a, 1, "", "")}
		}, want: []any{nil, replayOf(0), nil}, transactions: 1},
		{name: "one key for two requests: the second fails alone", calls: func(a, _ string) [][]*store.NewMessage {
			return [][]*store.NewMessage{messages(a, 1, "k", "h"), messages(a, 1, "k", "other"), messages(a, 1, "", "")}
		}, want: []any{nil, store.ErrIdempotencyMismatch, nil}, transactions: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupCommit(t, Config{CommitGroups: 1, PublishTimeout: 5 * time.Second})
			a, other := b.accounts[0], b.accounts[1]
			if tt.goneB {
				_, err := b.db.Pool.Exec(t.Context(), `DELETE FROM accounts WHERE id = $1`, other)
				require.NoError(t, err)
			}
			calls := tt.calls(a, other)
			res := b.group(t, calls...)
			var stored []string
			for i, w := range tt.want {
				switch w := w.(type) {
				case nil:
					require.NoError(t, res[i].err, "call %d", i)
					for j, m := range calls[i] {
						require.Equal(t, store.Accepted{MessageID: m.ID, Status: msgstatus.Queued}, res[i].out[j], "call %d", i)
						stored = append(stored, m.ID)
					}
				case replayOf:
					require.NoError(t, res[i].err)
					require.Equal(t, store.Accepted{MessageID: calls[w][0].ID, Status: msgstatus.Queued, Replay: true}, res[i].out[0])
				case error:
					if res[i].err != nil {
						require.ErrorIs(t, res[i].err, w, "call %d", i)
					} else {
						require.ErrorIs(t, res[i].out[0].Err, w, "call %d", i)
					}
				}
			}
			require.Equal(t, len(stored), b.count(t, `SELECT count(*) FROM messages`), "only the calls that succeeded are stored")
			require.Equal(t, tt.transactions, b.transactions(t, stored...))
			require.Eventually(t, func() bool { return b.jobs(t) == len(stored) }, 10*time.Second, 10*time.Millisecond, "a job per stored message")
			require.Eventually(t, func() bool { return b.count(t, `SELECT count(*) FROM outbox`) == 0 }, 10*time.Second, 10*time.Millisecond,
				"the published jobs' outbox rows are deleted")
		})
	}
}

type replayOf int

// A call alone is committed at once, not after CommitWait.
func TestGroupCommitAloneDoesNotWait(t *testing.T) {
	t.Parallel()
	b := setupCommit(t, Config{CommitWait: time.Hour, PublishTimeout: 5 * time.Second})
	c := b.s.commits
	for range 3 {
		c.begin()
		done := make(chan error, 1)
		go func() {
			_, err := c.commit(context.Background(), messages(b.accounts[0], 1, "", ""))
			done <- err
		}()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(time.Minute):
			t.Fatal("a call alone waited for others")
		}
	}
}

// A leader waits, up to CommitWait, for the calls being prepared, and they
// share its transaction.
func TestGroupCommitWaitsForCallsBeingPrepared(t *testing.T) {
	t.Parallel()
	b := setupCommit(t, Config{CommitWait: time.Hour, PublishTimeout: 5 * time.Second})
	c := b.s.commits
	first, second := messages(b.accounts[0], 1, "", ""), messages(b.accounts[1], 1, "", "")
	c.begin() // the second call, still validating
	c.begin()
	done := make(chan error, 1)
	go func() {
		_, err := c.commit(context.Background(), first)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("the leader did not wait for the call being prepared (err %v)", err)
	default:
	}
	_, err := c.commit(context.Background(), second)
	require.NoError(t, err)
	require.NoError(t, <-done)
	require.Equal(t, 1, b.transactions(t, ids(first, second)...))

	// A call that gives up while being prepared (invalid, say) does not hold
	// the leader either.
	c.begin()
	c.begin()
	go func() {
		_, err := c.commit(context.Background(), messages(b.accounts[0], 1, "", ""))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	c.end()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("the leader waited for a call that ended")
	}
}

// stalled is a JetStream that takes every publish and acknowledges none (a
// stalled server behind a live connection).
type stalled struct{}

func (stalled) PublishMsgAsync(m *nats.Msg, _ ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	return stalledFuture{m}, nil
}

type stalledFuture struct{ m *nats.Msg }

func (f stalledFuture) Ok() <-chan *jetstream.PubAck { return nil }
func (f stalledFuture) Err() <-chan error            { return nil }
func (f stalledFuture) Msg() *nats.Msg               { return f.m }

// Groups waiting for JetStream hold no slot: with one slot and a stalled
// JetStream, later calls still commit (and are answered after the publish
// timeout, their jobs left to the relay).
func TestGroupCommitStalledJetStreamHoldsNoSlot(t *testing.T) {
	t.Parallel()
	b := setupCommit(t, Config{CommitGroups: 1, PublishTimeout: 3 * time.Second})
	b.s.pub = stalled{}
	c := b.s.commits
	const calls = 3
	done := make(chan error, calls)
	for range calls {
		c.begin()
		go func() {
			_, err := c.commit(context.Background(), messages(b.accounts[0], 1, "", ""))
			done <- err
		}()
	}
	require.Eventually(t, func() bool { return b.count(t, `SELECT count(*) FROM messages`) == calls }, 30*time.Second, 10*time.Millisecond,
		"every call committed while the first ones wait for JetStream")
	for range calls {
		require.NoError(t, <-done, "answered after the publish timeout: the job is left to the relay")
	}
	require.Equal(t, calls, b.count(t, `SELECT count(*) FROM outbox`), "the outbox rows stay until the relay publishes them")
}
