// Package parked moves the jobs of a provider configuration the reputation
// guard paused back to work once the pause is lifted.
//
// A delivery that finds its job's provider configuration paused parks the job
// on queue.ParkedSubject (send.<provider_id>.<account_id>) of EMAIL_SEND: no
// scheduler takes from it, so the job is held, not lost, costs nothing while
// it waits, and the account's jobs for its other configurations go on. When a
// pause is lifted (the View's OnPause, before ResumeProvider answers) the
// Mover releases the configuration's parked jobs: each goes back on
// send.<kind>.<account_id> and is delivered as usual. A sweep every
// Interval releases what a missed lift (a worker down at the time) left
// parked. Replicas share one durable consumer per parked subject, so each job
// is moved once; a move whose ack was lost is republished with the same
// Nats-Msg-Id, which JetStream drops.
package parked

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/namirasoft/email-sender/pkg/accountstate"
	"github.com/namirasoft/email-sender/pkg/queue"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
)

// JetStream is what the Mover uses of JetStream.
type JetStream interface {
	Stream(ctx context.Context, name string) (jetstream.Stream, error)
	CreateOrUpdateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error)
	DeleteConsumer(ctx context.Context, stream, consumer string) error
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// Pauses says whether a provider configuration is paused (an
// *accountstate.View).
type Pauses interface {
	Paused(ctx context.Context, account, provider string) (accountstate.Pause, error)
}

// Key is a parked subject's provider configuration and account.
type Key struct{ Account, Provider string }

// Mover releases parked jobs.
type Mover struct {
	js       JetStream
	pauses   Pauses
	log      *slog.Logger
	interval time.Duration
	lifted   chan Key
}

// New returns a mover that sweeps every interval.
func New(js JetStream, pauses Pauses, interval time.Duration, log *slog.Logger) *Mover {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Mover{js: js, pauses: pauses, log: log, interval: interval, lifted: make(chan Key, 256)}
}

// OnPause is an accountstate.View pause handler: a lifted pause has its
// parked jobs released (by Run; it never blocks, and a lift it cannot queue
// is left to the sweep).
func (m *Mover) OnPause(p accountstate.Pause) {
	if !p.Paused {
		m.Notify(Key{Account: p.Account, Provider: p.Provider})
	}
}

// Notify asks Run to release k's parked jobs if it is not paused.
func (m *Mover) Notify(k Key) {
	select {
	case m.lifted <- k:
	default:
	}
}

// Run releases lifted configurations' jobs and sweeps every interval until
// ctx ends.
func (m *Mover) Run(ctx context.Context) error {
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case k := <-m.lifted:
			m.releaseIfLifted(ctx, k)
		case <-t.C:
			if err := m.Sweep(ctx); err != nil && ctx.Err() == nil {
				m.log.WarnContext(ctx, "sweep parked jobs", "error", err)
			}
		}
	}
}

// Sweep releases the parked jobs of every configuration that is no longer
// paused.
func (m *Mover) Sweep(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := m.js.Stream(cctx, queue.SendStream)
	if err != nil {
		return fmt.Errorf("open send stream: %w", err)
	}
	info, err := st.Info(cctx, jetstream.WithSubjectFilter(queue.SendAccountsFilter))
	if err != nil {
		return fmt.Errorf("read send subjects: %w", err)
	}
	for subj, n := range info.State.Subjects {
		if k, ok := parse(subj); ok && n > 0 {
			m.releaseIfLifted(ctx, k)
		}
	}
	return nil
}

// parse reads a parked subject, send.<provider_id>.<account_id>.
func parse(subject string) (Key, bool) {
	parts := strings.Split(subject, ".")
	if len(parts) != 3 {
		return Key{}, false
	}
	if _, err := uuid.Parse(parts[1]); err != nil {
		return Key{}, false // a provider kind
	}
	return Key{Account: parts[2], Provider: parts[1]}, true
}

func (m *Mover) releaseIfLifted(ctx context.Context, k Key) {
	p, err := m.pauses.Paused(ctx, k.Account, k.Provider)
	if err != nil {
		m.log.WarnContext(ctx, "read provider pause; parked jobs stay for the next sweep", "account_id", k.Account, "provider_id", k.Provider, "error", err)
		return
	}
	if p.Paused {
		return
	}
	n, err := m.Release(ctx, k)
	if err != nil && ctx.Err() == nil {
		m.log.WarnContext(ctx, "release parked jobs; the rest at the next sweep", "account_id", k.Account, "provider_id", k.Provider, "released", n, "error", err)
		return
	}
	if n > 0 {
		m.log.InfoContext(ctx, "released parked jobs of a resumed provider configuration", "account_id", k.Account, "provider_id", k.Provider, "jobs", n)
	}
}

// Release moves every parked job of k back to its account's subject of its
// provider kind, and returns how many it moved.
func (m *Mover) Release(ctx context.Context, k Key) (int, error) {
	name := "parked-" + k.Provider + "-" + k.Account
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	cons, err := m.js.CreateOrUpdateConsumer(cctx, queue.SendStream, jetstream.ConsumerConfig{
		Durable:           name,
		Description:       "releases the parked jobs of a resumed provider configuration",
		FilterSubject:     queue.ParkedSubject(k.Provider, k.Account),
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           30 * time.Second,
		MaxDeliver:        -1,
		InactiveThreshold: time.Minute,
	})
	cancel()
	if err != nil {
		return 0, fmt.Errorf("create consumer %s: %w", name, err)
	}
	moved := 0
	for {
		batch, err := cons.FetchNoWait(64)
		if err != nil {
			return moved, fmt.Errorf("fetch parked jobs: %w", err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			if err := m.move(ctx, msg); err != nil {
				_ = msg.Nak()
				return moved, err
			}
			moved++
		}
		if err := batch.Error(); err != nil {
			return moved, fmt.Errorf("fetch parked jobs: %w", err)
		}
		if got == 0 {
			break
		}
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := m.js.DeleteConsumer(dctx, queue.SendStream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		m.log.DebugContext(ctx, "delete parked consumer", "consumer", name, "error", err)
	}
	return moved, nil
}

// move republishes one parked job on its kind's subject, then acks it.
func (m *Mover) move(ctx context.Context, msg jetstream.Msg) error {
	var job queuev1.SendJob
	if err := proto.Unmarshal(msg.Data(), &job); err != nil || job.GetProviderKind() == "" {
		m.log.ErrorContext(ctx, "undecodable parked job; dropped", "subject", msg.Subject(), "error", err)
		return msg.Term()
	}
	md, err := msg.Metadata()
	if err != nil {
		return fmt.Errorf("parked job metadata: %w", err)
	}
	out := &nats.Msg{Subject: queue.SendSubject(job.GetProviderKind(), job.GetAccountId()), Data: msg.Data(), Header: nats.Header{}}
	for k, v := range msg.Headers() {
		if k != jetstream.MsgIDHeader && !strings.HasPrefix(k, "Nats-") {
			out.Header[k] = v
		}
	}
	out.Header.Set(jetstream.MsgIDHeader, job.GetMessageId()+"/released/"+strconv.FormatUint(md.Sequence.Stream, 10))
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := m.js.PublishMsg(pctx, out); err != nil {
		return fmt.Errorf("release parked job %s: %w", job.GetMessageId(), err)
	}
	if err := msg.DoubleAck(pctx); err != nil {
		return fmt.Errorf("ack parked job %s: %w", job.GetMessageId(), err)
	}
	return nil
}
