package apierr_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"

	"github.com/namirasoft/email-sender/pkg/apierr"
)

func TestStatus(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	wrap := func(err error) error { return fmt.Errorf("insert message 42: %w", err) }
	tests := []struct {
		name string
		err  error
		want codes.Code
	}{
		{"admin shutdown (PostgreSQL restarting)", &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}, codes.Unavailable},
		{"cannot connect now (starting up)", wrap(&pgconn.PgError{Code: "57P03"}), codes.Unavailable},
		{"connection failure", wrap(&pgconn.PgError{Code: "08006"}), codes.Unavailable},
		{"serialization failure", &pgconn.PgError{Code: "40001"}, codes.Unavailable},
		{"deadlock", &pgconn.PgError{Code: "40P01"}, codes.Unavailable},
		{"too many connections", &pgconn.PgError{Code: "53300"}, codes.Unavailable},
		{"connection reset mid-query", wrap(&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}), codes.Unavailable},
		{"unexpected EOF", wrap(io.ErrUnexpectedEOF), codes.Unavailable},
		{"commit on a closed connection (PostgreSQL restarted)", fmt.Errorf("accept: commit: %w", pgconn.ErrConnClosed), codes.Unavailable},
		{"broken pipe", wrap(syscall.EPIPE), codes.Unavailable},
		{"nats closed", wrap(nats.ErrConnectionClosed), codes.Unavailable},
		{"nats timeout", wrap(nats.ErrTimeout), codes.Unavailable},
		{"nats no responders", wrap(nats.ErrNoResponders), codes.Unavailable},
		{"canceled", wrap(context.Canceled), codes.Canceled},
		{"deadline", wrap(context.DeadlineExceeded), codes.DeadlineExceeded},
		{"unique violation (a bug)", &pgconn.PgError{Code: "23505"}, codes.Internal},
		{"syntax error (a bug)", &pgconn.PgError{Code: "42601"}, codes.Internal},
		{"anything else", errors.New("boom"), codes.Internal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := apierr.Status(context.Background(), log, "test", tt.err)
			if st.Code() != tt.want {
				t.Fatalf("code %s, want %s", st.Code(), tt.want)
			}
			if tt.err != nil && st.Message() == tt.err.Error() {
				t.Fatalf("the error's own text reached the client: %q", st.Message())
			}
		})
	}
}
