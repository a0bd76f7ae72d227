package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	gosmtp "github.com/wneessen/go-mail/smtp"

	"github.com/namirasoft/email-sender/pkg/mime"
	"github.com/namirasoft/email-sender/pkg/msgstatus"
	"github.com/namirasoft/email-sender/pkg/testkit/smtpsink"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// textBody is size bytes of deterministic, word-like text: it compresses
// about as well as real mail (PostgreSQL TOAST and the MIME encoder see
// realistic input), unlike one line repeated.
func textBody(size int) string {
	words := strings.Fields("the of and to in is you that it he was for on are as with his they at be this have from or one had by word but not what all were we when your can said there use an each which she do how their if will up other about out many then them these so some her would make like him into time has look two more write go see number no way could people my than first water been call who oil its now find long down day did get come made may part")
	r := rand.New(rand.NewPCG(1, uint64(size)))
	var b strings.Builder
	col := 0
	for b.Len() < size {
		w := words[r.IntN(len(words))]
		if col+len(w) > 72 {
			b.WriteString("\n")
			col = 0
		}
		b.WriteString(w)
		b.WriteString(" ")
		col += len(w) + 1
	}
	return b.String()[:size]
}

func sizedMessage(size int) *v1.SendEmailRequest {
	req := message("someone@example.com", 0)
	req.Message.TextBody = textBody(size)
	return req
}

func runE2E(ctx context.Context, e *env, o options, res *Results) error {
	conns, closeConns, err := dialN(e.ingestAddr, grpcConns)
	if err != nil {
		return err
	}
	defer closeConns()
	clients := make([]v1.SendServiceClient, len(conns))
	for i, c := range conns {
		clients[i] = v1.NewSendServiceClient(c)
	}
	runs := []struct {
		name    string
		account string
		sink    *smtpsink.Sink
		pool    int
		size    int
		n       int
	}{
		{"1 KB", "e2e", e.fastSink, fastPool, 1024, o.e2eSmall},
		{"100 KB", "e2e", e.fastSink, fastPool, 100 * 1024, o.e2eLarge},
		{"1 KB, 200 ms sink", "slow", e.slowSink, slowPool, 1024, o.e2eSlow},
	}
	for i, r := range runs {
		if err := ctx.Err(); err != nil {
			return err
		}
		req := sizedMessage(r.size)
		e.log.Info("end to end", "run", r.name, "messages", r.n)
		// Each measured run has an account of its own, so that it counts its
		// own messages while the tables keep what the runs before left: a
		// database emptied between runs has statistics that say empty while
		// it fills up again, and plans to match (whole indexes scanned per
		// batch), which a database in service never has.
		account, err := e.newAccount(ctx, r.account)
		if err != nil {
			return err
		}
		mark0, err := e.footprintMark(ctx)
		if err != nil {
			return err
		}
		prof := startProfile(e, fmt.Sprintf("e2e-%d-%s", i+1, slug(r.name)))
		flood, err := e.flood(ctx, clients, account, req, r.n)
		prof.stop(res)
		if err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
		mark1, err := e.footprintMark(ctx)
		if err != nil {
			return err
		}
		out := E2EResult{Name: r.name, SizeBytes: r.size, PoolSize: r.pool, Flood: flood, Footprint: mark0.per(mark1, r.n)}
		if prof != nil && len(res.Profiles) > 0 {
			p := res.Profiles[len(res.Profiles)-1]
			out.ProcessMicros = p.HarnessCores * p.Seconds / float64(r.n) * 1e6
			out.PostgresMicros = p.PostgresCores * p.Seconds / float64(r.n) * 1e6
			out.ProcessMicrosByPart = partMicros(p, float64(r.n)/p.Seconds)
			out.PostgresMicrosByPart = map[string]float64{}
			for part, cores := range p.PostgresByPart {
				out.PostgresMicrosByPart[part] = cores * p.Seconds / float64(r.n) * 1e6
			}
		}
		if i < 2 {
			// Latency at a steady half of the measured throughput, so it is
			// the pipeline's and not a queue's.
			rate := max(flood.PerSecond/2, 10)
			account, err := e.newAccount(ctx, r.account)
			if err != nil {
				return err
			}
			paced, err := e.paced(ctx, clients, account, req, rate, 4*time.Second)
			if err != nil {
				return fmt.Errorf("%s paced: %w", r.name, err)
			}
			out.Paced = &paced
		}
		e.log.Info("end-to-end limit", "run", r.name, "connections", r.pool)
		lim, err := smtpLimit(ctx, r.sink, req, r.pool, o.limitDur)
		if err != nil {
			return fmt.Errorf("%s limit: %w", r.name, err)
		}
		out.Limit = lim
		if lim.PerSecond > 0 {
			out.Ratio = flood.PerSecond / lim.PerSecond
		}
		res.E2E = append(res.E2E, out)
		e.log.Info("end to end", "run", r.name, "per_s", int(flood.PerSecond), "limit_per_s", int(lim.PerSecond),
			"ratio", fmt.Sprintf("%.2f", out.Ratio))
		if err := e.failed(); err != nil {
			return err
		}
	}
	return nil
}

func slug(s string) string {
	s = strings.ToLower(s)
	s = strings.NewReplacer(" ", "", ",", "-").Replace(s)
	return s
}

// flood submits n messages with SendBatch (batchSize per call, batchCalls
// concurrent callers) as fast as ingest takes them, and waits until the report
// has every one of them SENT. Throughput is n over the time from the first
// acceptance to the last SENT event; latency is each message's SENT time minus
// its acceptance time (mostly time spent queued, as everything is submitted at
// once).
func (e *env) flood(ctx context.Context, clients []v1.SendServiceClient, account string, req *v1.SendEmailRequest, n int) (E2ERun, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, batchCalls)
	t0 := time.Now()
	pprof.Do(ctx, pprof.Labels("part", "load"), func(ctx context.Context) {
		for c := range batchCalls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					end := next.Add(batchSize)
					start := end - batchSize
					if start >= int64(n) {
						return
					}
					k := min(int64(n), end) - start
					breq := &v1.SendBatchRequest{Messages: make([]*v1.SendEmailRequest, k)}
					for j := range breq.Messages {
						breq.Messages[j] = req
					}
					resp, err := clients[c%len(clients)].SendBatch(e.authCtx(ctx, account), breq)
					if err != nil {
						errc <- err
						return
					}
					for _, r := range resp.GetResults() {
						if r.GetAccepted() == nil {
							errc <- fmt.Errorf("rejected: %s", r.GetErrorMessage())
							return
						}
					}
				}
			}()
		}
		wg.Wait()
	})
	close(errc)
	if err := <-errc; err != nil {
		return E2ERun{}, err
	}
	submitted := time.Since(t0)
	if err := e.waitSent(ctx, account, n, time.Minute); err != nil {
		return E2ERun{}, err
	}
	r, err := e.sentStats(ctx, account)
	r.SubmitSeconds = submitted.Seconds()
	return r, err
}

// paced sends SendEmail calls at rate per second for dur (open loop) and
// waits for them all to be SENT.
func (e *env) paced(ctx context.Context, clients []v1.SendServiceClient, account string, req *v1.SendEmailRequest, rate float64, dur time.Duration) (E2ERun, error) {
	n := int(rate * dur.Seconds())
	tick := 5 * time.Millisecond
	perTick := rate * tick.Seconds()
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr atomic.Value
	sem := make(chan struct{}, 256)
	pprof.Do(ctx, pprof.Labels("part", "load"), func(ctx context.Context) {
		t := time.NewTicker(tick)
		defer t.Stop()
		sent, credit := 0, 0.0
		for sent < n {
			<-t.C
			credit += perTick
			for ; credit >= 1 && sent < n; credit-- {
				sem <- struct{}{}
				wg.Add(1)
				c := sent
				go func() {
					defer func() { <-sem; wg.Done() }()
					if _, err := clients[c%len(clients)].SendEmail(e.authCtx(ctx, account), req); err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					}
				}()
				sent++
			}
		}
		wg.Wait()
	})
	if f := failed.Load(); f > 0 {
		return E2ERun{}, fmt.Errorf("%d of %d paced sends failed: %v", f, n, firstErr.Load())
	}
	if err := e.waitSent(ctx, account, n, time.Minute); err != nil {
		return E2ERun{}, err
	}
	r, err := e.sentStats(ctx, account)
	r.RatePerSecond = rate
	return r, err
}

// waitSent polls the report's tables until account has n SENT messages.
func (e *env) waitSent(ctx context.Context, account string, n int, timeout time.Duration) error {
	acc := e.accounts[account].AccountID
	// timeout is how long without progress is tolerated (a loaded machine
	// is slow, a stuck system makes no progress at all).
	deadline, last := time.Now().Add(timeout), -1
	for {
		var sent, failed int
		err := e.db.QueryRow(ctx, `
			SELECT count(*) FILTER (WHERE status = $2), count(*) FILTER (WHERE status = $3)
			FROM messages WHERE account_id = $1`, acc, int16(msgstatus.Sent), int16(msgstatus.Failed)).Scan(&sent, &failed)
		if err != nil {
			return err
		}
		if failed > 0 {
			return fmt.Errorf("%d messages FAILED", failed)
		}
		if sent >= n {
			return nil
		}
		if sent > last {
			last, deadline = sent, time.Now().Add(timeout)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d messages SENT, none for %s", sent, n, timeout)
		}
		if err := e.failed(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// sentStats computes throughput and accept→SENT latency from the timeline.
func (e *env) sentStats(ctx context.Context, account string) (E2ERun, error) {
	var r E2ERun
	var first, last time.Time
	var p50, p95, p99 float64
	err := e.db.QueryRow(ctx, `
		SELECT count(*), min(m.created_at), max(ev.occurred_at),
			percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM ev.occurred_at - m.created_at)),
			percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM ev.occurred_at - m.created_at)),
			percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM ev.occurred_at - m.created_at))
		FROM events ev JOIN messages m ON m.id = ev.message_id
		WHERE ev.account_id = $1 AND ev.type = 'SENT'`, e.accounts[account].AccountID).
		Scan(&r.Messages, &first, &last, &p50, &p95, &p99)
	if err != nil {
		return r, fmt.Errorf("sent stats: %w", err)
	}
	r.Seconds = last.Sub(first).Seconds()
	if r.Seconds > 0 {
		r.PerSecond = float64(r.Messages) / r.Seconds
	}
	r.P50ms, r.P95ms, r.P99ms = p50*1000, p95*1000, p99*1000
	return r, nil
}

// smtpLimit sends the message straight to sink with go-mail's SMTP client over
// conns connections, each used by one goroutine in turn, for dur; each message
// is built with pkg/mime as the worker builds it.
func smtpLimit(ctx context.Context, sink *smtpsink.Sink, req *v1.SendEmailRequest, conns int, dur time.Duration) (LoadResult, error) {
	clients := make([]*gosmtp.Client, conns)
	for i := range clients {
		c, err := gosmtp.Dial(sink.Addr())
		if err != nil {
			return LoadResult{}, err
		}
		if err := c.Hello("localhost"); err != nil {
			return LoadResult{}, err
		}
		clients[i] = c
	}
	defer func() {
		for _, c := range clients {
			_ = c.Quit()
		}
	}()
	m := req.GetMessage()
	from, to := m.GetFrom().GetAddress(), m.GetTo()[0].GetAddress()
	r := loadLoop(ctx, "limit", conns, time.Second, dur, func(ctx context.Context, i int) error {
		raw, err := mime.Raw(m, mime.Options{MessageID: uuid.NewString(), Date: time.Now()})
		if err != nil {
			return err
		}
		c := clients[i]
		if err := c.Mail(from); err != nil {
			return err
		}
		if err := c.Rcpt(to); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		if _, err := w.Write(raw); err != nil {
			return err
		}
		return w.Close()
	})
	if r.Errors > 0 {
		return r, fmt.Errorf("%d sends failed: %s", r.Errors, r.FirstError)
	}
	return r, nil
}
