package grpcserver_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/namirasoft/email-sender/pkg/grpcserver"
	"github.com/namirasoft/email-sender/pkg/telemetry"
)

// While a process waits for its infrastructure, its address answers: health
// NOT_SERVING, every other call UNAVAILABLE (retriable); then it frees the
// address for the real server.
func TestStandby(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	stop, err := grpcserver.Standby(addr, slog.New(slog.NewTextHandler(io.Discard, nil)), "emailsender.v1.SendService")
	require.NoError(t, err)
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for _, name := range []string{"", "emailsender.v1.SendService"} {
		r, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: name})
		require.NoError(t, err)
		require.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, r.GetStatus(), "service %q", name)
	}
	err = cc.Invoke(ctx, "/emailsender.v1.SendService/SendEmail", &emptypb.Empty{}, &emptypb.Empty{})
	require.Equal(t, codes.Unavailable, status.Code(err), "err %v", err)

	stop()
	l, err = net.Listen("tcp", addr)
	require.NoError(t, err, "the address is free for the real server")
	require.NoError(t, l.Close())
}

// Streaming calls pass the same interceptors as unary ones (a streaming RPC
// cannot bypass authentication), with the context they hand on; a panic is
// INTERNAL without its text.
func TestInterceptorsCoverStreams(t *testing.T) {
	t.Parallel()
	type key struct{}
	var (
		mu   sync.Mutex
		seen []string
	)
	gate := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		mu.Lock()
		seen = append(seen, info.FullMethod)
		mu.Unlock()
		if info.FullMethod == "/grpc.health.v1.Health/Watch" {
			return nil, status.Error(codes.Unauthenticated, "no")
		}
		return handler(context.WithValue(ctx, key{}, "principal"), req)
	}
	s := grpcserver.New(grpcserver.Config{ShutdownGrace: time.Second}, telemetry.Nop(),
		slog.New(slog.NewTextHandler(io.Discard, nil)), gate)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lis) }()
	defer func() { cancel(); require.NoError(t, <-done) }()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer cc.Close()

	w, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	_, err = w.Recv()
	require.Equal(t, codes.Unauthenticated, status.Code(err), "err %v", err)
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"/grpc.health.v1.Health/Watch", "/grpc.health.v1.Health/Check"}, seen)
}

func TestRecover(t *testing.T) {
	t.Parallel()
	rec := grpcserver.Recover(slog.New(slog.NewTextHandler(io.Discard, nil)))
	_, err := rec(t.Context(), nil, &grpc.UnaryServerInfo{FullMethod: "/x/Y"}, func(context.Context, any) (any, error) {
		panic("secret detail")
	})
	require.Equal(t, codes.Internal, status.Code(err))
	require.NotContains(t, err.Error(), "secret")

	stream := grpcserver.Stream(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		require.Nil(t, req)
		return handler(context.WithValue(ctx, ctxKey{}, info.FullMethod), req)
	})
	err = stream(nil, fakeStream{ctx: t.Context()}, &grpc.StreamServerInfo{FullMethod: "/x/Stream"}, func(_ any, ss grpc.ServerStream) error {
		require.Equal(t, "/x/Stream", ss.Context().Value(ctxKey{}))
		return nil
	})
	require.NoError(t, err)
}

type ctxKey struct{}

type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (f fakeStream) Context() context.Context { return f.ctx }
