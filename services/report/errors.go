package report

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"

	"github.com/namirasoft/email-sender/pkg/apierr"
)

var (
	// errNotFound: no such message in the caller's account (another account's
	// message is not found either).
	errNotFound = errors.New("not found")
	// errNoPrincipal: the call reached a handler without an authenticated caller.
	errNoPrincipal = errors.New("no authenticated caller")
)

// invalidField is a bad request field (INVALID_ARGUMENT with a BadRequest
// detail).
func invalidField(field, format string, args ...any) error {
	return apierr.InvalidField(field, format, args...)
}

// errorRules are the report's own errors.
var errorRules = []apierr.Rule{
	apierr.Is(errNotFound, codes.NotFound, "message not found"),
	apierr.Is(errNoPrincipal, codes.Unauthenticated, "unauthenticated"),
}

// grpcError maps an error of a ReportService handler to its gRPC status. It is
// the one place that does: handlers return plain errors.
func grpcError(ctx context.Context, log *slog.Logger, method string, err error) error {
	return apierr.Map(ctx, log, method, err, errorRules...)
}
