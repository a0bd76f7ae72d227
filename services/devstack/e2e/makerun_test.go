package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"

	"github.com/namirasoft/email-sender/pkg/testkit/mailservers"
	"github.com/namirasoft/email-sender/pkg/testkit/mimecheck"
	"github.com/namirasoft/email-sender/pkg/testkit/pgtest"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// startDevstack runs the dev stack binary (what `make run` runs) with env,
// stopped with an interrupt at the test's end (its log shown if the test
// failed), and returns what it printed up to its welcome's last line.
func startDevstack(t *testing.T, devstack string, env []string) string {
	t.Helper()
	cmd := exec.Command(devstack)
	cmd.Env = env
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var logs logBuffer
	cmd.Stderr = &logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("devstack log:\n%s", logs.String())
		}
	})
	welcome := readUntil(t, stdout, "Stop with Ctrl-C.", 90*time.Second, &logs)
	return welcome
}

// The newcomer's path as processes: the dev stack that `make run` starts, an
// SMTP account bootstrapped with the ingest CLI (as the README shows) pointing
// at Mailpit, one SendEmail through a gRPC client, the status through the
// report, and the message read back from Mailpit by an independent parser.
func TestMakeRunDeliversToMailpit(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	build := func(name, pkg string) string {
		out := filepath.Join(bin, name)
		cmd := exec.Command("go", "build", "-o", out, pkg)
		b, err := cmd.CombinedOutput()
		require.NoError(t, err, "go build %s: %s", pkg, b)
		return out
	}
	devstack := build("devstack", "github.com/namirasoft/email-sender/services/devstack")
	ingestCLI := build("ingest", "github.com/namirasoft/email-sender/services/ingest/cmd/ingest")

	mp := mailservers.Mailpit(t, mailservers.Config{
		CA: mailservers.NewCA(t), Username: "acme", Password: "mailpit-Pa55",
		MaxSize: 10 << 20, IdleTimeout: time.Minute, RefuseLocalPart: "refused",
	})
	mpPort, _ := mp.Port(mailservers.Plain)

	db := pgtest.New(t)
	data := t.TempDir()
	ingestAddr, reportAddr, natsPort := freeAddr(t), freeAddr(t), freePortNum(t)
	env := append(os.Environ(),
		"DATABASE_URL="+db.URL, "DEV_DATA_DIR="+data, fmt.Sprintf("DEV_NATS_PORT=%d", natsPort),
		"DEV_METRICS_ADDR=off", "INGEST_GRPC_ADDR="+ingestAddr, "REPORT_GRPC_ADDR="+reportAddr,
		"INGEST_HTTP_ADDR=off", "REPORT_HTTP_ADDR=off", "DEV_GRPCURL=/opt/tools/grpcurl",
	)
	env = withoutEnv(env, "NATS_URL", "MASTER_KEYS") // an embedded NATS and the dev master key, as make run has
	welcome := startDevstack(t, devstack, env)
	require.Contains(t, welcome, "/opt/tools/grpcurl -plaintext", "the printed commands use the grpcurl that works in a new shell")

	// The README's bootstrap of an SMTP account, as a process.
	masterKey, err := os.ReadFile(filepath.Join(data, "master.key"))
	require.NoError(t, err)
	boot := exec.Command(ingestCLI, "admin", "bootstrap", "--account", "acme", "--provider-kind", "smtp",
		"--smtp-host", "127.0.0.1", "--smtp-port", fmt.Sprint(mpPort), "--smtp-tls", "none",
		"--smtp-user", "acme", "--smtp-password-env", "SMTP_PASSWORD", "--sender", "acme.example")
	boot.Env = append(withoutEnv(os.Environ(), "MASTER_KEYS"), "SMTP_PASSWORD=mailpit-Pa55",
		"MASTER_KEYS="+strings.TrimSpace(string(masterKey)), "DATABASE_URL="+db.URL)
	out, err := boot.CombinedOutput()
	require.NoError(t, err, "bootstrap: %s", out)
	m := regexp.MustCompile(`(?m)^api_key:\s+(\S+)`).FindSubmatch(out)
	require.NotNil(t, m, "bootstrap printed no api key: %s", out)
	require.NotContains(t, string(out), "mailpit-Pa55")
	key := string(m[1])

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
	send := v1.NewSendServiceClient(dial(t, ingestAddr))
	resp, err := send.SendEmail(ctx, &v1.SendEmailRequest{Message: &v1.EmailMessage{
		From:     &v1.Address{Address: "hello@acme.example", Name: "ACME"},
		To:       []*v1.Address{{Address: "first@example.com", Name: "First Customer"}},
		Subject:  "Welcome to ACME",
		TextBody: "Hello from Email Sender through Mailpit.",
	}})
	require.NoError(t, err)
	id := resp.GetMessageId()

	report := v1.NewReportServiceClient(dial(t, reportAddr))
	var got *v1.GetMessageResponse
	require.Eventually(t, func() bool {
		got, err = report.GetMessage(ctx, &v1.GetMessageRequest{MessageId: id})
		return err == nil && got.GetMessage().GetStatus() == v1.MessageStatus_SENT
	}, 45*time.Second, 50*time.Millisecond, "status: %v (err %v)", got.GetMessage().GetStatus(), err)
	var sent *v1.MessageEvent
	for _, e := range got.GetEvents() {
		if e.GetType() == "SENT" {
			sent = e
		}
	}
	require.NotNil(t, sent, "timeline: %v", eventTypes(got))
	require.Regexp(t, `^250 2\.0\.0 Ok: queued as \S+`, sent.GetProviderResponse(), "Mailpit's own answer in the timeline")

	copies := mp.WaitFor(t, id, []string{"first@example.com"}, 30*time.Second)
	parsed, err := mimecheck.ParseOne(ctx, copies[0].Raw)
	require.NoError(t, err)
	require.Empty(t, parsed.Defects)
	require.Equal(t, "Welcome to ACME", parsed.Subject)
	require.Equal(t, []mimecheck.Address{{Name: "ACME", Address: "hello@acme.example"}}, parsed.Addresses["from"])
	require.Equal(t, "Hello from Email Sender through Mailpit.", strings.TrimRight(parsed.Leaves()[0].Text, "\n"))
}

// readUntil reads r until a line contains marker and returns all it read.
func readUntil(t *testing.T, r io.Reader, marker string, timeout time.Duration, logs *logBuffer) string {
	t.Helper()
	var mu sync.Mutex
	var b strings.Builder
	found := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(r)
		once := sync.Once{}
		for sc.Scan() {
			mu.Lock()
			b.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if strings.Contains(sc.Text(), marker) {
				once.Do(func() { close(found) })
			}
		}
	}()
	select {
	case <-found:
	case <-time.After(timeout):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("no %q within %s; stdout:\n%s\nlog:\n%s", marker, timeout, b.String(), logs.String())
	}
	mu.Lock()
	defer mu.Unlock()
	return b.String()
}

func freeAddr(t *testing.T) string {
	return fmt.Sprintf("127.0.0.1:%d", freePortNum(t))
}

func freePortNum(t *testing.T) int {
	l := listen(t)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func withoutEnv(env []string, names ...string) []string {
	out := env[:0:0]
	for _, kv := range env {
		keep := true
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}
