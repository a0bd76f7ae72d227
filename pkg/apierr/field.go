package apierr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Field is the status of a request field at fault: code, a message naming
// the field, and a BadRequest detail with the field violation (which clients
// and the HTTP gateway read).
func Field(code codes.Code, field, description string) *status.Status {
	st := status.New(code, field+": "+description)
	detailed, err := st.WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: description}},
	})
	if err != nil {
		return st
	}
	return detailed
}

// FieldError is an error about one request field; its status is Field's.
// Handlers return it as a plain error and Map answers with it.
type FieldError struct {
	// Code is the status code (INVALID_ARGUMENT when zero).
	Code   codes.Code
	Field  string
	Reason string
}

// InvalidField is an INVALID_ARGUMENT FieldError.
func InvalidField(field, format string, args ...any) error {
	return &FieldError{Code: codes.InvalidArgument, Field: field, Reason: fmt.Sprintf(format, args...)}
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// GRPCStatus is the status the API answers with.
func (e *FieldError) GRPCStatus() *status.Status {
	code := e.Code
	if code == codes.OK {
		code = codes.InvalidArgument
	}
	return Field(code, e.Field, e.Reason)
}

// Rule maps a service's own typed errors to their statuses; ok is false for
// errors it does not know.
type Rule func(err error) (st *status.Status, ok bool)

// Is is the Rule answering code and msg for errors that are target.
func Is(target error, code codes.Code, msg string) Rule {
	return func(err error) (*status.Status, bool) {
		if errors.Is(err, target) {
			return status.New(code, msg), true
		}
		return nil, false
	}
}

// Map is the error a handler returns for err: nil for nil; the first rule's
// status that knows err; a FieldError's (or any error that carries a status
// built by the service, such as status.Error) own status; otherwise Status:
// UNAVAILABLE for an infrastructure failure, INTERNAL for the rest, and
// never the error's text.
func Map(ctx context.Context, log *slog.Logger, op string, err error, rules ...Rule) error {
	if err == nil {
		return nil
	}
	for _, r := range rules {
		if st, ok := r(err); ok {
			return st.Err()
		}
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe.GRPCStatus().Err()
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return Status(ctx, log, op, err).Err()
}
