//go:build e2ebench

package e2e

import (
	"crypto/tls"
	"fmt"
	"net/smtp"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// TestSubmissionThroughput measures messages accepted per second through
// SMTP submission and, for the same messages, through gRPC SendEmail: 1 KB
// text messages with a Message-ID (the idempotency key on both paths), 8
// concurrent senders, each on one connection (SMTP: STARTTLS and AUTH once,
// then MAIL, RCPT, DATA per message). The stack has no worker, so what is
// measured is acceptance (validation, sender check, suppressions, store,
// publish), the same ingest work on both paths. A measurement, not a check:
// it is built only with the e2ebench tag (make bench runs it), so make test
// never compiles it. E2E_BENCH_MESSAGES sets the messages per path (default
// 2000).
//
//	go test -tags e2ebench -count=1 -run TestSubmissionThroughput -v ./e2e/
func TestSubmissionThroughput(t *testing.T) {
	total := 2000
	if v, err := strconv.Atoi(os.Getenv("E2E_BENCH_MESSAGES")); err == nil && v > 0 {
		total = v
	}
	const senders = 8
	s := newStack(t, stackOptions{noWorker: true})
	port, ca := startSubmission(t, s)
	key := s.accounts["a"].APIKey
	body := strings.Repeat("Throughput of SMTP submission against gRPC SendEmail. ", 18) // ~1 KB

	raw := func(run string, i int) []byte {
		return []byte(fmt.Sprintf("From: App <app@example.com>\r\nTo: bench-%d@example.org\r\nSubject: Bench %d\r\n"+
			"Message-ID: <%s-%d@bench.example.com>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n", i, i, run, i, body))
	}
	req := func(run string, i int) *v1.SendEmailRequest {
		return &v1.SendEmailRequest{
			Message: &v1.EmailMessage{
				From: &v1.Address{Address: "app@example.com", Name: "App"}, To: []*v1.Address{{Address: fmt.Sprintf("bench-%d@example.org", i)}},
				Subject: fmt.Sprintf("Bench %d", i), TextBody: body + "\r\n",
			},
			IdempotencyKey: fmt.Sprintf("smtp-message-id:<%s-%d@bench.example.com>", run, i),
		}
	}
	// run has senders goroutines share n messages; each calls send(conn
	// state, i) and returns the rate.
	run := func(n int, open func() (func(i int) error, func(), error)) float64 {
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, senders)
		start := time.Now()
		for range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				send, closeFn, err := open()
				if err != nil {
					errs <- err
					return
				}
				defer closeFn()
				for {
					i := int(next.Add(1)) - 1
					if i >= n {
						return
					}
					if err := send(i); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		return float64(n) / time.Since(start).Seconds()
	}
	viaGRPC := func(name string) func() (func(int) error, func(), error) {
		return func() (func(int) error, func(), error) {
			ctx := s.ctx("a")
			return func(i int) error {
				_, err := s.send.SendEmail(ctx, req(name, i))
				return err
			}, func() {}, nil
		}
	}
	viaSMTP := func(name string) func() (func(int) error, func(), error) {
		return func() (func(int) error, func(), error) {
			c, err := smtp.Dial(fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				return nil, nil, err
			}
			if err := c.StartTLS(&tls.Config{RootCAs: ca.Pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}); err != nil {
				return nil, nil, err
			}
			if err := c.Auth(smtp.PlainAuth("", "app", key, "127.0.0.1")); err != nil {
				return nil, nil, err
			}
			return func(i int) error {
				if err := c.Mail("app@example.com"); err != nil {
					return err
				}
				if err := c.Rcpt(fmt.Sprintf("bench-%d@example.org", i)); err != nil {
					return err
				}
				w, err := c.Data()
				if err != nil {
					return err
				}
				if _, err := w.Write(raw(name, i)); err != nil {
					return err
				}
				return w.Close()
			}, func() { _ = c.Quit() }, nil
		}
	}
	// Warm both paths (connections, caches, the statement cache), then
	// measure each; the order alternates so neither always runs first.
	run(200, viaGRPC("warm-grpc"))
	run(200, viaSMTP("warm-smtp"))
	grpcRate := run(total, viaGRPC("grpc"))
	smtpRate := run(total, viaSMTP("smtp"))
	smtpRate2 := run(total, viaSMTP("smtp2"))
	grpcRate2 := run(total, viaGRPC("grpc2"))
	g, sm := (grpcRate+grpcRate2)/2, (smtpRate+smtpRate2)/2
	line := fmt.Sprintf("submission throughput: %d messages x2 per path, %d senders: gRPC SendEmail %.0f msg/s (%.0f, %.0f), SMTP submission %.0f msg/s (%.0f, %.0f), ratio %.2f",
		total, senders, g, grpcRate, grpcRate2, sm, smtpRate, smtpRate2, sm/g)
	t.Log(line)
	if out := os.Getenv("E2E_BENCH_OUT"); out != "" {
		require.NoError(t, os.WriteFile(out, []byte(line+"\n"), 0o644))
	}
}
