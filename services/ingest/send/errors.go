package send

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/apierr"
	"github.com/namirasoft/email-sender/services/ingest/store"
	"github.com/namirasoft/email-sender/services/ingest/validate"
)

// statusOf maps an error of the send path to the gRPC status the API answers
// with; it is the one place where that mapping lives. Statuses name the field
// at fault (with a BadRequest detail) where there is one. prefix is prepended
// to field paths ("messages[3]." for batch items).
func statusOf(ctx context.Context, log *slog.Logger, err error, prefix string) *status.Status {
	var (
		verr      *validate.Error
		unknown   *store.UnknownProviderError
		unhealthy *store.UnhealthyProviderError
		paused    *store.PausedProviderError
		notCancel *store.NotCancelableError
		field     *apierr.FieldError
	)
	switch {
	case err == nil:
		return status.New(codes.OK, "")
	case errors.As(err, &verr):
		return verr.WithPrefix(prefix).GRPCStatus()
	case errors.As(err, &field): // a template's (Deps.Templates)
		code := field.Code
		if code == codes.OK {
			code = codes.InvalidArgument
		}
		return apierr.Field(code, prefix+field.Field, field.Reason)
	case errors.As(err, &unknown), errors.As(err, &unhealthy), errors.As(err, &paused), errors.Is(err, store.ErrNoDefaultProvider):
		return apierr.Field(codes.FailedPrecondition, prefix+"provider_id", err.Error())
	case errors.Is(err, store.ErrIdempotencyMismatch):
		return apierr.Field(codes.AlreadyExists, prefix+"idempotency_key", err.Error())
	case errors.As(err, &notCancel):
		return apierr.Field(codes.FailedPrecondition, prefix+"message_id", notCancel.Error())
	case errors.Is(err, store.ErrAccountGone):
		return status.New(codes.Unauthenticated, "the account no longer exists")
	case errors.Is(err, store.ErrNotFound):
		return apierr.Field(codes.NotFound, prefix+"message_id", "no such message in this account")
	default:
		return apierr.Status(ctx, log, "send", err)
	}
}
