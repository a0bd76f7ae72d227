package smtpsink_test

import (
	"context"
	"errors"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/wneessen/go-mail/smtp"

	"github.com/namirasoft/email-sender/pkg/testkit/smtpsink"
)

const body = "From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\n.leading dot\r\nbody\r\n"

type client struct {
	c *smtp.Client
}

func dial(t *testing.T, s *smtpsink.Sink) *client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
	require.NoError(t, err)
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	c, err := smtp.NewClient(conn, "127.0.0.1")
	require.NoError(t, err)
	require.NoError(t, c.Hello("test.local"))
	t.Cleanup(func() { _ = c.Close() })
	return &client{c: c}
}

// send runs one transaction and returns the final reply text.
func (c *client) send(from string, to []string, data string) (string, error) {
	if err := c.c.Mail(from); err != nil {
		return "", err
	}
	for _, r := range to {
		if err := c.c.Rcpt(r); err != nil {
			return "", err
		}
	}
	w, err := c.c.Data()
	if err != nil {
		return "", err
	}
	if _, err := w.Write([]byte(data)); err != nil {
		return "", err
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	return w.(*smtp.DataCloser).ServerResponse(), nil
}

func code(t *testing.T, err error) int {
	t.Helper()
	var te *textproto.Error
	require.True(t, errors.As(err, &te), "want an SMTP reply, got %v", err)
	return te.Code
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestSink_RecordsMessage(t *testing.T) {
	t.Parallel()
	s := smtpsink.StartTest(t)
	c := dial(t, s)

	resp, err := c.send("a@example.com", []string{"b@example.com", "c@example.com"}, body)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(resp, "2.0.0 Ok: queued as "), resp)

	msgs, err := s.WaitFor(ctx(t), 1)
	require.NoError(t, err)
	m := msgs[0]
	require.Equal(t, "a@example.com", m.From)
	require.Equal(t, []string{"b@example.com", "c@example.com"}, m.To)
	require.Equal(t, body, string(m.Data), "dot-unstuffed data, byte for byte")
	require.Equal(t, len(body), m.Size)
	require.Equal(t, "2.0.0 Ok: queued as "+m.QueueID, resp)
	require.WithinDuration(t, time.Now(), m.ReceivedAt, 5*time.Second)

	// A second transaction on the same connection gets its own queue id.
	resp2, err := c.send("a@example.com", []string{"d@example.com"}, body)
	require.NoError(t, err)
	require.NotEqual(t, resp, resp2)
	require.Equal(t, 1, s.Connections())
	require.Equal(t, 2, s.Count())
}

func TestSink_ScriptedReplies(t *testing.T) {
	t.Parallel()
	s := smtpsink.StartTest(t)
	s.FailNext(2, smtpsink.Reply{Code: 451, Enhanced: "4.3.0", Message: "try later"})
	s.FailNext(1, smtpsink.Reply{Code: 550, Enhanced: "5.1.1", Message: "no such user"})
	c := dial(t, s)

	for _, want := range []int{451, 451, 550} {
		_, err := c.send("a@example.com", []string{"b@example.com"}, body)
		require.Error(t, err)
		require.Equal(t, want, code(t, err))
	}
	_, err := c.send("a@example.com", []string{"b@example.com"}, body)
	require.NoError(t, err)
	require.Equal(t, 1, s.Count(), "rejected transactions are not recorded")
}

func TestSink_RejectRcpt(t *testing.T) {
	t.Parallel()
	s := smtpsink.StartTest(t)
	s.RejectRcpt("Bad@Example.com", smtpsink.Reply{Code: 550, Enhanced: "5.1.1", Message: "unknown"})
	c := dial(t, s)

	require.NoError(t, c.c.Mail("a@example.com"))
	require.NoError(t, c.c.Rcpt("ok@example.com"))
	err := c.c.Rcpt("bad@example.com")
	require.Equal(t, 550, code(t, err))
	w, err := c.c.Data()
	require.NoError(t, err)
	_, err = w.Write([]byte(body))
	require.NoError(t, err)
	require.NoError(t, w.Close())

	msgs := s.Messages()
	require.Len(t, msgs, 1)
	require.Equal(t, []string{"ok@example.com"}, msgs[0].To)
}

func TestSink_Drop(t *testing.T) {
	t.Parallel()
	for _, stage := range []smtpsink.Stage{smtpsink.AtMail, smtpsink.AtData} {
		s := smtpsink.StartTest(t)
		s.DropNext(1, stage)
		c := dial(t, s)
		_, err := c.send("a@example.com", []string{"b@example.com"}, body)
		require.Error(t, err)
		var te *textproto.Error
		require.False(t, errors.As(err, &te), "no SMTP answer, the connection is closed: %v", err)
		require.Zero(t, s.Count())

		// The next connection is served normally.
		_, err = dial(t, s).send("a@example.com", []string{"b@example.com"}, body)
		require.NoError(t, err)
	}
}

func TestSink_StallAndRelease(t *testing.T) {
	t.Parallel()
	s := smtpsink.StartTest(t)
	s.StallNext(1)
	c := dial(t, s)

	errc := make(chan error, 1)
	go func() {
		_, err := c.send("a@example.com", []string{"b@example.com"}, body)
		errc <- err
	}()
	require.NoError(t, s.WaitStalled(ctx(t), 1))
	select {
	case err := <-errc:
		t.Fatalf("answered while stalled: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	s.Release()
	require.NoError(t, <-errc)
	require.Equal(t, 1, s.Count())
}

func TestSink_DelayAndLatency(t *testing.T) {
	t.Parallel()
	s := smtpsink.StartTest(t, smtpsink.Options{Latency: 100 * time.Millisecond})
	c := dial(t, s)
	start := time.Now()
	_, err := c.send("a@example.com", []string{"b@example.com"}, body)
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond)

	s.SetLatency(0)
	s.DelayNext(1, 150*time.Millisecond)
	start = time.Now()
	_, err = c.send("a@example.com", []string{"b@example.com"}, body)
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond)
}

func TestSink_Auth(t *testing.T) {
	t.Parallel()
	s := smtpsink.StartTest(t, smtpsink.Options{Username: "user", Password: "pa55"})

	c := dial(t, s)
	_, err := c.send("a@example.com", []string{"b@example.com"}, body)
	require.Equal(t, 530, code(t, err), "MAIL without AUTH")

	c = dial(t, s)
	err = c.c.Auth(smtp.PlainAuth("", "user", "wrong", "127.0.0.1", false))
	require.Equal(t, 535, code(t, err))

	c = dial(t, s)
	require.NoError(t, c.c.Auth(smtp.PlainAuth("", "user", "pa55", "127.0.0.1", false)))
	_, err = c.send("a@example.com", []string{"b@example.com"}, body)
	require.NoError(t, err)
	require.Equal(t, "user", s.Messages()[0].Username)
}

func TestSink_StopStart(t *testing.T) {
	t.Parallel()
	s := smtpsink.StartTest(t)
	addr := s.Addr()
	c := dial(t, s)
	s.Stop()

	_, err := c.send("a@example.com", []string{"b@example.com"}, body)
	require.Error(t, err, "open connections are closed")
	_, err = net.DialTimeout("tcp", addr, time.Second)
	require.Error(t, err, "nothing listens while stopped")

	require.NoError(t, s.Start())
	require.Equal(t, addr, s.Addr())
	_, err = dial(t, s).send("a@example.com", []string{"b@example.com"}, body)
	require.NoError(t, err)
}

func TestSink_StopReleasesStalled(t *testing.T) {
	t.Parallel()
	s := smtpsink.StartTest(t)
	s.StallNext(1)
	c := dial(t, s)
	errc := make(chan error, 1)
	go func() {
		_, err := c.send("a@example.com", []string{"b@example.com"}, body)
		errc <- err
	}()
	require.NoError(t, s.WaitStalled(ctx(t), 1))
	s.Stop()
	require.Error(t, <-errc)
	require.Zero(t, s.Count(), "a transaction stalled when the sink went down is not accepted")
}

func TestSink_Concurrent(t *testing.T) {
	t.Parallel()
	s := smtpsink.StartTest(t, smtpsink.Options{DiscardData: true})
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			conn, err := net.Dial("tcp", s.Addr())
			if err != nil {
				errs <- err
				return
			}
			c, err := smtp.NewClient(conn, "127.0.0.1")
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			cl := &client{c: c}
			if _, err := cl.send("a@example.com", []string{"b@example.com"}, body); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	msgs, err := s.WaitFor(ctx(t), n)
	require.NoError(t, err)
	require.Nil(t, msgs[0].Data)
	require.Equal(t, len(body), msgs[0].Size)
	require.Equal(t, n, s.Connections())
}
