// Package apierr is where an error that no handler mapped becomes a gRPC
// status, the same way in every service: an infrastructure failure
// (PostgreSQL or NATS unreachable, restarting, a connection lost mid-call, a
// transaction the server aborted) is UNAVAILABLE, which clients retry (with
// the same idempotency key, safely); anything else is INTERNAL. Neither
// carries the error's own text to the client: it goes to the log.
package apierr

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"syscall"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/pgerr"
)

// Retriable reports whether err is an infrastructure failure after which the
// same call may succeed.
func Retriable(err error) bool {
	if err == nil {
		return false
	}
	var opErr *net.OpError
	switch {
	case pgerr.Unavailable(err):
		return true
	case errors.As(err, &opErr),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE):
		return true
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		return true
	}
	return false
}

// Status is the status of err, an error no handler mapped to one of its own:
// CANCELED and DEADLINE_EXCEEDED for the caller's context, UNAVAILABLE for an
// infrastructure failure (logged as a warning), INTERNAL for the rest (logged
// as an error). op names the call in the log.
func Status(ctx context.Context, log *slog.Logger, op string, err error) *status.Status {
	switch {
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, "deadline exceeded")
	case Retriable(err):
		log.WarnContext(ctx, "infrastructure unavailable", "op", op, "error", err)
		return status.New(codes.Unavailable, "temporarily unavailable; retry (with the same idempotency_key, for sends)")
	default:
		log.ErrorContext(ctx, "request failed", "op", op, "error", err)
		return status.New(codes.Internal, "internal error")
	}
}
