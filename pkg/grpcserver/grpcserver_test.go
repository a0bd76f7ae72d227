package grpcserver_test

import (
	"context"
	"io"
	"log/slog"
	"net"
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
