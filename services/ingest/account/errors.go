package account

import (
	"context"
	"errors"
	"log/slog"

	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/providerconfig"
	"github.com/namirasoft/email-sender/services/ingest/validate"
)

// fieldErr is a status naming field (with a BadRequest detail).
func fieldErr(code codes.Code, field, description string) error {
	return validate.FieldStatus(code, field, description).Err()
}

// settingsErr maps a providerconfig validation error of the settings named
// prefix ("smtp", "ses", "gmail").
func settingsErr(prefix string, err error) error {
	var fe *providerconfig.FieldError
	if errors.As(err, &fe) {
		return fieldErr(codes.InvalidArgument, prefix+"."+fe.Field, fe.Reason)
	}
	return fieldErr(codes.InvalidArgument, prefix, err.Error())
}

// internal maps an unexpected error (the database or NATS failed).
func internal(ctx context.Context, log *slog.Logger, what string, err error) error {
	var connectErr *pgconn.ConnectError
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	case errors.As(err, &connectErr) || pgconn.SafeToRetry(err):
		log.WarnContext(ctx, "database unavailable", "op", what, "error", err)
		return status.Error(codes.Unavailable, "database unavailable; retry")
	default:
		log.ErrorContext(ctx, "account request failed", "op", what, "error", err)
		return status.Error(codes.Internal, "internal error")
	}
}
