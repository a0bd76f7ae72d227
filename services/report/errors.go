package report

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/apierr"
)

var (
	// errNotFound: no such message in the caller's account (another account's
	// message is not found either).
	errNotFound = errors.New("not found")
	// errNoPrincipal: the call reached a handler without an authenticated caller.
	errNoPrincipal = errors.New("no authenticated caller")
)

// fieldError is a bad request field.
type fieldError struct {
	field  string
	reason string
}

func (e *fieldError) Error() string { return e.field + ": " + e.reason }

func invalidField(field, format string, args ...any) error {
	return &fieldError{field: field, reason: fmt.Sprintf(format, args...)}
}

// grpcError maps an error of a ReportService handler to its gRPC status. It is
// the one place that does: handlers return plain errors.
func grpcError(ctx context.Context, log *slog.Logger, method string, err error) error {
	var fe *fieldError
	switch {
	case errors.As(err, &fe):
		st := status.New(codes.InvalidArgument, fe.Error())
		if detailed, derr := st.WithDetails(&errdetails.BadRequest{
			FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: fe.field, Description: fe.reason}},
		}); derr == nil {
			st = detailed
		}
		return st.Err()
	case errors.Is(err, errNotFound):
		return status.Error(codes.NotFound, "message not found")
	case errors.Is(err, errNoPrincipal):
		return status.Error(codes.Unauthenticated, "unauthenticated")
	}
	return apierr.Status(ctx, log, method, err).Err()
}
