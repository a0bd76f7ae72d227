package imappoll_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/namirasoft/email-sender/pkg/netguard"
	"github.com/namirasoft/email-sender/pkg/provider/smtp"
	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/secretbox"
	"github.com/namirasoft/email-sender/pkg/suppression"
	"github.com/namirasoft/email-sender/pkg/testkit/mailservers"
	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
	"github.com/namirasoft/email-sender/pkg/verp"
	queuev1 "github.com/namirasoft/email-sender/proto/emailsender/queue/v1"
	"github.com/namirasoft/email-sender/services/inbound"
	"github.com/namirasoft/email-sender/services/inbound/imappoll"
)

const bounceDomain = "bounces.example.net"

var masterKeys = "k1:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))

type env struct {
	t       *testing.T
	db      *pgtest.DB
	js      jetstream.JetStream
	svc     *inbound.Service
	signer  *verp.Signer
	imap    *mailservers.IMAPServer
	ca      *mailservers.CA
	account string
	config  string
}

func start(t *testing.T) *env {
	t.Helper()
	db := pgtest.New(t)
	_, js := natstest.Start(t).JetStream(t)
	ctx := context.Background()
	require.NoError(t, queue.EnsureStreams(ctx, js, queue.StreamConfig{}))
	svc, err := inbound.New(inbound.Config{
		Bounce:      verp.Config{Domain: bounceDomain, Keys: "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio="},
		Suppression: suppression.Config{SoftBounces: 3, SoftBounceWindow: time.Hour},
	}, inbound.Deps{Pool: db.Pool, JetStream: js})
	require.NoError(t, err)
	ca := mailservers.NewCA(t)
	srv := mailservers.Dovecot(t, mailservers.DovecotConfig{CA: ca, Username: "bounces", Password: "imap-s3cret"})
	e := &env{t: t, db: db, js: js, svc: svc, signer: svc.Signer(), imap: srv, ca: ca, account: e2account(t, db)}
	e.config = e.providerConfig(e.account, smtp.Settings{Host: "smtp.example.com", BounceIMAPHost: "127.0.0.1",
		BounceIMAPPort: srv.TLSPort, BounceIMAPTLS: smtp.IMAPTLSImplicit, BounceIMAPUsername: srv.Username})
	return e
}

func e2account(t *testing.T, db *pgtest.DB) string {
	id := uuid.NewString()
	_, err := db.Pool.Exec(context.Background(), `INSERT INTO accounts (id, name) VALUES ($1, 'a')`, id)
	require.NoError(t, err)
	return id
}

// providerConfig stores an smtp configuration of account with s and the
// IMAP password, sealed as ingest seals it.
func (e *env) providerConfig(account string, s smtp.Settings) string {
	e.t.Helper()
	sec := smtp.Secret{BounceIMAPPassword: e.imap.Password}
	require.NoError(e.t, s.Normalize(sec))
	id := uuid.NewString()
	settings, _ := json.Marshal(s)
	plain, _ := json.Marshal(sec)
	kr, err := secretbox.ParseKeyring(masterKeys, "")
	require.NoError(e.t, err)
	sealed, err := kr.Seal(plain, []byte(id))
	require.NoError(e.t, err)
	_, err = e.db.Pool.Exec(context.Background(), `INSERT INTO provider_configs (id, account_id, name, kind, settings, secret)
		VALUES ($1, $2, 'relay', 'smtp', $3, $4)`, id, account, settings, sealed)
	require.NoError(e.t, err)
	return id
}

func (e *env) message(account, rcpt string) string {
	e.t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	ctx := context.Background()
	_, err := e.db.Pool.Exec(ctx, `
		INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, recipient_count, size_bytes, attempts, created_at, updated_at)
		VALUES ($1, $2, $3, 'smtp', 5, 'sender@example.com', 1, 100, 1, now(), now())`, id, account, e.config)
	require.NoError(e.t, err)
	_, err = e.db.Pool.Exec(ctx, `INSERT INTO recipients (message_id, idx, account_id, kind, address, status, updated_at)
		VALUES ($1, 0, $2, 'to', $3, 5, now())`, id, account, rcpt)
	require.NoError(e.t, err)
	return id
}

func (e *env) poller(allow ...string) *imappoll.Poller {
	e.t.Helper()
	p, err := imappoll.New(context.Background(), imappoll.Config{Interval: time.Minute, MasterKeys: masterKeys,
		Outbound: netguard.Config{AllowNets: allow}},
		imappoll.Deps{Pool: e.db.Pool, JetStream: e.js, Signer: e.signer, RootCAs: e.ca.Pool, Recorder: e.svc.IMAPRecorder()})
	require.NoError(e.t, err)
	return p
}

// dsn is the corpus's Postfix "user unknown" DSN for rcpt, delivered to
// deliveredTo (a Delivered-To header; none when ""), returning the headers
// of the message with Message-ID <msgID@example.com>.
func dsn(t *testing.T, rcpt, deliveredTo, msgID string) []byte {
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "pkg", "mailreport", "testdata", "corpus", "hard_bounce", "postfix-user-unknown.eml"))
	require.NoError(t, err)
	raw = bytes.ReplaceAll(raw, []byte("jane@example.org"), []byte(rcpt))
	raw = bytes.ReplaceAll(raw, []byte("0192f1c4-7a1e-7b1e-9c1e-1e2f3a4b5c6d"), []byte(msgID))
	// The SMTP server dropped it into a mailbox: the To is its own address.
	raw = bytes.ReplaceAll(raw, []byte("b+token@bounces.example.net"), []byte("bounces@relay.example.com"))
	if deliveredTo != "" {
		raw = append([]byte("Delivered-To: "+deliveredTo+"\r\n"), raw...)
	}
	return bytes.ReplaceAll(bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
}

// client logs in to the mailbox over implicit TLS.
func (e *env) client() *imapclient.Client {
	e.t.Helper()
	c, err := imapclient.DialTLS(fmt.Sprintf("127.0.0.1:%d", e.imap.TLSPort), &imapclient.Options{TLSConfig: &tls.Config{RootCAs: e.ca.Pool, ServerName: "127.0.0.1"}})
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = c.Close() })
	require.NoError(e.t, c.Login(e.imap.Username, e.imap.Password).Wait())
	return c
}

func (e *env) appendMail(raw []byte) {
	e.t.Helper()
	c := e.client()
	cmd := c.Append("INBOX", int64(len(raw)), nil)
	_, err := cmd.Write(raw)
	require.NoError(e.t, err)
	require.NoError(e.t, cmd.Close())
	_, err = cmd.Wait()
	require.NoError(e.t, err)
}

// flags are the flags of every mail of INBOX, by UID.
func (e *env) flags() map[imap.UID][]imap.Flag {
	e.t.Helper()
	c := e.client()
	_, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	require.NoError(e.t, err)
	msgs, err := c.Fetch(imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true}).Collect()
	require.NoError(e.t, err)
	out := map[imap.UID][]imap.Flag{}
	for _, m := range msgs {
		out[m.UID] = m.Flags
	}
	return out
}

func (e *env) streamCount() uint64 {
	s, err := e.js.Stream(context.Background(), queue.EventStream)
	require.NoError(e.t, err)
	info, err := s.Info(context.Background())
	require.NoError(e.t, err)
	return info.State.Msgs
}

func (e *env) event(account, id string) *queuev1.DeliveryEvent {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := e.js.OrderedConsumer(ctx, queue.EventStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{queue.EventSubject(account, id)}})
	require.NoError(e.t, err)
	m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
	require.NoError(e.t, err)
	var ev queuev1.DeliveryEvent
	require.NoError(e.t, proto.Unmarshal(m.Data(), &ev))
	return &ev
}

func (e *env) suppressed(account, addr string) string {
	var reason string
	err := e.db.Pool.QueryRow(context.Background(), `SELECT reason FROM suppressions WHERE account_id = $1 AND address = $2`, account, addr).Scan(&reason)
	if err != nil {
		return ""
	}
	return reason
}

// Against Dovecot over implicit TLS: a DSN delivered to a signed bounce
// address and one matched by the returned Message-ID become BOUNCED events
// and suppressions, and are marked \Seen and $NamirasoftHandled; a forged
// address, a message of another account and an unknown message are
// ignored (marked, not \Seen). A second poll, and a new poller (a
// restart), record nothing more.
func TestPollerRecordsBouncesFromDovecot(t *testing.T) {
	t.Parallel()
	e := start(t)
	byVERP := e.message(e.account, "gone@example.org")
	verpAddr, err := e.signer.Address(byVERP, "gone@example.org")
	require.NoError(t, err)
	byHeader := e.message(e.account, "b@example.org")
	other := e2account(t, e.db)
	foreign := e.message(other, "x@example.org")
	forger, err := verp.New(bounceDomain, bytes.Repeat([]byte{1}, 32))
	require.NoError(t, err)
	forged, err := forger.Address(foreign, "x@example.org")
	require.NoError(t, err)

	e.appendMail(dsn(t, "gone@example.org", verpAddr, uuid.NewString()))               // 1: by its bounce address
	e.appendMail(dsn(t, "b@example.org", "", byHeader))                                // 2: by Message-ID
	e.appendMail(dsn(t, "x@example.org", forged, foreign))                             // 3: forged address, another account's message
	e.appendMail(dsn(t, "y@example.org", "", uuid.Must(uuid.NewV7()).String()))        // 4: unknown message
	e.appendMail([]byte("From: a@example.org\r\nSubject: hi\r\n\r\nnot a report\r\n")) // 5: no report

	p := e.poller("127.0.0.0/8")
	before := e.streamCount()
	require.NoError(t, p.PollAll(context.Background()))

	ev := e.event(e.account, byVERP)
	require.Equal(t, "BOUNCED", ev.GetType())
	require.Equal(t, "hard_bounce", ev.GetErrorClass())
	require.Equal(t, []string{"gone@example.org"}, ev.GetRecipients())
	ev = e.event(e.account, byHeader)
	require.Equal(t, []string{"b@example.org"}, ev.GetRecipients())
	require.Equal(t, before+2, e.streamCount())
	require.Equal(t, "bounce", e.suppressed(e.account, "gone@example.org"))
	require.Equal(t, "bounce", e.suppressed(e.account, "b@example.org"))
	require.Empty(t, e.suppressed(other, "x@example.org"))

	flags := e.flags()
	require.Len(t, flags, 5)
	for uid, fl := range flags {
		require.Contains(t, fl, imappoll.Keyword, "uid %d", uid)
		require.Equal(t, uid <= 2, slices.Contains(fl, imap.FlagSeen), "uid %d: %v", uid, fl)
	}
	var last int64
	require.NoError(t, e.db.Pool.QueryRow(context.Background(), `SELECT last_uid FROM imap_poll_state WHERE provider_id = $1`, e.config).Scan(&last))
	require.Equal(t, int64(5), last)

	// Again, and after a restart: nothing new.
	require.NoError(t, p.PollAll(context.Background()))
	require.NoError(t, e.poller("127.0.0.0/8").PollAll(context.Background()))
	require.Equal(t, before+2, e.streamCount())

	// The state lost (restored from a backup): the keyword still tells.
	_, err = e.db.Pool.Exec(context.Background(), `DELETE FROM imap_poll_state`)
	require.NoError(t, err)
	require.NoError(t, e.poller("127.0.0.0/8").PollAll(context.Background()))
	require.Equal(t, before+2, e.streamCount())

	// New mail is read after the stored UID.
	again := e.message(e.account, "late@example.org")
	e.appendMail(dsn(t, "late@example.org", "", again))
	require.NoError(t, p.PollAll(context.Background()))
	require.Equal(t, []string{"late@example.org"}, e.event(e.account, again).GetRecipients())
	require.Equal(t, before+3, e.streamCount())
}

// The tenant chooses the IMAP host: without the operator's allow list a
// loopback host is refused (and the error kept with the state), and the
// mailbox backs off.
func TestPollerRefusesInternalHosts(t *testing.T) {
	t.Parallel()
	e := start(t)
	id := e.message(e.account, "gone@example.org")
	e.appendMail(dsn(t, "gone@example.org", "", id))
	before := e.streamCount()
	p := e.poller()
	require.NoError(t, p.PollAll(context.Background()))
	var lastErr string
	require.NoError(t, e.db.Pool.QueryRow(context.Background(), `SELECT last_error FROM imap_poll_state WHERE provider_id = $1`, e.config).Scan(&lastErr))
	require.Contains(t, lastErr, netguard.ErrRefused.Error())
	require.NotContains(t, lastErr, e.imap.Password)
	require.Equal(t, before, e.streamCount())
	for _, fl := range e.flags() {
		require.NotContains(t, fl, imappoll.Keyword)
	}
}
