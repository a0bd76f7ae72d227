package send

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/namirasoft/email-sender/services/ingest/store"
)

// committer is group commit: the messages of concurrent calls are stored in
// one transaction (store.Accept) and their jobs published as one batch of
// asynchronous publishes whose acknowledgements are awaited together; each
// call is answered once that is done for its messages (a job JetStream did
// not acknowledge is left to the outbox relay, as for a call alone).
//
// There is no goroutine of its own: the first call that finds no group open
// opens one and leads it. The leader waits for a free slot (at most
// CommitGroups transactions are in flight at once), and once it has one, for
// the calls being prepared meanwhile (validated, looked up, encoded) to join,
// up to CommitWait after it opened the group: a call alone, as at one client,
// is committed at once. A group closes at CommitBatch messages; the leader
// then stores it, gives the slot back, publishes it and answers the others.
// Groups waiting for JetStream hold no slot.
//
// A group that the database refuses as a whole for one call's sake (an
// account deleted meanwhile, a row PostgreSQL rejects) is stored again call
// by call, so that only that call fails; an idempotency key reused for a
// different request fails only its message in any case (store.Accept).
type committer struct {
	s *Server
	// slots holds a token per group whose transaction is in flight.
	slots chan struct{}

	mu   sync.Mutex
	open *group
	// preparing counts the calls between the start of accept and their
	// commit: the calls a leader can expect to join.
	preparing atomic.Int64
}

// group is the calls stored and published together.
type group struct {
	calls []*call
	n     int // messages
	// wake is signaled when a call joins or stops preparing.
	wake chan struct{}
}

// call is one call's messages in a group.
type call struct {
	ctx  context.Context
	msgs []*store.NewMessage
	// out and err are the outcome, set before done is closed.
	out  []store.Accepted
	err  error
	done chan struct{}
}

func newCommitter(s *Server) *committer {
	return &committer{s: s, slots: make(chan struct{}, s.cfg.CommitGroups)}
}

// begin counts a call that will commit (or give up, end); end must follow
// unless commit does.
func (c *committer) begin() { c.preparing.Add(1) }

// end is a call that began and will not commit.
func (c *committer) end() {
	c.preparing.Add(-1)
	c.nudge()
}

func (c *committer) nudge() {
	c.mu.Lock()
	g := c.open
	c.mu.Unlock()
	if g != nil {
		select {
		case g.wake <- struct{}{}:
		default:
		}
	}
}

// commit stores msgs of a call that began, publishes their jobs, and returns
// the store's outcome of each. The error is for the whole call (the database
// is unavailable, the account is gone).
func (c *committer) commit(ctx context.Context, msgs []*store.NewMessage) ([]store.Accepted, error) {
	cl := &call{ctx: ctx, msgs: msgs, done: make(chan struct{})}
	c.mu.Lock()
	c.preparing.Add(-1)
	if g := c.open; g != nil && g.n+len(msgs) <= c.s.cfg.CommitBatch {
		g.calls = append(g.calls, cl)
		g.n += len(msgs)
		c.mu.Unlock()
		select {
		case g.wake <- struct{}{}:
		default:
		}
		<-cl.done
		return cl.out, cl.err
	}
	g := &group{calls: []*call{cl}, n: len(msgs), wake: make(chan struct{}, 1)}
	c.open = g
	c.mu.Unlock()
	c.lead(g)
	return cl.out, cl.err
}

// lead closes g when it is due (collecting calls meanwhile), stores and publishes it and
// answers its calls.
func (c *committer) lead(g *group) {
	deadline := time.Now().Add(c.s.cfg.CommitWait)
	timer := time.NewTimer(c.s.cfg.CommitWait)
	defer timer.Stop()
	slot := false
	for {
		c.mu.Lock()
		full := g.n >= c.s.cfg.CommitBatch
		c.mu.Unlock()
		if slot && (full || c.preparing.Load() == 0 || !time.Now().Before(deadline)) {
			break
		}
		if !slot {
			if full {
				c.slots <- struct{}{}
				slot = true
				continue
			}
			select {
			case c.slots <- struct{}{}:
				slot = true
			case <-g.wake:
			}
			continue
		}
		select {
		case <-g.wake:
		case <-timer.C:
		}
	}
	c.mu.Lock()
	if c.open == g {
		c.open = nil
	}
	calls := g.calls
	c.mu.Unlock()
	held := true
	defer func() {
		// A panic of the leader (a bug) must not leave the others waiting
		// for ever, nor keep the slot.
		if r := recover(); r != nil {
			if held {
				<-c.slots
			}
			for _, cl := range calls {
				cl.out, cl.err = nil, fmt.Errorf("group commit: %v", r)
				close(cl.done)
			}
			panic(r)
		}
	}()
	c.store(calls)
	// The slot bounds the transactions in flight only: the next group
	// commits while this one waits for JetStream (which, stalled, would
	// otherwise hold every slot up to INGEST_PUBLISH_TIMEOUT).
	<-c.slots
	held = false
	c.publish(calls)
	for _, cl := range calls {
		close(cl.done)
	}
}

// store stores the messages of calls in one transaction and sets each call's
// outcome.
func (c *committer) store(calls []*call) {
	// The calls' own cancellations do not stop the group: the others' messages
	// are in it too. The commit timeout bounds it.
	dbCtx, cancel := context.WithTimeout(context.WithoutCancel(calls[0].ctx), c.s.cfg.CommitTimeout)
	defer cancel()
	var msgs []*store.NewMessage
	for _, cl := range calls {
		msgs = append(msgs, cl.msgs...)
	}
	c.s.groupSize.Record(dbCtx, int64(len(msgs)))
	out, err := store.Accept(dbCtx, c.s.db, msgs)
	switch {
	case err == nil:
		for _, cl := range calls {
			cl.out, out = out[:len(cl.msgs)], out[len(cl.msgs):]
		}
	case len(calls) > 1 && oneCallsFault(err):
		// Stored again call by call: only the call at fault fails.
		for _, cl := range calls {
			cl.out, cl.err = store.Accept(dbCtx, c.s.db, cl.msgs)
		}
	default:
		for _, cl := range calls {
			cl.err = err
		}
	}
}

// publish publishes the jobs and events of the messages calls stored now,
// all at once, and waits for JetStream (up to INGEST_PUBLISH_TIMEOUT).
func (c *committer) publish(calls []*call) {
	var out2 outgoing
	for _, cl := range calls {
		if cl.err != nil {
			continue
		}
		for i, a := range cl.out {
			if a.Err == nil && !a.Replay {
				out2.add(cl.ctx, c.s, cl.msgs[i])
			}
		}
	}
	out2.send(context.WithoutCancel(calls[0].ctx), c.s)
}

// oneCallsFault reports whether the group's error may be one call's doing
// (its account deleted, a row PostgreSQL refused) rather than the database's
// (unreachable, timed out).
func oneCallsFault(err error) bool {
	var pgErr *pgconn.PgError
	return errors.Is(err, store.ErrAccountGone) || errors.As(err, &pgErr)
}
