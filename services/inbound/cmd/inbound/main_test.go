package main

import (
	"bytes"
	"context"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/queue"
	"github.com/namirasoft/email-sender/pkg/testkit/natstest"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
	"github.com/namirasoft/email-sender/pkg/verp"
	"github.com/namirasoft/email-sender/services/inbound"
)

// runMain makes the test binary the inbound command (TestKilled... starts
// it so, as its own process).
const runMain = "INBOUND_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMain) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// The inbound command is killed (SIGKILL) after it answered 250 for a DSN
// and fetched it from EMAIL_INBOUND, before it recorded it; a new process
// records it once JetStream delivers it again: one event, the address
// suppressed, nothing left on the work stream.
func TestKilledAfterAcceptRecordsOnce(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ns := natstest.Start(t)
	_, js := ns.JetStream(t)
	ctx := context.Background()
	require.NoError(t, queue.EnsureStreams(ctx, js, queue.StreamConfig{}))
	const key = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio="
	signer, err := verp.New("bounces.example.net", bytes.Repeat([]byte{42}, 32))
	require.NoError(t, err)
	account, id := uuid.NewString(), uuid.Must(uuid.NewV7()).String()
	_, err = db.Pool.Exec(ctx, `INSERT INTO accounts (id, name) VALUES ($1, 'a')`, account)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `
		INSERT INTO messages (id, account_id, provider_id, provider_kind, status, from_address, recipient_count, size_bytes, attempts, created_at, updated_at)
		VALUES ($1, $2, $3, 'smtp', 5, 'sender@example.com', 1, 100, 1, now(), now())`, id, account, uuid.NewString())
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `INSERT INTO recipients (message_id, idx, account_id, kind, address, status, updated_at)
		VALUES ($1, 0, $2, 'to', 'jane@example.org', 5, now())`, id, account)
	require.NoError(t, err)

	start := func(batchWindow string) (*exec.Cmd, string) {
		smtpAddr := freeAddr(t)
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), runMain+"=1", "DATABASE_URL="+db.URL, "NATS_URL="+ns.URL(),
			"BOUNCE_DOMAIN=bounces.example.net", "BOUNCE_KEY="+key, "MASTER_KEYS=", "SUBMISSION_ADDR=", "SUBMISSION_TLS_ADDR=",
			"INBOUND_SMTP_ADDR="+smtpAddr, "INBOUND_GRPC_ADDR="+freeAddr(t), "INBOUND_METRICS_ADDR=off",
			"INBOUND_BATCH_WINDOW="+batchWindow, "INBOUND_ACK_WAIT=2s", "INBOUND_PROCESS_TIMEOUT=1s", "LOG_LEVEL=warn")
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		require.Eventually(t, func() bool {
			c, err := net.Dial("tcp", smtpAddr)
			if err == nil {
				_ = c.Close()
			}
			return err == nil
		}, 30*time.Second, 50*time.Millisecond, "inbound never listened")
		return cmd, smtpAddr
	}
	// A long batch window: the fetched DSN waits in the open batch.
	first, addr := start("1m")
	rcpt, err := signer.Address(id, "jane@example.org")
	require.NoError(t, err)
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "pkg", "mailreport", "testdata", "corpus", "hard_bounce", "postfix-user-unknown.eml"))
	require.NoError(t, err)
	require.NoError(t, smtp.SendMail(addr, nil, "", []string{rcpt}, raw))

	cons, err := js.Consumer(ctx, queue.InboundStream, inbound.Consumer)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumAckPending == 1
	}, 20*time.Second, 20*time.Millisecond, "the DSN was never fetched")
	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	_ = first.Wait()
	events := func() uint64 {
		st, err := js.Stream(ctx, queue.EventStream)
		require.NoError(t, err)
		subject := queue.EventSubject(account, id)
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
		require.NoError(t, err)
		return info.State.Subjects[subject]
	}
	require.Zero(t, events(), "killed before recording")

	start("10ms")
	require.Eventually(t, func() bool { return events() == 1 }, 30*time.Second, 50*time.Millisecond)
	require.Eventually(t, func() bool {
		st, err := js.Stream(ctx, queue.InboundStream)
		require.NoError(t, err)
		info, err := st.Info(ctx)
		require.NoError(t, err)
		return info.State.Msgs == 0
	}, 20*time.Second, 50*time.Millisecond, "EMAIL_INBOUND never emptied")
	require.Equal(t, uint64(1), events())
	var reason string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT reason FROM suppressions WHERE account_id = $1 AND address = 'jane@example.org'`, account).Scan(&reason))
	require.Equal(t, "bounce", reason)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}
