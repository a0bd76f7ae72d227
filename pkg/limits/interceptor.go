package limits

import (
	"context"

	"google.golang.org/grpc"

	"github.com/namirasoft/email-sender/pkg/auth"
)

// Sends tells the interceptor which calls send mail: Messages is how many
// messages req asks to send (0 for any other call); Rejected is how many of
// those n were not accepted, given the answer.
type Sends struct {
	Messages func(req any) int
	Rejected func(resp any, err error, n int) int
}

// Interceptor returns a unary interceptor, chained after authentication, that
// takes one token of the caller's request rate per call and, for calls that
// send, reserves their messages of the daily quota, giving back those not
// accepted. sends may be zero (no quota: a service that does not send).
func (l *Limiter) Interceptor(sends Sends) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		p, ok := auth.FromContext(ctx)
		if !ok || p.AccountID == "" {
			return handler(ctx, req) // public methods (health, reflection)
		}
		if err := l.AllowCall(ctx, p.AccountID); err != nil {
			return nil, err
		}
		n := 0
		if sends.Messages != nil {
			n = sends.Messages(req)
		}
		taken, err := l.Reserve(ctx, p.AccountID, n)
		if err != nil {
			return nil, err
		}
		resp, err := handler(ctx, req)
		if taken > 0 && sends.Rejected != nil {
			l.Refund(p.AccountID, min(taken, sends.Rejected(resp, err, n)))
		}
		return resp, err
	}
}
