package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/client"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// newClient is a pkg/client Client of the stack as account name.
func (s *stack) newClient(name string, opts ...client.Option) *client.Client {
	s.t.Helper()
	opts = append([]client.Option{
		client.WithAPIKey(s.accounts[name].APIKey), client.WithInsecure(),
		client.WithReportTarget(s.reportAddr), client.WithPollInterval(20*time.Millisecond, 200*time.Millisecond),
	}, opts...)
	c, err := client.New(context.Background(), s.ingestAddr, opts...)
	require.NoError(s.t, err)
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// The client against the real services: SendAndWait returns the SENT report
// with its timeline, Send sets an idempotency key of its own, SendBatch
// accepts and rejects items one by one, CancelScheduled cancels, the report
// calls page, a token source authenticates, and errors keep their gRPC code.
func TestClientAgainstTheServices(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{})
	c := s.newClient("a")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	req := simple("jane@example.com")
	got, sent, err := c.SendAndWait(ctx, req)
	require.NoError(t, err)
	require.Empty(t, req.GetIdempotencyKey(), "the caller's request was changed")
	require.Equal(t, v1.MessageStatus_SENT, got.GetMessage().GetStatus())
	require.Equal(t, sent.GetMessageId(), got.GetMessage().GetMessageId())
	require.Contains(t, eventTypes(got), "SENT")
	var key string
	require.NoError(t, s.db.Pool.QueryRow(ctx, `SELECT key FROM idempotency_keys WHERE message_id = $1`, sent.GetMessageId()).Scan(&key))
	require.True(t, strings.HasPrefix(key, "esc_"), "idempotency key %q", key)

	// A caller's own key is kept: the second send is a replay.
	own := simple("john@example.com")
	own.IdempotencyKey = "order-42"
	first, err := c.Send(ctx, own)
	require.NoError(t, err)
	again, err := c.Send(ctx, own)
	require.NoError(t, err)
	require.True(t, again.GetIdempotentReplay())
	require.Equal(t, first.GetMessageId(), again.GetMessageId())

	bad := simple("not an address")
	batch, err := c.SendBatch(ctx, &v1.SendBatchRequest{Messages: []*v1.SendEmailRequest{simple("a1@example.com"), bad}})
	require.NoError(t, err)
	require.Len(t, batch.GetResults(), 2)
	require.NotEmpty(t, batch.GetResults()[0].GetAccepted().GetMessageId())
	require.EqualValues(t, codes.InvalidArgument, batch.GetResults()[1].GetErrorCode())

	later := simple("later@example.com")
	later.SendAt = timestamppb.New(time.Now().Add(time.Hour))
	sch, err := c.Send(ctx, later)
	require.NoError(t, err)
	require.Equal(t, v1.MessageStatus_SCHEDULED, sch.GetStatus())
	canceled, err := c.CancelScheduled(ctx, sch.GetMessageId())
	require.NoError(t, err)
	require.Equal(t, v1.MessageStatus_CANCELED, canceled.GetStatus())

	// Four messages were accepted (the replay and the rejected item are not
	// messages); pages of one come back newest first.
	var ids []string
	for m, err := range c.AllMessages(ctx, &v1.ListMessagesRequest{PageSize: 1}) {
		require.NoError(t, err)
		ids = append(ids, m.GetMessageId())
	}
	require.Len(t, ids, 4)
	require.Equal(t, sch.GetMessageId(), ids[0])
	stats, err := c.GetStats(ctx, &v1.GetStatsRequest{})
	require.NoError(t, err)
	require.EqualValues(t, 1, stats.GetTotals()["CANCELED"])

	_, err = c.GetMessage(ctx, &v1.GetMessageRequest{MessageId: "0190d1a2-0000-7000-8000-000000000000"})
	require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
	var cerr *client.Error
	require.ErrorAs(t, err, &cerr)
	require.Equal(t, "GetMessage", cerr.Method)

	// A token source; a wrong token is UNAUTHENTICATED, not retried, and the
	// error does not carry the token.
	tokens := client.TokenSourceFunc(func(context.Context) (string, error) { return s.accounts["a"].APIKey, nil })
	ct := s.newClient("a", client.WithTokenSource(tokens))
	keys, err := ct.ListAPIKeys(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, keys.GetKeys())
	wrong := s.newClient("a", client.WithAPIKey("es_wrongwrongwrongwrongwrongwrongwrongwrong"))
	_, err = wrong.Send(ctx, simple("x@example.com"))
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	require.ErrorAs(t, err, &cerr)
	require.Equal(t, 1, cerr.Attempts)
	require.NotContains(t, err.Error(), "es_wrong")
}

// Retries give up with the last error when nothing answers: UNAVAILABLE after
// MaxAttempts attempts, within the context's deadline.
func TestClientRetriesUnavailableThenGivesUp(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	c, err := client.New(context.Background(), addr, client.WithAPIKey("es_x"), client.WithInsecure(),
		client.WithRetry(client.RetryPolicy{MaxAttempts: 4, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond}))
	require.NoError(t, err)
	defer c.Close()
	start := time.Now()
	_, err = c.Send(context.Background(), simple("jane@example.com"))
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	var cerr *client.Error
	require.ErrorAs(t, err, &cerr)
	require.Equal(t, 4, cerr.Attempts)
	require.Less(t, time.Since(start), 10*time.Second)

	// Calls that are not safe to repeat are tried once.
	_, err = c.CreateAPIKey(context.Background(), &v1.CreateApiKeyRequest{Name: "x"})
	require.ErrorAs(t, err, &cerr)
	require.Equal(t, 1, cerr.Attempts)
}

// The done-when item: sends through the client while ingest (its own process)
// is killed with SIGKILL and restarted are each accepted exactly once.
//
// The first group's calls are caught between their commit and their answer:
// the ingest process reaches NATS through a proxy that is frozen (the TCP
// connection stays up, nothing passes), so each call has stored its message
// and waits for the JetStream acknowledgement (INGEST_PUBLISH_TIMEOUT) when
// ingest is killed. Their answer is lost (UNAVAILABLE); the client retries
// with the same idempotency key against the restarted ingest and gets the
// first answer back (a replay), not a second message. The second group is sent
// while ingest is down and is accepted once it is back. Then every message is
// delivered once.
func TestClientIdempotentRetryAcrossIngestSIGKILL(t *testing.T) {
	t.Parallel()
	bin, err := ingestBinary()
	require.NoError(t, err)
	s := newStack(t, stackOptions{})
	addr := freeAddr(t)
	natsLink := startFreezableProxy(t, strings.TrimPrefix(s.nats.URL(), "nats://"))
	start := func(natsURL string) *exec.Cmd {
		cmd := exec.Command(bin)
		cmd.Env = s.ingestEnv(addr, natsURL)
		cmd.Stderr = testWriter{t}
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	first := start("nats://" + natsLink.addr())

	c, err := client.New(context.Background(), addr, client.WithAPIKey(s.accounts["a"].APIKey), client.WithInsecure(),
		client.WithReportTarget(s.reportAddr), client.WithDefaultTimeout(2*time.Minute),
		client.WithRetry(client.RetryPolicy{MaxAttempts: 100, InitialBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, Multiplier: 2, PerAttemptTimeout: time.Minute}))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// ingest is up (a send goes through) before the faults start.
	warm, err := c.Send(ctx, simple("warm@example.com"))
	require.NoError(t, err)

	const inFlight, whileDown = 6, 4
	type result struct {
		resp *v1.SendEmailResponse
		err  error
	}
	results := make([]result, inFlight+whileDown)
	var wg sync.WaitGroup
	var answered atomic.Int32
	sendAt := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Send(ctx, simple(fmt.Sprintf("r%d@example.com", i)))
			results[i] = result{resp, err}
			answered.Add(1)
		}()
	}

	accountID := s.accounts["a"].AccountID
	countMessages := func() int {
		var n int
		require.NoError(t, s.db.Pool.QueryRow(ctx, `SELECT count(*) FROM messages WHERE account_id = $1`, accountID).Scan(&n))
		return n
	}
	natsLink.freeze()
	for i := range inFlight {
		sendAt(i)
	}
	// Every call of the first group has committed its message and waits for
	// JetStream: none has an answer yet.
	require.Eventually(t, func() bool { return countMessages() == 1+inFlight }, 30*time.Second, 20*time.Millisecond)
	require.Zero(t, answered.Load(), "a send was answered before the kill")
	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	_ = first.Wait()

	for i := inFlight; i < inFlight+whileDown; i++ {
		sendAt(i)
	}
	time.Sleep(500 * time.Millisecond) // the retries meet a closed port for a while
	start(s.nats.URL())
	wg.Wait()

	ids := map[string]bool{warm.GetMessageId(): true}
	for i, r := range results {
		require.NoError(t, r.err, "send %d", i)
		require.Equal(t, i < inFlight, r.resp.GetIdempotentReplay(), "send %d: replay", i)
		require.False(t, ids[r.resp.GetMessageId()], "send %d: message id %s twice", i, r.resp.GetMessageId())
		ids[r.resp.GetMessageId()] = true
	}
	// Exactly one message and one idempotency key per logical send.
	require.Equal(t, 1+inFlight+whileDown, countMessages())
	var keys int
	require.NoError(t, s.db.Pool.QueryRow(ctx, `SELECT count(DISTINCT key) FROM idempotency_keys WHERE account_id = $1`, accountID).Scan(&keys))
	require.Equal(t, 1+inFlight+whileDown, keys)
	for id := range ids {
		s.waitStatus("a", id, v1.MessageStatus_SENT)
	}
	for id := range ids {
		require.Len(t, arrivedCopies(s, id), 1, "message %s", id)
	}
	require.Equal(t, len(ids), s.sink.Count())
}

// ingestEnv is the environment of an ingest process of this stack serving
// gRPC on addr, connecting to NATS at natsURL. A call waits up to 30 s for
// JetStream to acknowledge.
func (s *stack) ingestEnv(addr, natsURL string) []string {
	return append(os.Environ(),
		"DATABASE_URL="+s.db.URL,
		"NATS_URL="+natsURL,
		"MASTER_KEYS="+s.keys,
		"INGEST_GRPC_ADDR="+addr,
		"INGEST_HTTP_ADDR=off",
		"INGEST_METRICS_ADDR=off",
		"INGEST_PUBLISH_TIMEOUT=30s",
		"LOG_LEVEL=error",
	)
}

// ingestBinary builds the ingest command once per test binary.
var ingestBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "emailsender-ingest")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "ingest")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/namirasoft/email-sender/services/ingest/cmd/ingest").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build ingest: %v: %s", err, out)
	}
	return bin, nil
})

// freezableProxy forwards TCP connections to target; while frozen it keeps
// them open and passes nothing (a network partition that TCP does not see).
type freezableProxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	thawed chan struct{} // closed while not frozen
}

func startFreezableProxy(t *testing.T, target string) *freezableProxy {
	t.Helper()
	p := &freezableProxy{l: listen(t), target: target, thawed: make(chan struct{})}
	close(p.thawed)
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		_ = p.l.Close()
		p.thaw()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	go func() {
		for {
			in, err := p.l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				_ = in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			go p.pipe(in, out)
			go p.pipe(out, in)
		}
	}()
	return p
}

func (p *freezableProxy) addr() string { return p.l.Addr().String() }

func (p *freezableProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.thawed = make(chan struct{})
}

func (p *freezableProxy) thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.thawed:
	default:
		close(p.thawed)
	}
}

func (p *freezableProxy) pipe(src, dst net.Conn) {
	defer func() { _ = src.Close(); _ = dst.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			thawed := p.thawed
			p.mu.Unlock()
			<-thawed
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
