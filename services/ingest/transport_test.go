package ingest_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/apigate"
	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/testkit/testca"
	"github.com/namirasoft/email-sender/pkg/usage"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest"
)

// served is an ingest instance with gRPC and HTTP on 127.0.0.1.
type served struct {
	grpcAddr, httpAddr string
}

// serve runs ingest over the bundle's database and JetStream with cfg, gRPC
// and HTTP on 127.0.0.1.
func (b *gateBundle) serve(t *testing.T, cfg ingest.Config) served {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cfg.ShutdownGrace, cfg.Send.LookupCacheTTL = 5*time.Second, -1
	svc, err := ingest.New(cfg, ingest.Deps{
		Pool: b.db.Pool, JetStream: b.js, Listener: lis, HTTPListener: httpLis,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Auth:   auth.NewKeyStore(b.db.Pool, 0),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(15 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return served{grpcAddr: lis.Addr().String(), httpAddr: httpLis.Addr().String()}
}

func health(ctx context.Context, t *testing.T, addr string, creds credentials.TransportCredentials) error {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	require.NoError(t, err)
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// With a certificate, gRPC and HTTP serve TLS only; with a client CA as well,
// only clients with a certificate it issued get through.
func TestTLS(t *testing.T) {
	t.Parallel()
	b := setupGate(t)
	ca := testca.New(t)
	clientCert, clientKey := ca.Client(t, "notification-sender")
	cert, err := tls.LoadX509KeyPair(clientCert, clientKey)
	require.NoError(t, err)
	otherCA := testca.New(t)
	strangerCert, strangerKey := otherCA.Client(t, "stranger")
	stranger, err := tls.LoadX509KeyPair(strangerCert, strangerKey)
	require.NoError(t, err)

	tlsOnly := b.serve(t, ingest.Config{TLSCertFile: ca.CertFile, TLSKeyFile: ca.KeyFile})
	mutual := b.serve(t, ingest.Config{TLSCertFile: ca.CertFile, TLSKeyFile: ca.KeyFile, TLSClientCAFile: ca.CAFile})

	anon := &tls.Config{RootCAs: ca.Pool}
	withCert := &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{cert}}
	withStranger := &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{stranger}}

	ctx := t.Context()
	require.Error(t, health(ctx, t, tlsOnly.grpcAddr, insecure.NewCredentials()), "plaintext gRPC")
	require.NoError(t, health(ctx, t, tlsOnly.grpcAddr, credentials.NewTLS(anon)))
	require.Error(t, health(ctx, t, mutual.grpcAddr, credentials.NewTLS(anon)), "no client certificate")
	require.Error(t, health(ctx, t, mutual.grpcAddr, credentials.NewTLS(withStranger)), "certificate of another CA")
	require.NoError(t, health(ctx, t, mutual.grpcAddr, credentials.NewTLS(withCert)))

	// A call through TLS reaches the API (and the gateway's in-process calls work).
	cc, err := grpc.NewClient(mutual.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(withCert)))
	require.NoError(t, err)
	defer cc.Close()
	_, err = emailsenderv1.NewSendServiceClient(cc).SendEmail(b.ctxOf(t), sendReq())
	require.NoError(t, err)

	get := func(addr, scheme string, c *tls.Config) (int, error) {
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: c}}
		defer hc.CloseIdleConnections()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+"/v1/apiKeys", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+b.account.APIKey)
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}
	code, err := get(tlsOnly.httpAddr, "http", nil)
	require.True(t, err != nil || code == http.StatusBadRequest, "plaintext HTTP to the TLS port: %d %v", code, err)
	code, err = get(tlsOnly.httpAddr, "https", anon)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	_, err = get(mutual.httpAddr, "https", anon)
	require.Error(t, err, "HTTPS without a client certificate")
	code, err = get(mutual.httpAddr, "https", withCert)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
}

// x-forwarded-for is believed from TRUSTED_PROXIES and from the service's own
// HTTP gateway only: a direct gRPC call over loopback that forges it is
// recorded with its real address, however loopback the peer is.
func TestForgedForwardedForOverLoopback(t *testing.T) {
	t.Parallel()
	b := setupGate(t)
	srv := b.serve(t, ingest.Config{API: apigate.Config{Usage: usage.Config{FlushInterval: 20 * time.Millisecond}}})
	proxied := b.serve(t, ingest.Config{API: apigate.Config{Usage: usage.Config{FlushInterval: 20 * time.Millisecond, TrustedProxies: []string{"127.0.0.1/32"}}}})
	client := func(addr string) (emailsenderv1.SendServiceClient, emailsenderv1.AccountServiceClient) {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		t.Cleanup(func() { _ = cc.Close() })
		return emailsenderv1.NewSendServiceClient(cc), emailsenderv1.NewAccountServiceClient(cc)
	}
	send, account := client(srv.grpcAddr)

	// Each call under its own key, to find its record.
	forgedKey, forgedID := b.key(t, b.account.AccountID, auth.ScopeSend)
	_, err := send.SendEmail(metadata.AppendToOutgoingContext(as(t, forgedKey), "x-forwarded-for", "203.0.113.9"), sendReq())
	require.NoError(t, err)

	post := func(addr, key, xff string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+"/v1/messages:send",
			strings.NewReader(`{"message":{"from":{"address":"sender@example.com"},"to":[{"address":"to@example.com"}],"subject":"hi","textBody":"hello"}}`))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("X-Forwarded-For", xff)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	}
	// Over HTTP from an untrusted peer: the gateway is believed, the client's header not.
	httpKey, httpID := b.key(t, b.account.AccountID, auth.ScopeSend)
	post(srv.httpAddr, httpKey, "203.0.113.10")
	// Over HTTP from a trusted proxy: its header is believed.
	proxyKey, proxyID := b.key(t, b.account.AccountID, auth.ScopeSend)
	post(proxied.httpAddr, proxyKey, "203.0.113.11")

	ipOf := func(keyID string) string {
		var ip string
		require.Eventually(t, func() bool {
			resp, err := account.ListUsage(b.ctxOf(t), &emailsenderv1.ListUsageRequest{KeyId: keyID})
			require.NoError(t, err)
			if len(resp.GetRecords()) == 0 {
				return false
			}
			ip = resp.GetRecords()[0].GetClientIp()
			return true
		}, 10*time.Second, 20*time.Millisecond, "the record of key %s", keyID)
		return ip
	}
	require.Equal(t, "127.0.0.1", ipOf(forgedID), "direct gRPC call forging x-forwarded-for")
	require.Equal(t, "127.0.0.1", ipOf(httpID), "HTTP call from an untrusted peer")
	require.Equal(t, "203.0.113.11", ipOf(proxyID), "HTTP call through a trusted proxy")
}

// rawCodec sends bytes marshalled beforehand, so that the test does not hold
// a copy of a large request per call.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal([]byte, any) error   { return nil }
func (rawCodec) Name() string                  { return "proto" }

const burstChildEnv = "INGEST_PREAUTH_BURST_CHILD"

// rssBoundMB is what ingest may reach, at its peak, while a burst of
// unauthenticated large requests is refused: with no request read, it stays
// near its idle size (about 30 MB); before the fix it reached 1.5 GB.
const rssBoundMB = 150

// Eight concurrent 60 MiB SendEmail calls over gRPC and eight 60 MiB HTTP
// requests, all with a bad key, are refused (UNAUTHENTICATED, 401) without
// their bodies being read: ingest, a process of its own, keeps its peak RSS
// (VmHWM) under rssBoundMB.
func TestPreAuthBurstKeepsIngestSmall(t *testing.T) {
	t.Parallel()
	b := setupGate(t)
	cmd := exec.Command(os.Args[0]) // TestMain runs burstChild
	cmd.Env = append(os.Environ(), burstChildEnv+"=1", "CHILD_DATABASE_URL="+b.db.URL, "CHILD_NATS_URL="+b.natsURL)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	var grpcAddr, httpAddr string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "ADDRS" {
			grpcAddr, httpAddr = f[1], f[2]
			break
		}
	}
	require.NotEmpty(t, grpcAddr, "the child's addresses")
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	idle := vmHWM(t, cmd.Process.Pid)

	const size, calls = 60 << 20, 8
	payload := make([]byte, size)
	// A SendEmailRequest whose message (field 1) is 60 MiB long.
	raw := append([]byte{0x0a}, protoVarint(uint64(size))...)
	raw = append(raw, payload...)
	cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}), grpc.MaxCallSendMsgSize(size+1<<20)))
	require.NoError(t, err)
	defer cc.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	codesSeen := make([]codes.Code, calls)
	httpSeen := make([]string, calls)
	for i := range calls {
		wg.Go(func() {
			ctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer es_not-a-key")
			var out []byte
			err := cc.Invoke(ctx, emailsenderv1.SendService_SendEmail_FullMethodName, &raw, &out)
			codesSeen[i] = status.Code(err)
		})
		wg.Go(func() {
			// Chunked: no Content-Length to refuse it by.
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+httpAddr+"/v1/messages:send",
				io.MultiReader(strings.NewReader(`{"message":{"textBody":"`), io.LimitReader(zeros{}, size)))
			if err != nil {
				httpSeen[i] = err.Error()
				return
			}
			req.Header.Set("Authorization", "Bearer es_not-a-key")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				httpSeen[i] = err.Error()
				return
			}
			_ = resp.Body.Close()
			httpSeen[i] = strconv.Itoa(resp.StatusCode)
		})
	}
	wg.Wait()
	peak := vmHWM(t, cmd.Process.Pid)
	t.Logf("ingest peak RSS (VmHWM): %d MB idle, %d MB after %d gRPC and %d HTTP unauthenticated 60 MiB requests (bound %d MB)",
		idle, peak, calls, calls, rssBoundMB)
	for i := range calls {
		require.Equal(t, codes.Unauthenticated, codesSeen[i], "gRPC call %d", i)
		require.Equal(t, "401", httpSeen[i], "HTTP call %d", i)
	}
	require.Less(t, peak, int64(rssBoundMB), "peak RSS of ingest, MB")
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

func protoVarint(v uint64) []byte {
	var out []byte
	for v >= 0x80 {
		out = append(out, byte(v)|0x80)
		v >>= 7
	}
	return append(out, byte(v))
}

// vmHWM is the peak resident set size of pid, in MB.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			require.NoError(t, err)
			return kb / 1024
		}
	}
	t.Fatal("no VmHWM in /proc/pid/status")
	return 0
}

// TestMain runs the package's tests, or, in TestPreAuthBurstKeepsIngestSmall's
// child process, ingest alone (burstChild).
func TestMain(m *testing.M) {
	if os.Getenv(burstChildEnv) != "" {
		if err := burstChild(); err != nil {
			fmt.Fprintln(os.Stderr, "burst child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// burstChild is ingest as TestPreAuthBurstKeepsIngestSmall's child process:
// default configuration, the parent's PostgreSQL schema and NATS; it prints
// its addresses and serves until its stdin closes.
func burstChild() error {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("CHILD_DATABASE_URL"))
	if err != nil {
		return err
	}
	defer pool.Close()
	nc, err := nats.Connect(os.Getenv("CHILD_NATS_URL"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	svc, err := ingest.New(ingest.Config{}, ingest.Deps{
		Pool: pool, JetStream: js, Listener: lis, HTTPListener: httpLis,
		Auth: auth.NewKeyStore(pool, 10*time.Second),
	})
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	fmt.Printf("ADDRS %s %s\n", lis.Addr(), httpLis.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	cancel()
	return <-done
}
