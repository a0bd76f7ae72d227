package account

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"

	"github.com/namirasoft/email-sender/pkg/apierr"
	"github.com/namirasoft/email-sender/pkg/provider"
)

// fieldErr is a status naming field (with a BadRequest detail).
func fieldErr(code codes.Code, field, description string) error {
	return apierr.Field(code, field, description).Err()
}

// settingsErr maps a validation error of a kind's settings (a
// provider.FieldError) of the settings named prefix ("smtp", "ses", "gmail").
func settingsErr(prefix string, err error) error {
	var fe *provider.FieldError
	if errors.As(err, &fe) {
		return fieldErr(codes.InvalidArgument, prefix+"."+fe.Field, fe.Reason)
	}
	return fieldErr(codes.InvalidArgument, prefix, err.Error())
}

// internal maps an unexpected error (the database or NATS failed, or a bug):
// UNAVAILABLE or INTERNAL, never the error's text.
func internal(ctx context.Context, log *slog.Logger, what string, err error) error {
	return apierr.Status(ctx, log, what, err).Err()
}

// mapErr is the answer of a call that failed with err: the statuses the
// handlers built (and apierr.FieldErrors) as they are, anything else through
// internal.
func mapErr(ctx context.Context, log *slog.Logger, what string, err error) error {
	return apierr.Map(ctx, log, what, err)
}
