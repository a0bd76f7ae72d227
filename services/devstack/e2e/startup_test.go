package e2e

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/namirasoft/email-sender/pkg/testkit/tcprelay"
	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// A worker process started while PostgreSQL is down does not exit: it
// answers health checks NOT_SERVING, waits with backoff, and serves once
// PostgreSQL is reachable.
func TestWorkerStartedWhilePostgresIsDownWaits(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackOptions{noWorker: true})
	bin, err := workerBinary()
	require.NoError(t, err)

	u, err := url.Parse(s.db.URL)
	require.NoError(t, err)
	upstream := u.Host
	pgPort := freePortNum(t) // nothing listens there yet: PostgreSQL is "down"
	u.Host = fmt.Sprintf("127.0.0.1:%d", pgPort)
	grpcAddr := freeAddr(t)

	env := []string{}
	for _, kv := range s.workerEnv() {
		switch {
		case strings.HasPrefix(kv, "DATABASE_URL="):
			kv = "DATABASE_URL=" + u.String()
		case strings.HasPrefix(kv, "WORKER_GRPC_ADDR="):
			kv = "WORKER_GRPC_ADDR=" + grpcAddr
		}
		env = append(env, kv)
	}
	cmd := exec.Command(bin)
	cmd.Env = env
	var logs logBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("worker log:\n%s", logs.String())
		}
	})

	health := healthpb.NewHealthClient(dial(t, grpcAddr))
	status := func() healthpb.HealthCheckResponse_ServingStatus {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return healthpb.HealthCheckResponse_UNKNOWN
		}
		return r.GetStatus()
	}
	require.Eventually(t, func() bool { return status() == healthpb.HealthCheckResponse_NOT_SERVING }, 30*time.Second, 50*time.Millisecond,
		"health while PostgreSQL is down")
	time.Sleep(2 * time.Second) // some retries, and no exit
	select {
	case err := <-exited:
		t.Fatalf("the worker exited while PostgreSQL was down: %v", err)
	default:
	}
	require.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, status())
	require.Contains(t, logs.String(), "postgres not reachable; retrying")

	tcprelay.Start(t, fmt.Sprintf("127.0.0.1:%d", pgPort), upstream) // PostgreSQL is back
	require.Eventually(t, func() bool { return status() == healthpb.HealthCheckResponse_SERVING }, 60*time.Second, 100*time.Millisecond,
		"health once PostgreSQL is reachable")

	// And it delivers.
	id := s.sendOK("a", simple("jane@example.com"))
	s.waitStatus("a", id, v1.MessageStatus_SENT)
}
