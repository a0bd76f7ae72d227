package apierr_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/apierr"
)

func TestMap(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	errGone := errors.New("gone")
	rules := []apierr.Rule{apierr.Is(errGone, codes.NotFound, "message not found")}
	secret := "password authentication failed for user \"admin\" at 10.0.0.7"
	tests := []struct {
		name      string
		err       error
		code      codes.Code
		msg       string // "" : not checked
		field     string // the BadRequest field violation, if any
		noContain string
	}{
		{name: "nil", err: nil, code: codes.OK},
		{name: "a rule", err: fmt.Errorf("get: %w", errGone), code: codes.NotFound, msg: "message not found"},
		{name: "field error", err: apierr.InvalidField("page_size", "must not be negative"), code: codes.InvalidArgument,
			msg: "page_size: must not be negative", field: "page_size"},
		{name: "wrapped field error with a code", err: fmt.Errorf("x: %w", &apierr.FieldError{Code: codes.FailedPrecondition, Field: "provider_id", Reason: "unhealthy"}),
			code: codes.FailedPrecondition, field: "provider_id"},
		{name: "a status the handler built", err: status.Error(codes.PermissionDenied, "not yours"), code: codes.PermissionDenied, msg: "not yours"},
		{name: "database outage", err: fmt.Errorf("list usage: %w", &pgconn.PgError{Code: "57P01", Message: secret}),
			code: codes.Unavailable, noContain: "password"},
		{name: "database bug", err: fmt.Errorf("list usage: %w", &pgconn.PgError{Code: "42P01", Message: secret}),
			code: codes.Internal, noContain: "password"},
		{name: "connection refused", err: fmt.Errorf("dial: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), code: codes.Unavailable},
		{name: "canceled", err: fmt.Errorf("q: %w", context.Canceled), code: codes.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := apierr.Map(context.Background(), log, "test", tt.err, rules...)
			st := status.Convert(err)
			if st.Code() != tt.code {
				t.Fatalf("code %s, want %s (%v)", st.Code(), tt.code, err)
			}
			if tt.msg != "" && st.Message() != tt.msg {
				t.Fatalf("message %q, want %q", st.Message(), tt.msg)
			}
			if tt.noContain != "" && (st.Message() == tt.err.Error() || strings.Contains(st.Message(), tt.noContain)) {
				t.Fatalf("internal text reached the client: %q", st.Message())
			}
			var got string
			for _, d := range st.Details() {
				if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) == 1 {
					got = br.GetFieldViolations()[0].GetField()
				}
			}
			if got != tt.field {
				t.Fatalf("field violation %q, want %q", got, tt.field)
			}
		})
	}
}
