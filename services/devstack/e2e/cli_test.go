package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/namirasoft/email-sender/pkg/testkit/tcprelay"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// cliBinary builds the emailsender command once per test binary.
var cliBinary = sync.OnceValues(func() (string, error) {
	_, file, _, _ := runtime.Caller(0)
	dir, err := os.MkdirTemp("", "emailsender-cli")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "emailsender")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/emailsender")
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..", "cli")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build emailsender: %v: %s", err, out)
	}
	return bin, nil
})

// cliRun is one run of the command.
type cliRun struct {
	code           int
	stdout, stderr string
}

// cli runs the emailsender command with a clean environment: HOME is a
// temporary directory, env adds to it.
type cliEnv struct {
	t    *testing.T
	bin  string
	home string
	env  []string
	// outputs collects every stdout and stderr, to search for secrets.
	outputs *bytes.Buffer
}

func newCLI(t *testing.T, env ...string) *cliEnv {
	t.Helper()
	bin, err := cliBinary()
	require.NoError(t, err)
	home := t.TempDir()
	return &cliEnv{t: t, bin: bin, home: home, env: append([]string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}, env...), outputs: &bytes.Buffer{}}
}

func (c *cliEnv) run(args ...string) cliRun {
	c.t.Helper()
	return c.runEnv(nil, args...)
}

func (c *cliEnv) runEnv(extra []string, args ...string) cliRun {
	c.t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(append([]string{}, c.env...), extra...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := cliRun{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else {
		require.NoError(c.t, err)
	}
	c.outputs.WriteString(r.stdout + r.stderr)
	return r
}

// ok runs the command, requires exit 0 and returns stdout.
func (c *cliEnv) ok(args ...string) string {
	c.t.Helper()
	r := c.run(args...)
	require.Equal(c.t, 0, r.code, "emailsender %s: stderr: %s\nstdout: %s", strings.Join(args, " "), r.stderr, r.stdout)
	return r.stdout
}

func unmarshalJSON[M interface {
	*T
	proto.Message
}, T any](t *testing.T, s string) M {
	t.Helper()
	m := M(new(T))
	require.NoError(t, protojson.Unmarshal([]byte(s), m), "%s", s)
	return m
}

// The emailsender command end to end, as a process against the real
// services: send from flags with an attachment and --wait, from a JSON
// request and from an .eml file; status, list with filters, stats, cancel;
// keys, suppressions, senders and providers; a profile file; and the exit
// codes. The account's API key never appears in any output.
func TestCLIEndToEnd(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{dns: true})
	key := s.accounts["a"].APIKey
	c := newCLI(t, "EMAILSENDER_ADDR="+s.ingestAddr, "EMAILSENDER_REPORT_ADDR="+s.reportAddr,
		"EMAILSENDER_API_KEY="+key, "EMAILSENDER_TLS=false")
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}

	// send from flags, with an attachment, waiting for SENT.
	report := unmarshalJSON[*v1.GetMessageResponse](t, c.ok("send", "--from", "Sender <sender@example.com>", "--to", "jane@example.com,john@example.com",
		"--subject", "CLI hello", "--text", "Hello from the CLI", "--html", "<p>Hello</p>",
		"--attach", write("notes.txt", "attached notes"), "--tag", "campaign=cli", "--header", "X-Trace=42", "--wait", "-o", "json"))
	first := report.GetMessage().GetMessageId()
	require.Equal(t, v1.MessageStatus_SENT, report.GetMessage().GetStatus())
	require.Len(t, report.GetRecipients(), 2)
	copies := arrivedCopies(s, first)
	require.Len(t, copies, 1)
	var data []byte
	for _, m := range s.sink.Messages() {
		if containsID(m.Data, first) {
			data = m.Data
		}
	}
	require.Contains(t, string(data), "notes.txt")
	require.Contains(t, string(data), "X-Trace: 42")

	// status: the timeline as a table.
	out := c.ok("status", first)
	require.Contains(t, out, "SENT")
	require.Contains(t, out, "ATTEMPT_STARTED")
	require.Contains(t, out, "jane@example.com")

	// send --file: the API's JSON request.
	reqFile := write("req.json", `{"message":{"from":{"address":"sender@example.com"},"to":[{"address":"file@example.com"}],"subject":"from a file","text_body":"hi","tags":{"campaign":"file"}}}`)
	fromFile := unmarshalJSON[*v1.SendEmailResponse](t, c.ok("send", "--file", reqFile, "-o", "json"))
	require.NotEmpty(t, fromFile.GetMessageId())

	// send --eml.
	eml := write("msg.eml", "From: Sender <sender@example.com>\r\nTo: eml@example.com\r\nSubject: from an eml\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nbody of the eml\r\n"+
		"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"blob.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b--\r\n")
	out = c.ok("send", "--eml", eml, "--tag", "campaign=eml")
	require.Contains(t, out, "QUEUED")
	emlID := strings.Fields(strings.Split(out, "\n")[1])[0]
	got := s.waitStatus("a", emlID, v1.MessageStatus_SENT)
	require.Equal(t, "from an eml", got.GetMessage().GetSubject())
	for _, m := range s.sink.Messages() {
		if containsID(m.Data, emlID) {
			require.Contains(t, string(m.Data), "blob.bin")
			require.Contains(t, string(m.Data), "body of the eml")
		}
	}

	// list with filters.
	list := unmarshalJSON[*v1.ListMessagesResponse](t, c.ok("list", "--tag", "campaign=cli", "-o", "json"))
	require.Len(t, list.GetMessages(), 1)
	require.Equal(t, first, list.GetMessages()[0].GetMessageId())
	list = unmarshalJSON[*v1.ListMessagesResponse](t, c.ok("list", "--recipient", "file@example.com", "-o", "json"))
	require.Len(t, list.GetMessages(), 1)
	require.Equal(t, fromFile.GetMessageId(), list.GetMessages()[0].GetMessageId())
	list = unmarshalJSON[*v1.ListMessagesResponse](t, c.ok("list", "--subject", "FROM AN E", "-o", "json"))
	require.Len(t, list.GetMessages(), 1, "--subject")
	require.Equal(t, emlID, list.GetMessages()[0].GetMessageId())
	out = c.ok("list", "--limit", "2")
	require.Len(t, strings.Split(strings.TrimSpace(out), "\n"), 3, "header and two rows: %s", out)

	// schedule, then cancel.
	sched := unmarshalJSON[*v1.SendEmailResponse](t, c.ok("send", "--from", "sender@example.com", "--to", "later@example.com", "--text", "later", "--send-at", "1h", "-o", "json"))
	require.Equal(t, v1.MessageStatus_SCHEDULED, sched.GetStatus())
	require.Contains(t, c.ok("cancel", sched.GetMessageId()), "CANCELED")
	stats := unmarshalJSON[*v1.GetStatsResponse](t, c.ok("stats", "-o", "json"))
	require.EqualValues(t, 1, stats.GetTotals()["CANCELED"])
	require.Contains(t, c.ok("stats"), "CANCELED=1")

	// keys: the secret is shown by create only; a revoked key is exit 3.
	created := unmarshalJSON[*v1.CreateApiKeyResponse](t, c.ok("keys", "create", "--name", "ci", "--scope", "send,read", "-o", "json"))
	secret := created.GetSecret()
	require.True(t, strings.HasPrefix(secret, "es_"))
	out = c.ok("keys", "list")
	require.Contains(t, out, created.GetKey().GetPrefix()+"…")
	require.NotContains(t, out, secret)
	require.Equal(t, 0, c.runEnv([]string{"EMAILSENDER_API_KEY=" + secret}, "list").code)
	c.ok("keys", "revoke", created.GetKey().GetId())
	require.Equal(t, 3, c.runEnv([]string{"EMAILSENDER_API_KEY=" + secret}, "list").code)
	// The send-scoped key may not manage keys: permission denied is exit 3 too.
	sendOnly := unmarshalJSON[*v1.CreateApiKeyResponse](t, c.ok("keys", "create", "--name", "sender", "--scope", "send", "-o", "json"))
	require.Equal(t, 3, c.runEnv([]string{"EMAILSENDER_API_KEY=" + sendOnly.GetSecret()}, "keys", "list").code)

	// suppressions, senders, providers.
	c.ok("suppressions", "add", "gone@example.org", "--reason", "bounce")
	require.Contains(t, c.ok("suppressions", "list"), "gone@example.org")
	require.Contains(t, c.ok("suppressions", "list", "--search", "GONE@"), "gone@example.org")
	require.NotContains(t, c.ok("suppressions", "list", "--search", "nobody-matches"), "gone@example.org")
	c.ok("suppressions", "remove", "gone@example.org")
	require.NotContains(t, c.ok("suppressions", "list"), "gone@example.org")
	require.Contains(t, c.ok("senders", "list"), "example.com")
	providers := unmarshalJSON[*v1.ListProvidersResponse](t, c.ok("providers", "list", "-o", "json"))
	require.Len(t, providers.GetProviders(), 1)
	require.Equal(t, "smtp", providers.GetProviders()[0].GetKind())
	require.Contains(t, c.ok("providers", "list"), "smtp")
	require.Equal(t, 0, c.run("providers", "verify", providers.GetProviders()[0].GetId()).code)

	// bounce-domain: set prints the TXT record to publish; verify is refused
	// (exit 2, saying what is missing) until the record is there; remove.
	out = c.ok("bounce-domain", "set", "Bounces.CLI.example")
	require.Contains(t, out, "bounces.cli.example")
	require.Contains(t, out, "pending")
	domain := unmarshalJSON[*v1.BounceDomain](t, c.ok("bounce-domain", "get", "-o", "json"))
	require.Equal(t, "_emailsender.bounces.cli.example", domain.GetVerificationRecordName())
	require.Contains(t, out, domain.GetVerificationRecordValue())
	notYet := c.run("bounce-domain", "verify")
	require.Equal(t, 2, notYet.code, "%s%s", notYet.stdout, notYet.stderr)
	require.Contains(t, notYet.stderr, "no TXT record at _emailsender.bounces.cli.example")
	s.dns.SetTXT(domain.GetVerificationRecordName(), domain.GetVerificationRecordValue())
	require.Contains(t, c.ok("bounce-domain", "verify"), "verified")
	require.Equal(t, "verified", unmarshalJSON[*v1.BounceDomain](t, c.ok("bounce-domain", "get", "-o", "json")).GetStatus())
	c.ok("bounce-domain", "remove")
	require.Equal(t, 4, c.run("bounce-domain", "get").code)

	// Exit codes.
	for _, tc := range []struct {
		name  string
		env   []string
		args  []string
		code  int
		error string
	}{
		{"no command", nil, nil, 1, "no command"},
		{"unknown command", nil, []string{"fly"}, 1, "unknown command"},
		{"bad flag", nil, []string{"list", "--nope"}, 1, "nope"},
		{"missing argument", nil, []string{"status"}, 1, "usage: emailsender status ID"},
		{"no API key", []string{"EMAILSENDER_API_KEY="}, []string{"list"}, 1, "no API key"},
		{"server refuses", nil, []string{"send", "--from", "someone@unverified.example", "--to", "x@example.com", "--text", "x"}, 2, "unverified.example"},
		{"wrong key", []string{"EMAILSENDER_API_KEY=es_wrongwrongwrongwrongwrongwrongwrongwrong"}, []string{"list"}, 3, "Unauthenticated"},
		{"not found", nil, []string{"status", "0190d1a2-0000-7000-8000-000000000000"}, 4, "NotFound"},
		{"unavailable", []string{"EMAILSENDER_ADDR=" + freeAddr(t), "EMAILSENDER_REPORT_ADDR="}, []string{"list", "--timeout", "3s"}, 5, "Unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.runEnv(tc.env, tc.args...)
			require.Equal(t, tc.code, r.code, "stderr: %s", r.stderr)
			require.Contains(t, r.stderr, tc.error)
		})
	}

	// A profile file; the environment goes over it.
	c2 := newCLI(t)
	cfg := filepath.Join(c2.home, ".config", "emailsender", "config.json")
	require.NoError(t, os.MkdirAll(filepath.Dir(cfg), 0o700))
	b, err := json.Marshal(map[string]any{"default_profile": "dev", "profiles": map[string]any{
		"dev":    map[string]any{"addr": s.ingestAddr, "report_addr": s.reportAddr, "api_key": key, "tls": false},
		"broken": map[string]any{"addr": s.ingestAddr, "report_addr": s.reportAddr, "api_key": "es_wrong", "tls": false},
	}})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfg, b, 0o600))
	require.Contains(t, c2.ok("status", first), "SENT")
	require.Equal(t, 3, c2.run("status", first, "--profile", "broken").code)
	require.Equal(t, 0, c2.runEnv([]string{"EMAILSENDER_API_KEY=" + key}, "--profile", "broken", "status", first).code)
	require.Equal(t, 3, c2.runEnv([]string{"EMAILSENDER_API_KEY=es_wrong"}, "status", first).code)

	require.NotContains(t, c.outputs.String(), key, "the API key was printed")
	require.NotContains(t, c2.outputs.String(), key, "the API key was printed")
}

// send --wait exits 6 when the message ends undelivered (the sandbox fails
// reject@…), after printing its report.
func TestCLISendWaitUndelivered(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	c := newCLI(t, "EMAILSENDER_ADDR="+s.ingestAddr, "EMAILSENDER_REPORT_ADDR="+s.reportAddr,
		"EMAILSENDER_API_KEY="+s.accounts["sandbox"].APIKey, "EMAILSENDER_TLS=false")
	r := c.run("send", "--from", "dev@example.com", "--to", "reject@example.com", "--text", "x", "--wait")
	require.Equal(t, 6, r.code, "stderr: %s", r.stderr)
	require.Contains(t, r.stdout, "FAILED")
	require.Contains(t, r.stderr, "ended FAILED")
	require.Equal(t, 0, c.run("send", "--from", "dev@example.com", "--to", "someone@example.com", "--text", "x", "--wait").code)
}

// cliProcess is a running emailsender whose stdout lines the test reads as
// they come.
type cliProcess struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr *bytes.Buffer
	done   chan struct{}
}

func (c *cliEnv) start(extra []string, args ...string) *cliProcess {
	c.t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(append([]string{}, c.env...), extra...)
	out, err := cmd.StdoutPipe()
	require.NoError(c.t, err)
	p := &cliProcess{cmd: cmd, lines: make(chan string, 1000), stderr: &bytes.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = &lockedWriter{w: p.stderr}
	require.NoError(c.t, cmd.Start())
	c.t.Cleanup(func() { _ = cmd.Process.Kill(); <-p.done })
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		_ = cmd.Wait()
	}()
	return p
}

// line is the next stdout line, within 20 s.
func (p *cliProcess) line(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		require.True(t, ok, "emailsender ended; stderr: %s", p.stderr)
		return l
	case <-time.After(20 * time.Second):
		t.Fatalf("no line from emailsender; stderr: %s", p.stderr)
		return ""
	}
}

// exit waits for the process to end and returns its exit code.
func (p *cliProcess) exit(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("emailsender did not end; stderr: %s", p.stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// emailsender watch as a process: events printed as they come (JSON lines,
// and table rows), through a relay that cuts the connection mid-watch (the
// command reconnects and resumes: every SENT event once), the cursor to
// resume from printed on the way out and honoured by --cursor (no
// duplicate), and the exit codes of a forged cursor, a wrong key and a
// report that stays down.
func TestCLIWatch(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	relay := tcprelay.Start(t, "127.0.0.1:0", s.reportAddr)
	key := s.accounts["a"].APIKey
	c := newCLI(t, "EMAILSENDER_ADDR="+s.ingestAddr, "EMAILSENDER_REPORT_ADDR="+relay.Addr,
		"EMAILSENDER_API_KEY="+key, "EMAILSENDER_TLS=false")
	tagged := func(to string) *v1.SendEmailRequest {
		r := simple(to)
		r.Message.Tags = map[string]string{"campaign": "watch"}
		return r
	}

	// --from-start: the message sent after the command started is not missed
	// however fast it goes.
	p := c.start(nil, "watch", "-o", "json", "--from-start", "--tag", "campaign=watch", "--type", "SENT", "--limit", "3")
	ids := []string{s.sendOK("a", tagged("w1@example.com"))}
	first := unmarshalJSON[*v1.WatchEventsResponse](t, p.line(t))
	require.Equal(t, ids[0], first.GetMessageId())
	require.Equal(t, "SENT", first.GetEvent().GetType())
	require.Equal(t, map[string]string{"campaign": "watch"}, first.GetTags())
	relay.Cut() // the command's connection fails
	ids = append(ids, s.sendOK("a", tagged("w2@example.com")), s.sendOK("a", tagged("w3@example.com")))
	s.sendOK("a", simple("untagged@example.com"))
	var got []string
	for range 2 {
		got = append(got, unmarshalJSON[*v1.WatchEventsResponse](t, p.line(t)).GetMessageId())
	}
	require.Equal(t, 0, p.exit(t), "stderr: %s", p.stderr)
	require.ElementsMatch(t, ids[1:], got, "every SENT event once")
	require.Contains(t, p.stderr.String(), "reconnecting in")
	_, cursor, ok := strings.Cut(p.stderr.String(), "resume with --cursor ")
	require.True(t, ok, "stderr: %s", p.stderr)
	cursor = strings.TrimSpace(cursor)

	// --cursor resumes after it: the next message's SENT, not the earlier ones
	// again; a table row this time.
	p = c.start(nil, "watch", "--cursor", cursor, "--tag", "campaign=watch", "--type", "SENT", "--limit", "1")
	require.Contains(t, p.line(t), "MESSAGE", "the header")
	next := s.sendOK("a", tagged("w4@example.com"))
	row := p.line(t)
	require.Contains(t, row, next)
	require.Contains(t, row, "SENT")
	require.Equal(t, 0, p.exit(t), "stderr: %s", p.stderr)

	for _, tc := range []struct {
		name string
		env  []string
		args []string
		code int
		err  string
	}{
		{"forged cursor", nil, []string{"watch", "--cursor", "not-a-cursor"}, 2, "InvalidArgument"},
		{"wrong key", []string{"EMAILSENDER_API_KEY=es_wrongwrongwrongwrongwrongwrongwrongwrong"}, []string{"watch"}, 3, "Unauthenticated"},
		{"report down", []string{"EMAILSENDER_REPORT_ADDR=" + freeAddr(t)}, []string{"watch", "--give-up", "1s"}, 5, "Unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.runEnv(tc.env, tc.args...)
			require.Equal(t, tc.code, r.code, "stderr: %s", r.stderr)
			require.Contains(t, r.stderr, tc.err)
		})
	}
	require.NotContains(t, c.outputs.String(), key, "the API key was printed")
}

// emailsender webhooks as a process: create (the secret printed once), list,
// test (exit 6 when the receiver fails), update (disable, enable, filters),
// rotate-secret (a new secret, printed once), deliveries, replay, delete.
// Secrets appear in no other output.
func TestCLIWebhooks(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	key := s.accounts["a"].APIKey
	c := newCLI(t, "EMAILSENDER_ADDR="+s.ingestAddr, "EMAILSENDER_REPORT_ADDR="+s.reportAddr,
		"EMAILSENDER_API_KEY="+key, "EMAILSENDER_TLS=false")
	rcv := newReceiver(t, "ok")

	r := c.run("webhooks", "create", "--url", rcv.srv.URL+"/hook", "--description", "cli hook", "--event-type", "sent", "--tag", "campaign=hooks")
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	require.Contains(t, r.stderr, "shown only this once")
	_, secret, ok := strings.Cut(r.stdout, "secret: ")
	require.True(t, ok, r.stdout)
	secret = strings.TrimSpace(secret)
	require.True(t, strings.HasPrefix(secret, "whsec_"), secret)
	list := unmarshalJSON[*v1.ListWebhooksResponse](t, c.ok("webhooks", "list", "-o", "json"))
	require.Len(t, list.GetWebhooks(), 1)
	hook := list.GetWebhooks()[0]
	require.Equal(t, []string{"sent"}, hook.GetEventTypes())
	require.Contains(t, c.ok("webhooks", "list"), "cli hook")

	// test: the receiver answers 204; then it fails and the command exits 6.
	out := c.ok("webhooks", "test", hook.GetId())
	require.Contains(t, out, "webhook.test")
	require.Contains(t, out, "204")
	rcv.set("fail")
	r = c.run("webhooks", "test", hook.GetId())
	require.Equal(t, 6, r.code, "stderr: %s", r.stderr)
	require.Contains(t, r.stdout, "500")
	rcv.set("ok")

	// update: disable, then enable with new filters.
	require.Contains(t, c.ok("webhooks", "update", hook.GetId(), "--disable"), "disabled")
	upd := unmarshalJSON[*v1.UpdateWebhookResponse](t, c.ok("webhooks", "update", hook.GetId(), "--enable", "--clear-filter", "--description", "all events", "-o", "json"))
	require.True(t, upd.GetWebhook().GetEnabled())
	require.Empty(t, upd.GetWebhook().GetEventTypes())
	require.Equal(t, "all events", upd.GetWebhook().GetDescription())

	// A message's events reach the receiver; deliveries lists them with the tests.
	s.sendOK("a", simple("hooked@example.com"))
	rcv.waitCount(t, 4) // two tests, then accepted and sent at least
	deliveries := unmarshalJSON[*v1.ListWebhookDeliveriesResponse](t, c.ok("webhooks", "deliveries", hook.GetId(), "-o", "json"))
	var accepted string
	types := map[string]bool{}
	for _, d := range deliveries.GetDeliveries() {
		types[d.GetEventType()] = true
		if d.GetEventType() == "message.accepted" && d.GetState() == "succeeded" {
			accepted = d.GetId()
		}
	}
	require.True(t, types["webhook.test"], "%v", types)
	require.NotEmpty(t, accepted, "a delivered message.accepted: %v", deliveries)
	require.Contains(t, c.ok("webhooks", "deliveries", hook.GetId(), "--state", "succeeded"), "succeeded")

	// replay one delivery (a message's; test posts are not replayed): the
	// receiver gets it again, with the same webhook-id.
	before := len(rcv.requests())
	require.Contains(t, c.ok("webhooks", "replay", hook.GetId(), "--delivery", accepted), "replayed 1 deliveries")
	require.Eventually(t, func() bool {
		return slices.ContainsFunc(rcv.requests()[before:], func(x received) bool { return x.ID == accepted })
	}, 20*time.Second, 20*time.Millisecond, "replayed with its webhook-id")

	// rotate-secret: a new secret, printed once.
	rot := unmarshalJSON[*v1.RotateWebhookSecretResponse](t, c.ok("webhooks", "rotate-secret", hook.GetId(), "--previous-ttl", "1h", "-o", "json"))
	require.True(t, strings.HasPrefix(rot.GetSecret(), "whsec_"))
	require.NotEqual(t, secret, rot.GetSecret())
	require.NotNil(t, rot.GetWebhook().GetPreviousSecretExpiresAt())

	c.ok("webhooks", "delete", hook.GetId())
	require.NotContains(t, c.ok("webhooks", "list"), hook.GetId())
	r = c.run("webhooks", "delete", hook.GetId())
	require.Equal(t, 4, r.code, "stderr: %s", r.stderr)

	all := c.outputs.String()
	require.Equal(t, 1, strings.Count(all, secret), "the first secret is printed by create only")
	require.Equal(t, 1, strings.Count(all, rot.GetSecret()), "the new secret is printed by rotate-secret only")
	require.NotContains(t, all, key, "the API key was printed")
}
