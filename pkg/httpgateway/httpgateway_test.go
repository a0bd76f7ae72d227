package httpgateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/httpgateway"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// sendServer records what reached gRPC and answers per the subject.
type sendServer struct {
	v1.UnimplementedSendServiceServer
	mu      sync.Mutex
	calls   []call
	release chan struct{} // "slow" subjects wait for it
}

type call struct {
	req *v1.SendEmailRequest
	md  metadata.MD
}

func (s *sendServer) SendEmail(ctx context.Context, req *v1.SendEmailRequest) (*v1.SendEmailResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	s.calls = append(s.calls, call{req: req, md: md})
	s.mu.Unlock()
	switch req.GetMessage().GetSubject() {
	case "bad":
		st, _ := status.New(codes.InvalidArgument, "message.to[0].address: not an address").WithDetails(&errdetails.BadRequest{
			FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "message.to[0].address", Description: "not an address"}},
		})
		return nil, st.Err()
	case "big":
		st, _ := status.New(codes.ResourceExhausted, "message: too big").WithDetails(&errdetails.BadRequest{
			FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "message", Description: "too big"}},
		})
		return nil, st.Err()
	case "limited":
		return nil, status.Error(codes.ResourceExhausted, "rate limit")
	case "slow":
		<-s.release
	}
	return &v1.SendEmailResponse{MessageId: "m1", Status: v1.MessageStatus_QUEUED}, nil
}

func (s *sendServer) last(t *testing.T) call {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	require.NotEmpty(t, s.calls)
	return s.calls[len(s.calls)-1]
}

type bundle struct {
	srv  *sendServer
	base string
	stop func() // cancels the gateway's context and waits for Serve
	done chan error
}

// setup serves a gateway with cfg; the limits and the grace it leaves zero
// are the tests' (a service passes its own through pkg/apiserver).
func setup(t *testing.T, cfg httpgateway.Config) *bundle {
	t.Helper()
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.MaxResponseBytes == 0 {
		cfg.MaxResponseBytes = 4 << 20
	}
	if cfg.ShutdownGrace == 0 {
		cfg.ShutdownGrace = 5 * time.Second
	}
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpc.NewServer()
	srv := &sendServer{release: make(chan struct{})}
	v1.RegisterSendServiceServer(gs, srv)
	go func() { _ = gs.Serve(grpcLis) }()
	t.Cleanup(gs.Stop)

	gw, err := httpgateway.New(cfg, httpgateway.LoopbackTarget(grpcLis.Addr()), nil, v1.RegisterSendServiceHandler)
	require.NoError(t, err)
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	b := &bundle{srv: srv, base: "http://" + httpLis.Addr().String(), done: make(chan error, 1)}
	go func() { b.done <- gw.Serve(ctx, httpLis) }()
	var once sync.Once
	b.stop = func() { once.Do(cancel) }
	t.Cleanup(func() { b.stop(); <-b.done })
	return b
}

func (b *bundle) post(t *testing.T, body string, header map[string]string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.base+"/v1/messages:send", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(raw, &out), "body: %s", raw)
	return resp.StatusCode, out
}

func message(subject string) string {
	return `{"message":{"from":{"address":"a@example.com"},"to":[{"address":"b@example.com"}],"subject":"` + subject +
		`","textBody":"hi","attachments":[{"filename":"a.txt","content":"aGVsbG8="}]}}`
}

func TestForwardsAuthorizationClientAndBody(t *testing.T) {
	t.Parallel()
	b := setup(t, httpgateway.Config{})
	code, out := b.post(t, message("ok"), map[string]string{
		"Authorization":            "Bearer es_secret",
		"User-Agent":               "thirdparty/1.0",
		"X-Forwarded-For":          "203.0.113.9",
		"Grpc-Metadata-X-Internal": "spoofed",
		"Cookie":                   "a=b",
	})
	require.Equal(t, http.StatusOK, code, out)
	require.Equal(t, "m1", out["messageId"])
	require.Equal(t, "QUEUED", out["status"])

	c := b.srv.last(t)
	require.Equal(t, []string{"Bearer es_secret"}, c.md.Get("authorization"), "the Authorization header is the authorization metadata, once")
	require.Equal(t, "b@example.com", c.req.GetMessage().GetTo()[0].GetAddress())
	require.Equal(t, []byte("hello"), c.req.GetMessage().GetAttachments()[0].GetContent(), "base64 in JSON, bytes in gRPC")
	require.Equal(t, []string{"thirdparty/1.0"}, c.md.Get(httpgateway.MDUserAgent))
	require.Equal(t, []string{"203.0.113.9, 127.0.0.1"}, c.md.Get(httpgateway.MDForwardedFor),
		"the HTTP connection's peer is appended to what the client claimed")
	require.Empty(t, c.md.Get("x-internal"), "Grpc-Metadata-* headers are not forwarded")
	require.Empty(t, c.md.Get("grpcgateway-cookie"))
	require.Empty(t, c.md.Get("cookie"))
}

func TestErrorsAreStatusJSON(t *testing.T) {
	t.Parallel()
	b := setup(t, httpgateway.Config{MaxBodyBytes: 4 << 10})
	tests := []struct {
		name     string
		body     string
		wantHTTP int
		wantCode codes.Code
	}{
		{"field violation", message("bad"), http.StatusBadRequest, codes.InvalidArgument},
		{"over a message limit", message("big"), http.StatusRequestEntityTooLarge, codes.ResourceExhausted},
		{"rate limited", message("limited"), http.StatusTooManyRequests, codes.ResourceExhausted},
		{"unknown field", `{"message":{"textBdy":"x"}}`, http.StatusBadRequest, codes.InvalidArgument},
		{"not json", `{`, http.StatusBadRequest, codes.InvalidArgument},
		{"body over the limit", `{"message":{"textBody":"` + strings.Repeat("x", 5<<10) + `"}}`, http.StatusRequestEntityTooLarge, codes.ResourceExhausted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := b.post(t, tt.body, nil)
			require.Equal(t, tt.wantHTTP, code, out)
			require.EqualValues(t, tt.wantCode, out["code"], out)
			require.NotEmpty(t, out["message"])
			if tt.name == "field violation" {
				details := out["details"].([]any)
				require.Len(t, details, 1)
				d := details[0].(map[string]any)
				require.Equal(t, "type.googleapis.com/google.rpc.BadRequest", d["@type"])
				require.Equal(t, "message.to[0].address", d["fieldViolations"].([]any)[0].(map[string]any)["field"])
			}
		})
	}
}

func TestChunkedBodyOverTheLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, httpgateway.Config{MaxBodyBytes: 1 << 10})
	body := io.MultiReader(strings.NewReader(`{"message":{"textBody":"`), strings.NewReader(strings.Repeat("x", 4<<10)), strings.NewReader(`"}}`))
	req, err := http.NewRequest(http.MethodPost, b.base+"/v1/messages:send", body) // no length: chunked
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
}

func TestShutdownFinishesInFlightRequests(t *testing.T) {
	t.Parallel()
	b := setup(t, httpgateway.Config{ShutdownGrace: 10 * time.Second})
	type result struct {
		code int
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.Post(b.base+"/v1/messages:send", "application/json", bytes.NewReader([]byte(message("slow"))))
		if err != nil {
			res <- result{err: err}
			return
		}
		_ = resp.Body.Close()
		res <- result{code: resp.StatusCode}
	}()
	require.Eventually(t, func() bool {
		b.srv.mu.Lock()
		defer b.srv.mu.Unlock()
		return len(b.srv.calls) == 1
	}, 5*time.Second, 5*time.Millisecond)

	b.stop()
	// New connections are refused while the in-flight request still runs.
	require.Eventually(t, func() bool {
		_, err := net.DialTimeout("tcp", strings.TrimPrefix(b.base, "http://"), 100*time.Millisecond)
		return err != nil
	}, 5*time.Second, 10*time.Millisecond)
	select {
	case err := <-b.done:
		t.Fatalf("Serve returned before the in-flight request finished: %v", err)
	default:
	}
	close(b.srv.release)
	r := <-res
	require.NoError(t, r.err)
	require.Equal(t, http.StatusOK, r.code)
	err := <-b.done
	require.NoError(t, err)
	b.done <- err // for the cleanup
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	b := setup(t, httpgateway.Config{})
	resp, err := http.Get(b.base + "/healthz")
	require.NoError(t, err)
	defer resp.Body.Close()
	// The test's gRPC server has no health service: the gateway says so.
	require.Equal(t, http.StatusNotImplemented, resp.StatusCode)
}

func TestNewRefusesUnsetLimits(t *testing.T) {
	t.Parallel()
	ok := httpgateway.Config{MaxBodyBytes: 1 << 20, MaxResponseBytes: 1 << 20, ShutdownGrace: time.Second}
	for _, tc := range []struct {
		field string
		edit  func(*httpgateway.Config)
	}{
		{"MaxBodyBytes", func(c *httpgateway.Config) { c.MaxBodyBytes = 0 }},
		{"MaxResponseBytes", func(c *httpgateway.Config) { c.MaxResponseBytes = 0 }},
		{"ShutdownGrace", func(c *httpgateway.Config) { c.ShutdownGrace = -time.Second }},
	} {
		cfg := ok
		tc.edit(&cfg)
		_, err := httpgateway.New(cfg, "passthrough:///unused", nil, v1.RegisterSendServiceHandler)
		require.ErrorContains(t, err, tc.field)
	}
	gw, err := httpgateway.New(ok, "passthrough:///unused", nil, v1.RegisterSendServiceHandler)
	require.NoError(t, err)
	require.NotNil(t, gw)
}
