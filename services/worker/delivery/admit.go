package delivery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/namirasoft/email-sender/pkg/accountstate"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/services/worker/sendjob"
	"github.com/namirasoft/email-sender/services/worker/store"
)

// errAccountClosed is the cause with which Abort cancels the deliveries of
// an account that got a tombstone.
var errAccountClosed = errors.New("the account was deleted or terminated")

// heldRetry is when a held job is looked at again if it cannot be put back
// on the stream (NATS trouble).
const heldRetry = 30 * time.Second

// admit decides, before anything is recorded for the job, whether the worker
// acts on it at all: its account must not be tombstoned (the job ends
// unsent, without events) nor suspended (the job is held: put back on the
// stream without counting an attempt), and the job must agree with its
// stored message. The same query looks its recipients up on the account's
// suppression list (d.suppressed). False when the job is settled.
func (d *delivery) admit(ctx context.Context) bool {
	job := d.job
	if d.svc.states != nil {
		e, err := d.svc.states.State(ctx, job.GetAccountId())
		if err != nil {
			d.trouble(ctx, "read account state", err)
			return false
		}
		switch {
		case e.State.Tombstone():
			d.log.InfoContext(ctx, "account deleted or terminated; job ended unsent, without events", "state", e.State)
			d.settleJob(ctx, settlement{kind: term, reason: "account " + string(e.State)})
			return false
		case e.State.Held():
			d.hold(ctx, queue.SendSubject(d.job.GetProviderKind(), d.job.GetAccountId()), "held")
			return false
		}
		p, err := d.svc.states.Paused(ctx, job.GetAccountId(), job.GetProviderId())
		if err != nil {
			d.trouble(ctx, "read provider pause", err)
			return false
		}
		if p.Paused {
			d.park(ctx)
			return false
		}
	}
	if d.svc.messages == nil {
		return true
	}
	stored, suppressed, err := d.svc.messages.Check(ctx, job.GetAccountId(), job.GetMessageId(), job.GetProviderId(), sendjob.Addresses(job))
	if err != nil {
		d.trouble(ctx, "check job against its message", err)
		return false
	}
	if stored != store.StoredOK {
		// Nothing is sent and nothing is published under the job's account:
		// the job is not what the database knows.
		d.log.WarnContext(ctx, "send job disagrees with the stored message; ended unsent", "check", stored.String())
		d.settleJob(ctx, settlement{kind: term, reason: "job disagrees with the stored message: " + stored.String()})
		return false
	}
	d.suppressed = suppressed
	return true
}

// park holds a job of a paused provider configuration: it moves to the
// configuration's parked subject (queue.ParkedSubject), which no scheduler
// takes from, until the pause is lifted and the worker moves it back
// (services/worker/parked). The account's other jobs go on.
func (d *delivery) park(ctx context.Context) {
	if d.hold(ctx, queue.ParkedSubject(d.job.GetProviderId(), d.job.GetAccountId()), "parked") && d.svc.parked != nil {
		d.svc.parked(d.job.GetAccountId(), d.job.GetProviderId())
	}
}

// hold puts a job on subject (its own for a suspended account's job; the
// parked one for a paused provider configuration's) unchanged except that
// the attempts made before count on (AttemptsBefore), so the hold costs no
// attempt; the scheduler does not fetch a suspended account's jobs. When
// that fails the job comes back after heldRetry. It reports whether the job
// was moved.
func (d *delivery) hold(ctx context.Context, subject, how string) bool {
	job := proto.CloneOf(d.job)
	job.AttemptsBefore = int32(d.attempt - 1)
	data, err := proto.Marshal(job)
	if err == nil {
		msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, d.job.GetMessageId()+"/"+how+"/"+uuid.NewString())
		d.svc.tel.InjectNATS(ctx, msg.Header)
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = d.svc.jobs.PublishMsg(pctx, msg)
		cancel()
	}
	if err != nil {
		d.log.WarnContext(ctx, "hold job; it comes back later", "how", how, "error", err)
		d.settleJob(ctx, settlement{kind: nakLater, delay: heldRetry})
		return false
	}
	if how == "parked" {
		d.log.InfoContext(ctx, "provider configuration paused by the reputation guard; job parked until it is resumed", "subject", subject)
	} else {
		d.log.InfoContext(ctx, "account suspended; job held on the stream")
	}
	d.settleJob(ctx, settlement{kind: ack})
	return true
}

// track registers the delivery as running for its account and returns its
// context, canceled by Abort; untrack when done.
func (s *Service) track(ctx context.Context, d *delivery) context.Context {
	ctx, cancel := context.WithCancelCause(ctx)
	acc := d.job.GetAccountId()
	s.runMu.Lock()
	if s.running[acc] == nil {
		s.running[acc] = map[*delivery]context.CancelCauseFunc{}
	}
	s.running[acc][d] = cancel
	s.runMu.Unlock()
	return ctx
}

func (s *Service) untrack(d *delivery) {
	acc := d.job.GetAccountId()
	s.runMu.Lock()
	if cancel := s.running[acc][d]; cancel != nil {
		cancel(nil)
		delete(s.running[acc], d)
		if len(s.running[acc]) == 0 {
			delete(s.running, acc)
		}
	}
	s.runMu.Unlock()
}

// Abort cancels the deliveries in flight of an account (its provider calls
// end where they can still be aborted); they end their jobs unsent and
// publish nothing more. The worker calls it when the account gets a
// tombstone.
func (s *Service) Abort(accountID string) int {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	for _, cancel := range s.running[accountID] {
		cancel(errAccountClosed)
	}
	return len(s.running[accountID])
}

// OnAccountState is an accountstate.View change handler: a tombstone aborts
// the account's deliveries.
func (s *Service) OnAccountState(e accountstate.Entry) {
	if e.State.Tombstone() {
		if n := s.Abort(e.Account); n > 0 {
			s.log.Info("account tombstoned; deliveries in flight canceled", "account_id", e.Account, "deliveries", n, "state", e.State)
		}
	}
}

// aborted reports whether ctx was canceled by Abort; the delivery then ends
// its job without recording or publishing anything more.
func (d *delivery) aborted(ctx context.Context) bool {
	if !errors.Is(context.Cause(ctx), errAccountClosed) {
		return false
	}
	d.spanErr = fmt.Errorf("delivery aborted: %w", errAccountClosed)
	d.log.InfoContext(ctx, "account deleted or terminated during the delivery; job ended, nothing more published")
	d.settleJob(context.WithoutCancel(ctx), settlement{kind: term, reason: "account deleted or terminated"})
	return true
}
