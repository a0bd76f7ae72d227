package inbound_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/suppression"
	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
	"github.com/namirasoft/email-sender/pkg/verp"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	"github.com/namirasoft/email-sender/services/inbound"
)

const bounceDomain = "bounces.example.net"

var bounceKey = bytes.Repeat([]byte{42}, 32)

type env struct {
	t       testing.TB
	db      *pgtest.DB
	nats    *natstest.Server
	js      jetstream.JetStream
	signer  *verp.Signer
	addr    string
	account string
	soft    int
}

// start is a database, a NATS server with the streams, an account, and
// the service running on them.
func start(t testing.TB, softBounces int) *env {
	t.Helper()
	e := setup(t, softBounces)
	e.addr = e.serve(options{}).addr
	return e
}

// setup is start without the service.
func setup(t testing.TB, softBounces int) *env {
	t.Helper()
	db := pgtest.New(t)
	ns := natstest.Start(t)
	_, js := ns.JetStream(t)
	ctx := context.Background()
	require.NoError(t, queue.EnsureStreams(ctx, js, queue.StreamConfig{}))
	signer, err := verp.New(bounceDomain, bounceKey)
	require.NoError(t, err)
	e := &env{t: t, db: db, nats: ns, js: js, signer: signer, account: uuid.NewString(), soft: softBounces}
	_, err = db.Pool.Exec(ctx, `INSERT INTO accounts (id, name) VALUES ($1, 'a')`, e.account)
	require.NoError(t, err)
	return e
}

// options are what a test changes of a service instance.
type options struct {
	hooks       inbound.Hooks
	batchWindow time.Duration
	// ackWait, when set, is INBOUND_ACK_WAIT (and the process timeout
	// under it).
	ackWait time.Duration
}

// instance is one running service.
type instance struct {
	addr string
	// nc is its own NATS connection.
	nc *nats.Conn
	// stop cancels it and returns what Run returned.
	stop func() error
}

// serve runs a service instance on its own listener and NATS connection,
// stopped at the end of the test (if not before).
func (e *env) serve(o options) *instance {
	e.t.Helper()
	nc, js := e.nats.JetStream(e.t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(e.t, err)
	cfg := inbound.Config{
		Hostname:    "mx.bounces.example.net",
		Bounce:      verp.Config{Domain: bounceDomain, Keys: "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio="},
		Suppression: suppression.Config{SoftBounces: e.soft, SoftBounceWindow: time.Hour},
		BatchWindow: o.batchWindow,
	}
	if o.ackWait > 0 {
		cfg.AckWait, cfg.ProcessTimeout, cfg.RetryDelay = o.ackWait, o.ackWait*3/4, 100*time.Millisecond
	}
	svc, err := inbound.New(cfg, inbound.Deps{Pool: e.db.Pool, JetStream: js, Listener: lis, Hooks: o.hooks})
	require.NoError(e.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	stop := sync.OnceValue(func() error {
		cancel()
		err := <-done
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	})
	e.t.Cleanup(func() {
		if err := stop(); err != nil && !nc.IsClosed() {
			e.t.Errorf("run: %v", err)
		}
	})
	return &instance{addr: lis.Addr().String(), nc: nc, stop: stop}
}

// settled waits until the mail accepted on EMAIL_INBOUND has been
// recorded or dropped, each acknowledged (the work stream is empty).
func (e *env) settled() {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := e.js.Stream(context.Background(), queue.InboundStream)
		require.NoError(e.t, err)
		info, err := st.Info(context.Background())
		require.NoError(e.t, err)
		if info.State.Msgs == 0 {
			return
		}
		require.True(e.t, time.Now().Before(deadline), "EMAIL_INBOUND still holds %d mails", info.State.Msgs)
		time.Sleep(10 * time.Millisecond)
	}
}

// eventsOf counts the events of message id on EMAIL_EVENTS.
func (e *env) eventsOf(id string) uint64 {
	e.t.Helper()
	st, err := e.js.Stream(context.Background(), queue.EventStream)
	require.NoError(e.t, err)
	subject := queue.EventSubject(e.account, id)
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(subject))
	require.NoError(e.t, err)
	return info.State.Subjects[subject]
}

// message stores a SENT message of the env's account to rcpts and returns
// its id.
func (e *env) message(rcpts ...string) string {
	e.t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	ctx := context.Background()
	_, err := e.db.Pool.Exec(ctx, `
		INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, recipient_count, size_bytes, attempts, created_at, updated_at)
		VALUES ($1, $2, $3, 'smtp', 5, 'sender@example.com', $4, 100, 1, now(), now())`, id, e.account, uuid.NewString(), len(rcpts))
	require.NoError(e.t, err)
	for i, r := range rcpts {
		_, err := e.db.Pool.Exec(ctx, `INSERT INTO recipients (message_id, idx, account_id, kind, address, status, updated_at)
			VALUES ($1, $2, $3, 'to', $4, 5, now())`, id, i, e.account, r)
		require.NoError(e.t, err)
	}
	return id
}

// messages stores n SENT messages of the env's account, the i-th to
// r<i>@example.org, in one statement each for messages and recipients, and
// returns their ids.
func (e *env) messages(n int) []string {
	e.t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7()).String()
	}
	ctx := context.Background()
	_, err := e.db.Pool.Exec(ctx, `
		INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, recipient_count, size_bytes, attempts, created_at, updated_at)
		SELECT id, $2, gen_random_uuid(), 'smtp', 5, 'sender@example.com', 1, 100, 1, now(), now() FROM unnest($1::uuid[]) AS id`, ids, e.account)
	require.NoError(e.t, err)
	_, err = e.db.Pool.Exec(ctx, `
		INSERT INTO recipients (message_id, idx, account_id, kind, address, status, updated_at)
		SELECT id, 0, $2, 'to', 'r' || (n - 1) || '@example.org', 5, now() FROM unnest($1::uuid[]) WITH ORDINALITY AS t(id, n)`, ids, e.account)
	require.NoError(e.t, err)
	return ids
}

// deliver sends raw to rcpt over SMTP as a bouncing MTA does (MAIL FROM:<>).
func deliver(addr, rcpt string, raw []byte) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("mx.example.org"); err != nil {
		return err
	}
	if err := c.Mail(""); err != nil {
		return err
	}
	if err := c.Rcpt(rcpt); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(raw); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

func sample(t testing.TB, path, to string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "pkg", "mailreport", "testdata", "corpus", path))
	require.NoError(t, err)
	return bytes.ReplaceAll(raw, []byte("jane@"), []byte(to+"@"))
}

// events reads the events stream until n events of message id arrived.
func (e *env) events(id string, n int) []*queuev1.DeliveryEvent {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := e.js.OrderedConsumer(ctx, queue.EventStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{queue.EventSubject(e.account, id)}})
	require.NoError(e.t, err)
	var out []*queuev1.DeliveryEvent
	for len(out) < n {
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		require.NoError(e.t, err, "waiting for event %d of %d", len(out)+1, n)
		var ev queuev1.DeliveryEvent
		require.NoError(e.t, proto.Unmarshal(m.Data(), &ev))
		out = append(out, &ev)
	}
	return out
}

func (e *env) suppressions() map[string]string {
	e.t.Helper()
	rows, err := e.db.Pool.Query(context.Background(), `SELECT address, reason FROM suppressions WHERE account_id = $1`, e.account)
	require.NoError(e.t, err)
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var a, r string
		require.NoError(e.t, rows.Scan(&a, &r))
		out[a] = r
	}
	return out
}

func (e *env) streamCount() uint64 {
	info, err := e.js.Stream(context.Background(), queue.EventStream)
	require.NoError(e.t, err)
	si, err := info.Info(context.Background())
	require.NoError(e.t, err)
	return si.State.Msgs
}

// A DSN for each class of the taxonomy, sent over SMTP to the message's
// bounce address: BOUNCED with the class, suppressed only for a hard bounce;
// an ARF report is COMPLAINED and suppresses; the same DSN again publishes
// the same event id, which the stream drops as a duplicate.
func TestReportsBecomeEventsAndSuppressions(t *testing.T) {
	t.Parallel()
	e := start(t, 3)
	for _, tc := range []struct {
		sample, local, typ, class string
		suppressed                string
	}{
		{"hard_bounce/postfix-user-unknown.eml", "gone", "BOUNCED", "hard_bounce", "bounce"},
		{"soft_bounce/gmail-over-quota.eml", "full", "BOUNCED", "soft_bounce", ""},
		{"policy_block/postfix-spamhaus.eml", "blocked", "BOUNCED", "policy_block", ""},
		{"message_rejected/gmail-too-large.eml", "big", "BOUNCED", "message_rejected", ""},
		{"complaint/rfc5965-abuse.eml", "angry", "COMPLAINED", "complaint", "complaint"},
	} {
		t.Run(tc.class, func(t *testing.T) {
			rcpt := tc.local + "@example.org"
			if strings.Contains(tc.sample, "gmail") {
				rcpt = tc.local + "@gmail.example"
			}
			id := e.message(rcpt)
			addr, err := e.signer.Address(id, rcpt)
			require.NoError(t, err)
			raw := sample(t, tc.sample, tc.local)
			require.NoError(t, deliver(e.addr, addr, raw))
			evs := e.events(id, 1)
			ev := evs[0]
			require.Equal(t, tc.typ, ev.GetType())
			require.Equal(t, tc.class, ev.GetErrorClass())
			require.Equal(t, []string{rcpt}, ev.GetRecipients())
			require.Equal(t, int32(1), ev.GetAttempt())
			require.Contains(t, ev.GetDetail(), "by mail")
			require.Equal(t, tc.suppressed, e.suppressions()[rcpt])

			// Delivered again (the MTA retried): EMAIL_INBOUND stores the
			// transaction once (Nats-Msg-Id). The same report in another
			// mail (a header more) is recorded again: the same event id,
			// which EMAIL_EVENTS keeps once.
			before := e.streamCount()
			require.NoError(t, deliver(e.addr, addr, raw))
			require.NoError(t, deliver(e.addr, addr, append([]byte("X-Resent: yes\r\n"), raw...)))
			e.settled()
			require.Equal(t, before, e.streamCount())
			require.Equal(t, uint64(1), e.eventsOf(id))
		})
	}
}

// Forged: addresses not made with the key, of another domain, or garbled
// are refused at RCPT TO with 550 5.1.1, and nothing is recorded.
func TestForgedBounceAddressRefused(t *testing.T) {
	t.Parallel()
	e := start(t, 3)
	id := e.message("jane@example.org")
	forger, err := verp.New(bounceDomain, bytes.Repeat([]byte{1}, 32))
	require.NoError(t, err)
	forged, err := forger.Address(id, "jane@example.org")
	require.NoError(t, err)
	good, err := e.signer.Address(id, "jane@example.org")
	require.NoError(t, err)
	// One character of the token changed (to one it is not: a token is
	// random, and "x" was once the character there).
	garbled := good[:20] + "x" + good[21:]
	if good[20] == 'x' {
		garbled = good[:20] + "y" + good[21:]
	}
	before := e.streamCount()
	for _, rcpt := range []string{forged, strings.Replace(good, bounceDomain, "example.net", 1), "postmaster@" + bounceDomain, garbled} {
		err := deliver(e.addr, rcpt, sample(t, "hard_bounce/postfix-user-unknown.eml", "jane"))
		var pe *textproto.Error
		require.True(t, errors.As(err, &pe), "rcpt %s: %v", rcpt, err)
		require.Equal(t, 550, pe.Code)
		require.Contains(t, pe.Msg, "5.1.1")
	}
	require.Empty(t, e.suppressions())
	require.Equal(t, before, e.streamCount())
}

// A bound address counts for its recipient only, whatever the report names;
// an address of a several-recipient message counts only for the recipients
// of the message the report names.
func TestRecipientBinding(t *testing.T) {
	t.Parallel()
	e := start(t, 3)
	// Bound: the DSN names an alias (forwarded mail); the bound recipient bounced.
	id := e.message("jane@example.org")
	addr, _ := e.signer.Address(id, "jane@example.org")
	require.NoError(t, deliver(e.addr, addr, sample(t, "hard_bounce/postfix-user-unknown.eml", "jane.doe.forwarded")))
	require.Equal(t, []string{"jane@example.org"}, e.events(id, 1)[0].GetRecipients())

	// Unbound: the report names one of two recipients, and a stranger.
	id = e.message("a@example.org", "b@example.org")
	addr, _ = e.signer.Address(id, "")
	raw := sample(t, "hard_bounce/postfix-user-unknown.eml", "b")
	require.NoError(t, deliver(e.addr, addr, raw))
	require.Equal(t, []string{"b@example.org"}, e.events(id, 1)[0].GetRecipients())
	before := e.streamCount()
	require.NoError(t, deliver(e.addr, addr, sample(t, "hard_bounce/postfix-user-unknown.eml", "stranger")))
	e.settled()
	require.Equal(t, before, e.streamCount())
	sup := e.suppressions()
	require.Equal(t, "bounce", sup["b@example.org"])
	require.Empty(t, sup["a@example.org"])
	require.Empty(t, sup["stranger@example.org"])
}

// Soft bounces suppress after SUPPRESS_SOFT_BOUNCES in a row (distinct
// messages); auto-replies change nothing.
func TestSoftBouncesInARowAutoRepliesAndDelays(t *testing.T) {
	t.Parallel()
	e := start(t, 2)
	for i := range 2 {
		id := e.message("full@example.org")
		addr, _ := e.signer.Address(id, "full@example.org")
		require.NoError(t, deliver(e.addr, addr, sample(t, "soft_bounce/exim-mailbox-full.eml", "full")))
		ev := e.events(id, 1)[0]
		require.Equal(t, "soft_bounce", ev.GetErrorClass())
		if i == 0 {
			require.Empty(t, e.suppressions())
		} else {
			require.Equal(t, "bounce", e.suppressions()["full@example.org"])
			require.Contains(t, ev.GetDetail(), "repeated soft bounces")
		}
	}
	id := e.message("away@example.org")
	addr, _ := e.signer.Address(id, "away@example.org")
	before := e.streamCount()
	// Auto-replies, and delay notices (the reporting MTA still tries: BOUNCED
	// would be final), record nothing.
	for _, s := range []string{"auto_reply/rfc3834-vacation.eml", "auto_reply/exchange-automatic-reply.eml",
		"soft_bounce/postfix-delayed.eml", "soft_bounce/sendmail-warning.eml"} {
		require.NoError(t, deliver(e.addr, addr, sample(t, s, "away")))
	}
	e.settled()
	require.Equal(t, before, e.streamCount())
	require.Empty(t, e.suppressions()["away@example.org"])
}

// Accepted mail is recorded exactly once when the process that accepted
// it dies before it was recorded (after fetching it, or after publishing
// its events but before acknowledging it): its NATS connection is closed
// at that step, the instance ends, and a second instance records the mail
// when JetStream delivers it again. One event per message on EMAIL_EVENTS,
// the hard bounce suppressed, the soft bounce counted once.
func TestAcceptedMailSurvivesACrash(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		at   func(*inbound.Hooks, func(int))
	}{
		{"after fetching, before recording", func(h *inbound.Hooks, f func(int)) { h.Fetched = f }},
		{"after recording, before the acks", func(h *inbound.Hooks, f func(int)) { h.Recorded = f }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, 2)
			hard, soft := e.message("gone@example.org"), e.message("full@example.org")
			var first *instance
			crashed := make(chan struct{})
			var hooks inbound.Hooks
			tc.at(&hooks, func(int) {
				select {
				case <-crashed:
				default:
					first.nc.Close()
					close(crashed)
				}
			})
			first = e.serve(options{hooks: hooks, ackWait: 2 * time.Second, batchWindow: 200 * time.Millisecond})
			hardAddr, _ := e.signer.Address(hard, "gone@example.org")
			softAddr, _ := e.signer.Address(soft, "full@example.org")
			require.NoError(t, deliver(first.addr, hardAddr, sample(t, "hard_bounce/postfix-user-unknown.eml", "gone")))
			require.NoError(t, deliver(first.addr, softAddr, sample(t, "soft_bounce/exim-mailbox-full.eml", "full")))
			select {
			case <-crashed:
			case <-time.After(20 * time.Second):
				t.Fatal("the consumer never reached the step")
			}
			_ = first.stop() // whatever it says: its connection is gone

			e.serve(options{ackWait: 2 * time.Second})
			require.Equal(t, "BOUNCED", e.events(hard, 1)[0].GetType())
			require.Equal(t, "soft_bounce", e.events(soft, 1)[0].GetErrorClass())
			e.settled()
			require.Equal(t, uint64(1), e.eventsOf(hard))
			require.Equal(t, uint64(1), e.eventsOf(soft))
			require.Equal(t, map[string]string{"gone@example.org": "bounce"}, e.suppressions())
			var streak int
			require.NoError(t, e.db.Pool.QueryRow(context.Background(),
				`SELECT soft_bounces FROM bounce_streaks WHERE account_id = $1 AND address = 'full@example.org'`, e.account).Scan(&streak))
			require.Equal(t, 1, streak)
		})
	}
}

// Shutdown drains: mail answered 250 just before the service is told to
// stop is recorded before Run returns, with no other instance.
func TestShutdownRecordsWhatWasAccepted(t *testing.T) {
	t.Parallel()
	e := setup(t, 3)
	// A long window: the batch is still open when the stop comes.
	inst := e.serve(options{batchWindow: 10 * time.Second})
	var ids []string
	for i := range 5 {
		rcpt := fmt.Sprintf("r%d@example.org", i)
		id := e.message(rcpt)
		addr, _ := e.signer.Address(id, rcpt)
		require.NoError(t, deliver(inst.addr, addr, sample(t, "hard_bounce/postfix-user-unknown.eml", fmt.Sprintf("r%d", i))))
		ids = append(ids, id)
	}
	require.NoError(t, inst.stop())
	for _, id := range ids {
		require.Equal(t, uint64(1), e.eventsOf(id))
	}
	e.settled()
	require.Len(t, e.suppressions(), 5)
}

// Accepted mail that records nothing is dropped on purpose, not retried:
// each is acknowledged (the work stream empties) and no event or
// suppression comes of it. A message on the work stream that the MX did
// not put there is verified again and dropped.
func TestAcceptedMailThatRecordsNothing(t *testing.T) {
	t.Parallel()
	e := start(t, 3)
	known := e.message("jane@example.org")
	knownAddr, _ := e.signer.Address(known, "jane@example.org")
	unknownAddr, _ := e.signer.Address(uuid.Must(uuid.NewV7()).String(), "jane@example.org")
	forger, err := verp.New(bounceDomain, bytes.Repeat([]byte{1}, 32))
	require.NoError(t, err)
	forged, _ := forger.Address(known, "jane@example.org")
	dsn := sample(t, "hard_bounce/postfix-user-unknown.eml", "jane")
	publish := func(h nats.Header, data []byte) func() error {
		return func() error {
			_, err := e.js.PublishMsg(context.Background(), &nats.Msg{Subject: queue.InboundSubject, Header: h, Data: data})
			return err
		}
	}
	for _, tc := range []struct {
		name string
		send func() error
	}{
		{"unknown message", func() error { return deliver(e.addr, unknownAddr, dsn) }},
		{"no mail at all", func() error { return deliver(e.addr, knownAddr, []byte("\x00\x01 not a header\r\n")) }},
		{"a person's answer", func() error {
			return deliver(e.addr, knownAddr, []byte("From: someone@example.org\r\nSubject: hello\r\n\r\nwho are you?\r\n"))
		}},
		{"a report about a stranger", func() error {
			two := e.message("a@example.org", "b@example.org")
			addr, _ := e.signer.Address(two, "")
			return deliver(e.addr, addr, sample(t, "hard_bounce/postfix-user-unknown.eml", "stranger"))
		}},
		{"forged address on the stream", publish(nats.Header{"Inbound-Rcpt": {forged}, "Inbound-Received": {time.Now().Format(time.RFC3339Nano)}}, dsn)},
		{"undecodable on the stream", publish(nil, dsn)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.streamCount()
			require.NoError(t, tc.send())
			e.settled()
			require.Equal(t, before, e.streamCount())
			require.Empty(t, e.suppressions())
		})
	}
}

// Mail the database refuses to record (here a constraint the test adds)
// is given up on alone: the batch it came in fails, its mails are recorded
// one at a time, the others are recorded and the refused one terminated,
// not retried.
func TestRefusedMailIsGivenUpAlone(t *testing.T) {
	t.Parallel()
	e := setup(t, 3)
	_, err := e.db.Pool.Exec(context.Background(),
		`ALTER TABLE suppressions ADD CONSTRAINT test_refused CHECK (address <> 'refused@example.org') NOT VALID`)
	require.NoError(t, err)
	var largest atomic.Int64
	inst := e.serve(options{batchWindow: time.Second, hooks: inbound.Hooks{Fetched: func(n int) {
		if int64(n) > largest.Load() {
			largest.Store(int64(n))
		}
	}}})
	var ids []string
	for _, local := range []string{"a", "refused", "b"} {
		rcpt := local + "@example.org"
		id := e.message(rcpt)
		addr, _ := e.signer.Address(id, rcpt)
		require.NoError(t, deliver(inst.addr, addr, sample(t, "hard_bounce/postfix-user-unknown.eml", local)))
		ids = append(ids, id)
	}
	e.settled()
	require.Equal(t, []uint64{1, 0, 1}, []uint64{e.eventsOf(ids[0]), e.eventsOf(ids[1]), e.eventsOf(ids[2])})
	require.Equal(t, map[string]string{"a@example.org": "bounce", "b@example.org": "bounce"}, e.suppressions())
	require.EqualValues(t, 3, largest.Load(), "the three came in one batch")
}

// While JetStream is unreachable nothing can be made durable: DATA is
// answered 451 4.3.0 (the sender retries), and once NATS is back the same
// mail is accepted and recorded.
func TestStreamDownAnswers451(t *testing.T) {
	t.Parallel()
	e := start(t, 3)
	id := e.message("jane@example.org")
	addr, _ := e.signer.Address(id, "jane@example.org")
	dsn := sample(t, "hard_bounce/postfix-user-unknown.eml", "jane")
	e.nats.Stop()
	err := deliver(e.addr, addr, dsn)
	var pe *textproto.Error
	require.True(t, errors.As(err, &pe), "%v", err)
	require.Equal(t, 451, pe.Code)
	require.Contains(t, pe.Msg, "4.3.0")

	e.nats.Restart()
	require.Eventually(t, func() bool { return deliver(e.addr, addr, dsn) == nil }, 20*time.Second, 100*time.Millisecond)
	require.Equal(t, "BOUNCED", e.events(id, 1)[0].GetType())
}

// BenchmarkInboundDSN: DSNs over SMTP (32 connections, one transaction per
// DSN, each for a distinct stored message) into BOUNCED events on
// EMAIL_EVENTS and suppressions in PostgreSQL. The clock runs until the last
// event is on the stream, so dsn/s counts recorded reports, not SMTP
// replies; every suppression is checked after. cpu-us/dsn is this process's
// CPU time (the service, the embedded nats-server and the SMTP clients; not
// PostgreSQL) per DSN, which neighbours on a shared machine disturb less
// than the wall clock; pg-cpu-us/dsn is the CPU time of the PostgreSQL
// server processes of the service's connections per DSN.
func BenchmarkInboundDSN(b *testing.B) {
	e := start(b, 3)
	const conns = 32
	ids := e.messages(b.N)
	raw, err := os.ReadFile(filepath.Join("..", "..", "pkg", "mailreport", "testdata", "corpus", "hard_bounce", "postfix-user-unknown.eml"))
	require.NoError(b, err)
	clients := make([]*smtp.Client, conns)
	for i := range clients {
		c, err := smtp.Dial(e.addr)
		require.NoError(b, err)
		require.NoError(b, c.Hello("mx.example.org"))
		clients[i] = c
	}
	before := e.streamCount()
	backends := pgBackends(b, e.db.Pool)
	pg0 := procCPU(b, backends)
	cpu0 := cpuTime(b)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for w := range conns {
		wg.Go(func() {
			c := clients[w]
			for i := w; i < b.N; i += conns {
				if err := sendDSN(c, e.signer, ids[i], fmt.Sprintf("r%d", i), raw); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	accepted := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	// Recorded: every DSN's event is on the stream (the suppressions are
	// written before the events are published).
	for e.streamCount() < before+uint64(b.N) {
		require.Less(b, time.Since(start), 2*time.Minute, "events: %d of %d", e.streamCount()-before, b.N)
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cpu := cpuTime(b) - cpu0
	pg := procCPU(b, backends) - pg0
	require.Len(b, e.suppressions(), b.N)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "dsn/s")
	b.ReportMetric(float64(b.N)/accepted.Seconds(), "smtp-dsn/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/dsn")
	b.ReportMetric(float64(pg.Microseconds())/float64(b.N), "pg-cpu-us/dsn")
	for _, c := range clients {
		_ = c.Quit()
	}
}

// sendDSN sends the DSN raw, rewritten for local@example.org, to the bounce
// address of message id as a bouncing MTA does.
func sendDSN(c *smtp.Client, signer *verp.Signer, id, local string, raw []byte) error {
	addr, err := signer.Address(id, local+"@example.org")
	if err != nil {
		return err
	}
	if err := c.Mail(""); err != nil {
		return err
	}
	if err := c.Rcpt(addr); err != nil {
		return err
	}
	wc, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := wc.Write(bytes.ReplaceAll(raw, []byte("jane@"), []byte(local+"@"))); err != nil {
		return err
	}
	return wc.Close()
}

// pgBackends are the process ids of the PostgreSQL server processes of
// pool's connections: it holds every connection the pool may open at once,
// so that the pool opens no other later.
func pgBackends(tb testing.TB, pool *pgxpool.Pool) []int {
	tb.Helper()
	ctx := context.Background()
	var pids []int
	for range pool.Config().MaxConns {
		c, err := pool.Acquire(ctx)
		require.NoError(tb, err)
		defer c.Release()
		var pid int
		require.NoError(tb, c.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
		pids = append(pids, pid)
	}
	return pids
}

// procCPU is the CPU time (user and system) the processes pids have used,
// from /proc/<pid>/stat (Linux, 100 clock ticks a second).
func procCPU(tb testing.TB, pids []int) time.Duration {
	tb.Helper()
	var ticks int64
	for _, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		require.NoError(tb, err)
		// The fields after the command name, which is in parentheses:
		// utime and stime are the 14th and 15th of the whole line.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		for _, f := range fields[11:13] {
			n, err := strconv.ParseInt(f, 10, 64)
			require.NoError(tb, err)
			ticks += n
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	require.NoError(tb, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
