package gmailpoll_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/namirasoft/email-sender/pkg/netguard"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/gmail"
	"github.com/namirasoft/email-sender/pkg/provider/providertest"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/secretbox"
	"github.com/namirasoft/email-sender/pkg/suppression"
	"github.com/namirasoft/email-sender/pkg/testkit/gmailtest"
	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	"github.com/namirasoft/email-sender/services/worker/gmailpoll"
	"github.com/namirasoft/email-sender/services/worker/store"
)

// fast polls every 50ms; the tests mostly call Poll themselves.
var fast = gmailpoll.Config{Interval: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Lease: 2 * time.Second,
	Discovery: 50 * time.Millisecond, PageSize: 2}

type env struct {
	t        *testing.T
	db       *pgtest.DB
	js       jetstream.JetStream
	fake     *gmailtest.Server
	sender   *gmail.Sender
	configs  *store.Configs
	account  string
	provider string
}

func start(t *testing.T, fakeOpts gmailtest.Options) *env {
	t.Helper()
	db := pgtest.New(t)
	_, js := natstest.Start(t).JetStream(t)
	ctx := context.Background()
	require.NoError(t, queue.EnsureStreams(ctx, js, queue.StreamConfig{}))
	fake := gmailtest.StartTest(t, fakeOpts)
	sender := gmail.New(gmail.Options{TokenURL: fake.TokenURL(), APIEndpoint: fake.APIEndpoint(), Guard: netguard.AllowAll(),
		Logger: slog.New(slog.DiscardHandler), MessageIDDomain: "mail.example.com"})
	t.Cleanup(func() { _ = sender.Close() })
	key, err := secretbox.NewMasterKey()
	require.NoError(t, err)
	keyring, err := secretbox.ParseKeyring("k1:"+key, "")
	require.NoError(t, err)

	e := &env{t: t, db: db, js: js, fake: fake, sender: sender, configs: store.NewConfigs(db.Pool, keyring, time.Minute),
		account: uuid.NewString(), provider: uuid.NewString()}
	_, err = db.Pool.Exec(ctx, `INSERT INTO accounts (id, name) VALUES ($1, 'a')`, e.account)
	require.NoError(t, err)
	settings, _ := json.Marshal(map[string]string{"client_id": gmailtest.DefaultClientID, "sender_user": "me"})
	secret, _ := json.Marshal(map[string]string{"client_secret": gmailtest.DefaultClientSecret, "refresh_token": gmailtest.DefaultRefreshToken})
	sealed, err := keyring.Seal(secret, []byte(e.provider))
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `INSERT INTO provider_configs (id, account_id, name, kind, settings, secret) VALUES ($1, $2, 'gmail', 'gmail', $3, $4)`,
		e.provider, e.account, settings, sealed)
	require.NoError(t, err)
	return e
}

func (e *env) poller(cfg gmailpoll.Config, softBounces int) *gmailpoll.Poller {
	e.t.Helper()
	p, err := gmailpoll.New(context.Background(), cfg, gmailpoll.Deps{
		Pool: e.db.Pool, JetStream: e.js, Mailbox: e.sender, Configs: e.configs,
		Suppression: suppression.Config{SoftBounces: softBounces, SoftBounceWindow: time.Hour},
	})
	require.NoError(e.t, err)
	return p
}

func (e *env) poll(p *gmailpoll.Poller) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(e.t, p.Poll(ctx, e.account, e.provider))
}

// send sends a message to rcpts through the configuration, as the worker
// does, and stores it SENT with the Gmail id as its provider message id.
func (e *env) send(rcpts ...string) (string, gmailtest.Message) {
	e.t.Helper()
	ctx := context.Background()
	pc, err := e.configs.Load(ctx, e.account, e.provider)
	require.NoError(e.t, err)
	id := uuid.Must(uuid.NewV7()).String()
	out := e.sender.Send(ctx, providertest.Delivery(&providertest.Env{Config: pc.Config}, id, rcpts...))
	require.Equal(e.t, provider.Sent, out.Class, "%v", out.Err)
	_, err = e.db.Pool.Exec(ctx, `
		INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, recipient_count, size_bytes, attempts, provider_message_id, created_at, updated_at)
		VALUES ($1, $2, $3, 'gmail', 5, 'sender@gmail.test', $4, 100, 1, $5, now(), now())`, id, e.account, e.provider, len(rcpts), out.MessageID)
	require.NoError(e.t, err)
	for i, r := range rcpts {
		_, err := e.db.Pool.Exec(ctx, `INSERT INTO recipients (message_id, idx, account_id, kind, address, status, updated_at)
			VALUES ($1, $2, $3, 'to', $4, 5, now())`, id, i, e.account, r)
		require.NoError(e.t, err)
	}
	got := e.fake.ByMessageID(id)
	require.Len(e.t, got, 1)
	return id, got[0]
}

// events are every event of message id on the stream.
func (e *env) events(id string) []*queuev1.DeliveryEvent {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := e.js.OrderedConsumer(ctx, queue.EventStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{queue.EventSubject(e.account, id)}})
	require.NoError(e.t, err)
	var out []*queuev1.DeliveryEvent
	for {
		m, err := c.Next(jetstream.FetchMaxWait(300 * time.Millisecond))
		if err != nil {
			return out
		}
		var ev queuev1.DeliveryEvent
		require.NoError(e.t, proto.Unmarshal(m.Data(), &ev))
		out = append(out, &ev)
	}
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

func (e *env) cursor() string {
	e.t.Helper()
	var s string
	require.NoError(e.t, e.db.Pool.QueryRow(context.Background(),
		`SELECT history_id::text FROM gmail_poll_cursors WHERE provider_id = $1`, e.provider).Scan(&s))
	return s
}

func (e *env) setCursor(v uint64) {
	e.t.Helper()
	_, err := e.db.Pool.Exec(context.Background(), `UPDATE gmail_poll_cursors SET history_id = $2 WHERE provider_id = $1`, e.provider, v)
	require.NoError(e.t, err)
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }

// TestPollMapsGmailBounce: a message sent through the Gmail configuration,
// then Gmail's bounce notice for one of its two recipients in the mailbox
// (among other mail): one poll publishes a BOUNCED hard_bounce event for
// that recipient alone and suppresses it; the cursor moves to the mailbox's
// historyId, survives a new poller (nothing published twice), and a history
// read again from an older cursor publishes the same event id, which the
// stream drops.
func TestPollMapsGmailBounce(t *testing.T) {
	t.Parallel()
	e := start(t, gmailtest.Options{})
	p := e.poller(fast, 3)
	e.poll(p) // the first poll starts at the mailbox's current history
	startAt := e.fake.HistoryID()
	require.Equal(t, itoa(startAt), e.cursor())

	id, sent := e.send("jane@example.com", "bob@example.org")
	e.fake.Receive([]byte("From: Bob <bob@example.org>\r\nTo: sender@gmail.test\r\nSubject: hello\r\n\r\nhi\r\n"))
	e.fake.Receive([]byte("From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\r\nSubject: Delivery Status Notification (Failure)\r\n" +
		"X-Failed-Recipients: someone@else.example\r\nIn-Reply-To: <not-ours@example.net>\r\n\r\nx\r\n")) // about no message of ours
	e.fake.Receive(e.fake.BounceOf(sent, gmailtest.Bounce{Failed: []string{"Jane@Example.com"}}))
	e.fake.Receive(e.fake.BounceOf(sent, gmailtest.Bounce{Failed: []string{"bob@example.org"}, Delay: true})) // still trying

	e.poll(p)
	evs := e.events(id)
	require.Len(t, evs, 1)
	ev := evs[0]
	require.Equal(t, queue.EventBounced, ev.GetType())
	require.Equal(t, "hard_bounce", ev.GetErrorClass())
	require.Equal(t, []string{"jane@example.com"}, ev.GetRecipients())
	require.Equal(t, e.provider, ev.GetProviderId())
	require.Equal(t, "hard bounce (X-Failed-Recipients, Gmail notice): address suppressed", ev.GetDetail())
	require.Equal(t, map[string]string{"jane@example.com": "bounce"}, e.suppressions())
	require.Equal(t, itoa(e.fake.HistoryID()), e.cursor(), "the cursor moved to the mailbox's historyId")

	// A new poller (a restart) reads from the stored cursor: nothing new.
	e.poll(e.poller(fast, 3))
	require.Len(t, e.events(id), 1)

	// Read again from before the notice (a poll that failed after
	// recording): the same event id, dropped by the stream.
	e.setCursor(startAt)
	e.poll(p)
	require.Len(t, e.events(id), 1, "no double event")

	for _, c := range e.fake.Calls() {
		require.Empty(t, c.Violations)
	}
}

// TestPollHistoryTooOld: when Gmail no longer keeps the history from the
// cursor (404), the poller restarts from the profile's historyId and keeps
// polling from there.
func TestPollHistoryTooOld(t *testing.T) {
	t.Parallel()
	e := start(t, gmailtest.Options{})
	p := e.poller(fast, 3)
	e.poll(p)
	id, sent := e.send("jane@example.com")
	e.fake.Receive(e.fake.BounceOf(sent, gmailtest.Bounce{Failed: []string{"jane@example.com"}}))
	e.fake.ExpireHistory() // the notice is in the history Gmail forgot
	e.poll(p)
	require.Equal(t, itoa(e.fake.HistoryID()), e.cursor(), "restarted at the current historyId")
	require.Empty(t, e.events(id), "a notice in the forgotten history is not seen")

	e.fake.Receive(e.fake.BounceOf(sent, gmailtest.Bounce{Failed: []string{"jane@example.com"}}))
	e.poll(p)
	require.Len(t, e.events(id), 1, "polling goes on from the new cursor")
}

// TestPollPolicyBlockNotSuppressed: with a scope that reads bodies
// (gmail.readonly without gmail.metadata), a "Message blocked" notice is a
// policy block: BOUNCED, the address not suppressed, the detail naming the
// delivery-status's code.
func TestPollPolicyBlockNotSuppressed(t *testing.T) {
	t.Parallel()
	e := start(t, gmailtest.Options{Scopes: []string{"https://www.googleapis.com/auth/gmail.send", "https://www.googleapis.com/auth/gmail.readonly"}})
	p := e.poller(fast, 3)
	e.poll(p)
	id, sent := e.send("jane@example.com")
	e.fake.Receive(e.fake.BounceOf(sent, gmailtest.Bounce{Failed: []string{"jane@example.com"}, Heading: "Message blocked", Status: "5.7.1",
		Diagnostic: "550 5.7.1 Message rejected due to local policy"}))
	e.poll(p)
	evs := e.events(id)
	require.Len(t, evs, 1)
	require.Equal(t, "policy_block", evs[0].GetErrorClass())
	require.Contains(t, evs[0].GetProviderResponse(), "550 5.7.1")
	require.Equal(t, "policy or reputation block (5.7.1, Gmail notice): address not suppressed", evs[0].GetDetail())
	require.Empty(t, e.suppressions())
}

// TestPollClassifiesByScope: what a configuration's token may read decides
// how a Gmail notice is classified. A token granted gmail.readonly (without
// gmail.metadata) reads the notice's body (format=raw) and each recipient
// gets the class of its delivery-status, as the inbound service gives it;
// with gmail.metadata (alone, or beside gmail.readonly: Gmail then gives
// headers only) every failure is a hard bounce, as before. Each notice is
// about another message to the same address, so soft bounces count in a row.
func TestPollClassifiesByScope(t *testing.T) {
	t.Parallel()
	send := "https://www.googleapis.com/auth/gmail.send"
	readonly := []string{send, gmail.ScopeReadonly}
	full := gmailtest.Bounce{Heading: "Message not delivered", Status: "5.2.2",
		Diagnostic: "552 5.2.2 The recipient's mailbox is full and cannot take more mail right now."}
	policy := gmailtest.Bounce{Heading: "Message blocked", Status: "5.7.1",
		Diagnostic: "550 5.7.1 Mail from your sending address is refused by this site's policy."}
	unknown := gmailtest.Bounce{} // 5.1.1, Gmail's NoSuchUser wording
	delay := gmailtest.Bounce{Delay: true, Heading: "Delivery incomplete", Status: "4.4.1",
		Diagnostic: "421 4.4.1 The recipient server did not answer in time."}
	type step struct {
		bounce     gmailtest.Bounce
		class      string // the event's error class, "" for no event
		suppressed bool   // the address is suppressed after it
	}
	for _, tc := range []struct {
		name   string
		scopes []string
		steps  []step
		raw    bool // the notices were read with format=raw
	}{
		{"readonly: mailbox full is soft, suppressed after two in a row", readonly,
			[]step{{full, "soft_bounce", false}, {full, "soft_bounce", true}}, true},
		{"readonly: policy block never suppresses", readonly,
			[]step{{policy, "policy_block", false}, {policy, "policy_block", false}, {policy, "policy_block", false}}, true},
		{"readonly: no such user is hard", readonly, []step{{unknown, "hard_bounce", true}}, true},
		{"readonly: a delay notice records nothing", readonly,
			[]step{{delay, "", false}, {full, "soft_bounce", false}, {delay, "", false}}, true},
		{"metadata only: every failure is hard", nil, []step{{policy, "hard_bounce", true}}, false},
		{"readonly beside metadata: headers only, hard", append(readonly, gmail.ScopeMetadata), []step{{full, "hard_bounce", true}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := start(t, gmailtest.Options{Scopes: tc.scopes})
			p := e.poller(fast, 2)
			e.poll(p)
			for i, st := range tc.steps {
				id, sent := e.send("jane@example.com")
				st.bounce.Failed = []string{"jane@example.com"}
				e.fake.Receive(e.fake.BounceOf(sent, st.bounce))
				e.poll(p)
				evs := e.events(id)
				if st.class == "" {
					require.Empty(t, evs, "step %d", i)
				} else {
					require.Len(t, evs, 1, "step %d", i)
					require.Equal(t, queue.EventBounced, evs[0].GetType())
					require.Equal(t, st.class, evs[0].GetErrorClass(), "step %d", i)
					if tc.raw {
						want := "550 5.1.1" // the fake's default diagnostic
						if st.bounce.Diagnostic != "" {
							want = st.bounce.Diagnostic[:9]
						}
						require.Contains(t, evs[0].GetProviderResponse(), want, "the recipient's own diagnostic")
					}
				}
				_, got := e.suppressions()["jane@example.com"]
				require.Equal(t, st.suppressed, got, "step %d: suppressed", i)
			}
			raw := 0
			for _, c := range e.fake.Calls() {
				require.Empty(t, c.Violations)
				if strings.Contains(c.Query, "format=raw") {
					raw++
					require.Equal(t, http.StatusOK, c.Status)
				}
			}
			require.Equal(t, tc.raw, raw > 0, "format=raw calls: %d", raw)
		})
	}
}

// TestRunPollsEveryConfigurationOnce: two pollers (two worker replicas) run
// side by side; each configuration is polled under one lease, and a notice
// becomes one event.
func TestRunPollsEveryConfigurationOnce(t *testing.T) {
	t.Parallel()
	e := start(t, gmailtest.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	for range 2 {
		p := e.poller(fast, 3)
		go func() { _ = p.Run(ctx); done <- struct{}{} }()
	}
	t.Cleanup(func() { cancel(); <-done; <-done })
	require.Eventually(t, func() bool {
		var n int
		_ = e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM gmail_poll_cursors WHERE provider_id = $1`, e.provider).Scan(&n)
		return n == 1
	}, 10*time.Second, 20*time.Millisecond, "the cursor is set by the first poll")
	id, sent := e.send("jane@example.com")
	e.fake.Receive(e.fake.BounceOf(sent, gmailtest.Bounce{Failed: []string{"jane@example.com"}}))
	require.Eventually(t, func() bool { return len(e.events(id)) == 1 }, 10*time.Second, 50*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	require.Len(t, e.events(id), 1)
	require.Equal(t, itoa(e.fake.HistoryID()), e.cursor())
}
