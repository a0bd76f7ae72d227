package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/queue"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// hooksAccount is the account of the webhook and WatchEvents phases (sandbox
// provider: its one real message is only there for the events to be about).
const hooksAccount = "hooks"

// runWebhook measures webhook deliveries per second to a local receiver:
// events of one real message, each for a recipient of its own (so none waits
// for another: deliveries of one message and recipient go out in order),
// published to EMAIL_EVENTS as fast as JetStream takes them, fanned out into
// PostgreSQL, signed and posted by the report, counted from the first publish
// to the receiver's last request.
func runWebhook(ctx context.Context, e *env, o options, res *Results) error {
	var got atomic.Int64
	rcv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	// The receiver's goroutines are the load's in the profiles.
	pprof.Do(ctx, pprof.Labels("part", "load"), func(context.Context) { rcv.Start() })
	defer rcv.Close()
	conn, err := grpc.NewClient(e.reportAddr, grpcInsecure())
	if err != nil {
		return err
	}
	defer conn.Close()
	actx := e.authCtx(ctx, hooksAccount)
	hook, err := v1.NewWebhookServiceClient(conn).CreateWebhook(actx, &v1.CreateWebhookRequest{Url: rcv.URL, Description: "bench"})
	if err != nil {
		return fmt.Errorf("create webhook: %w", err)
	}
	defer func() {
		_, _ = v1.NewWebhookServiceClient(conn).DeleteWebhook(e.authCtx(context.WithoutCancel(ctx), hooksAccount),
			&v1.DeleteWebhookRequest{Id: hook.GetWebhook().GetId()})
	}()
	msgID, err := e.hooksMessage(ctx)
	if err != nil {
		return err
	}
	nc, js, err := e.jetstream("bench-webhook-load")
	if err != nil {
		return err
	}
	defer nc.Close()
	// The earlier phases' events are the report's to apply and fan out
	// first; measured behind that backlog, this phase would time the backlog.
	if err := awaitEventsDrained(ctx, e, js); err != nil {
		return err
	}
	account := e.accounts[hooksAccount].AccountID
	out := &WebhookResult{Events: o.webhookEvents}
	for run := range o.webhookRuns {
		got.Store(0)
		e.log.Info("webhook delivery", "run", run+1, "events", o.webhookEvents)
		prof := startProfile(e, fmt.Sprintf("webhook-%d", run+1))
		start := time.Now()
		var perr error
		pprof.Do(ctx, pprof.Labels("part", "load"), func(ctx context.Context) {
			for from := 0; from < o.webhookEvents && perr == nil; from += 1000 {
				var batch []*nats.Msg
				for i := from; i < min(from+1000, o.webhookEvents); i++ {
					id := uuid.NewString()
					data, _ := proto.Marshal(&queuev1.DeliveryEvent{EventId: id, MessageId: msgID, AccountId: account,
						Type: queue.EventDelivered, Status: v1.MessageStatus_DELIVERED, OccurredAt: timestamppb.Now(), Attempt: 1,
						Recipients: []string{fmt.Sprintf("r%d-%d@example.org", run, i)}})
					batch = append(batch, queue.NewMsg(queue.EventSubject(account, msgID), id, data))
				}
				for _, err := range queue.PublishAll(ctx, js, batch, 30*time.Second) {
					if err != nil {
						perr = err
						break
					}
				}
			}
		})
		if perr != nil {
			prof.stop(res)
			return fmt.Errorf("publish events: %w", perr)
		}
		// A stuck pipeline makes no progress for a minute; a slow one does.
		last, lastAt := int64(-1), time.Now()
		for got.Load() < int64(o.webhookEvents) {
			if n := got.Load(); n > last {
				last, lastAt = n, time.Now()
			}
			if time.Since(lastAt) > time.Minute {
				prof.stop(res)
				return fmt.Errorf("only %d of %d webhook deliveries, none for a minute", last, o.webhookEvents)
			}
			select {
			case <-ctx.Done():
				prof.stop(res)
				return ctx.Err()
			case <-time.After(2 * time.Millisecond):
			}
		}
		el := time.Since(start)
		prof.stop(res)
		r := float64(o.webhookEvents) / el.Seconds()
		wr := WebhookRun{Seconds: el.Seconds(), PerSecond: r}
		// The machine is shared: the CPU this process and PostgreSQL used
		// tells what the run got of it.
		if p := res.Profiles[len(res.Profiles)-1]; p.Name == fmt.Sprintf("webhook-%d", run+1) {
			wr.Cores = p.HarnessCores + p.PostgresCores
			wr.OtherCores = p.OtherCores
			wr.CPUusPerEvent = 1e6 * wr.Cores / r
		}
		out.Runs = append(out.Runs, wr)
		e.log.Info("webhook delivery", "run", run+1, "per_s", int(r), "cores", fmt.Sprintf("%.2f", wr.Cores), "other_cores", fmt.Sprintf("%.2f", wr.OtherCores))
		if err := e.failed(); err != nil {
			return err
		}
	}
	per := make([]float64, len(out.Runs))
	for i, r := range out.Runs {
		per[i] = r.PerSecond
	}
	slices.Sort(per)
	out.MedianPerSecond, out.MinPerSecond, out.MaxPerSecond = per[len(per)/2], per[0], per[len(per)-1]
	res.Webhook = out
	return nil
}

// runWatch measures WatchEvents' event-to-client latency: a live watch of the
// hooks account over gRPC while events are published one at a time (each
// publish awaited, o.watchEvents in all); latency is from just before the
// publish to the event's arrival at the client.
func runWatch(ctx context.Context, e *env, o options, res *Results) error {
	conn, err := grpc.NewClient(e.reportAddr, grpcInsecure())
	if err != nil {
		return err
	}
	defer conn.Close()
	msgID, err := e.hooksMessage(ctx)
	if err != nil {
		return err
	}
	nc, js, err := e.jetstream("bench-watch-load")
	if err != nil {
		return err
	}
	defer nc.Close()
	account := e.accounts[hooksAccount].AccountID
	wctx, cancel := context.WithCancel(e.authCtx(ctx, hooksAccount))
	defer cancel()
	st, err := v1.NewReportServiceClient(conn).WatchEvents(wctx, &v1.WatchEventsRequest{Types: []string{queue.EventDelivered}})
	if err != nil {
		return fmt.Errorf("watch events: %w", err)
	}
	// The first answer says the watch is live.
	if _, err := st.Recv(); err != nil {
		return fmt.Errorf("watch events: %w", err)
	}
	e.log.Info("WatchEvents latency", "events", o.watchEvents)
	prof := startProfile(e, "watch")
	defer prof.stop(res)
	n := o.watchEvents
	var mu sync.Mutex
	sent := make(map[string]time.Time, n)
	pubErr := make(chan error, 1)
	go pprof.Do(wctx, pprof.Labels("part", "load"), func(ctx context.Context) {
		for range n {
			id := uuid.NewString()
			data, _ := proto.Marshal(&queuev1.DeliveryEvent{EventId: id, MessageId: msgID, AccountId: account,
				Type: queue.EventDelivered, Status: v1.MessageStatus_DELIVERED, OccurredAt: timestamppb.Now(), Attempt: 1})
			mu.Lock()
			sent[id] = time.Now()
			mu.Unlock()
			if _, err := js.PublishMsg(ctx, queue.NewMsg(queue.EventSubject(account, msgID), id, data)); err != nil {
				pubErr <- err
				return
			}
		}
	})
	lat := make([]time.Duration, 0, n)
	for len(lat) < n {
		r, err := st.Recv()
		if err != nil {
			select {
			case perr := <-pubErr:
				return fmt.Errorf("publish: %w", perr)
			default:
			}
			return fmt.Errorf("watch events: %w", err)
		}
		if r.GetEvent() == nil {
			continue
		}
		now := time.Now()
		mu.Lock()
		at, ok := sent[r.GetEvent().GetEventId()]
		mu.Unlock()
		if ok {
			lat = append(lat, now.Sub(at))
		}
	}
	out := &WatchResult{Events: n}
	out.P50ms, out.P95ms, out.P99ms = percentiles(lat)
	out.MaxMs = float64(lat[len(lat)-1]) / float64(time.Millisecond)
	res.Watch = out
	e.log.Info("WatchEvents latency", "p50_ms", ms(out.P50ms), "p99_ms", ms(out.P99ms))
	return nil
}

// hooksMessage is the one real message of the hooks account (accepted once).
func (e *env) hooksMessage(ctx context.Context) (string, error) {
	if e.hooksMsgID != "" {
		return e.hooksMsgID, nil
	}
	conn, err := grpc.NewClient(e.ingestAddr, grpcInsecure())
	if err != nil {
		return "", err
	}
	defer conn.Close()
	resp, err := v1.NewSendServiceClient(conn).SendEmail(e.authCtx(ctx, hooksAccount), message("hooked@example.org", 1024))
	if err != nil {
		return "", fmt.Errorf("send the hooks message: %w", err)
	}
	e.hooksMsgID = resp.GetMessageId()
	return e.hooksMsgID, nil
}

func grpcInsecure() grpc.DialOption {
	return grpc.WithTransportCredentials(insecure.NewCredentials())
}

// awaitEventsDrained waits until every consumer of EMAIL_EVENTS (the report's
// and the webhook fan-out's) has taken and acknowledged everything published
// so far.
func awaitEventsDrained(ctx context.Context, e *env, js jetstream.JetStream) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	for {
		stream, err := js.Stream(ctx, queue.EventStream)
		if err != nil {
			return fmt.Errorf("events stream: %w", err)
		}
		pending := uint64(0)
		names := stream.ConsumerNames(ctx)
		for name := range names.Name() {
			c, err := stream.Consumer(ctx, name)
			if err != nil {
				continue // removed meanwhile
			}
			info, err := c.Info(ctx)
			if err != nil {
				continue
			}
			pending += info.NumPending + uint64(info.NumAckPending)
		}
		if err := names.Err(); err != nil {
			return fmt.Errorf("events consumers: %w", err)
		}
		if pending == 0 {
			e.log.Info("events of earlier phases applied", "waited", time.Since(start).Round(time.Millisecond).String())
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("events of earlier phases still pending (%d): %w", pending, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
