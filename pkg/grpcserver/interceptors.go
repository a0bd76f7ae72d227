package grpcserver

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"

	"google.golang.org/grpc"

	"github.com/namirasoft/email-sender/pkg/apierr"
)

// Recover turns a panic in a handler (or a later interceptor) into INTERNAL,
// logged with its stack; the client sees no panic text and the process lives.
func Recover(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				log.ErrorContext(ctx, "handler panicked", "method", info.FullMethod, "stack", string(debug.Stack()))
				resp, err = nil, apierr.Status(ctx, log, info.FullMethod, fmt.Errorf("panic: %v", r)).Err()
			}
		}()
		return handler(ctx, req)
	}
}

// Stream runs the unary interceptor u around a streaming call: u sees the
// call's method and context (and a nil request), and the context its handler
// is given (with the authenticated principal, say) becomes the stream's.
// Interceptors that look at the request treat nil as "no messages".
func Stream(u grpc.UnaryServerInterceptor) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		_, err := u(ss.Context(), nil, &grpc.UnaryServerInfo{Server: srv, FullMethod: info.FullMethod},
			func(ctx context.Context, _ any) (any, error) {
				return nil, handler(srv, &serverStream{ServerStream: ss, ctx: ctx})
			})
		return err
	}
}

// serverStream is a stream with the context an interceptor gave its handler.
type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *serverStream) Context() context.Context { return s.ctx }
