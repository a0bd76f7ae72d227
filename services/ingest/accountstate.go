package ingest

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/namirasoft/email-sender/pkg/accountstate"
	"github.com/namirasoft/email-sender/pkg/auth"
	"github.com/namirasoft/email-sender/pkg/infra"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest/erase"
	"github.com/namirasoft/email-sender/services/ingest/operator"
)

// sendingMethods are the calls that send mail for the caller's account
// (AddSender mails a verification code through the account's provider).
var sendingMethods = map[string]bool{
	emailsenderv1.SendService_SendEmail_FullMethodName:    true,
	emailsenderv1.SendService_SendBatch_FullMethodName:    true,
	emailsenderv1.AccountService_AddSender_FullMethodName: true,
}

// stateGate refuses, after authentication, every call of a terminated
// account, and the sends of a suspended one (or one being deleted) with
// FAILED_PRECONDITION; reads and the other calls of a suspended account work.
func (a *accounts) stateGate() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		p, ok := auth.FromContext(ctx)
		if !ok || p.AccountID == "" {
			return handler(ctx, req)
		}
		e, err := a.states.State(ctx, p.AccountID)
		if err != nil {
			return nil, status.Error(codes.Unavailable, "the account's state cannot be read; retry")
		}
		switch {
		case e.State == accountstate.Terminated:
			return nil, status.Error(codes.PermissionDenied, "the account was terminated by the operator")
		case e.State == accountstate.Suspended && sendingMethods[info.FullMethod]:
			return nil, status.Error(codes.FailedPrecondition, "the account is suspended by the operator: sending is refused and queued mail is held until it is resumed; reads still work")
		case e.State == accountstate.Deleted && sendingMethods[info.FullMethod]:
			return nil, status.Error(codes.FailedPrecondition, "the account's data is being deleted")
		}
		return handler(ctx, req)
	}
}

// newEraser is the account eraser of cfg: the final sweep after
// FinalSweepAfter, looked for every quarter of it (100ms to 5s).
func newEraser(cfg Config, deps Deps, rev erase.Revoker) *erase.Eraser {
	poll := min(max(cfg.FinalSweepAfter/4, 100*time.Millisecond), 5*time.Second)
	return erase.New(erase.Config{SweepAfter: cfg.FinalSweepAfter, SweepPoll: poll}, deps.Pool, deps.JetStream,
		accountstate.NewStore(deps.Pool, deps.JetStream, cfg.NATS.StreamReplicas), rev, deps.Logger)
}

// serveOperator serves the OperatorService on its own listener while
// operator tokens are configured; otherwise it waits for ctx.
func (s *Service) serveOperator(ctx context.Context) error {
	lis := s.deps.OperatorListener
	if len(s.acc.tokens) == 0 || (lis == nil && (s.cfg.OperatorAddr == "" || s.cfg.OperatorAddr == "off")) {
		if lis != nil {
			_ = lis.Close()
		}
		<-ctx.Done()
		return nil
	}
	lis, err := infra.Listener(lis, s.cfg.OperatorAddr)
	if err != nil {
		return err
	}
	s.log.InfoContext(ctx, "operator service listening", "addr", lis.Addr().String(), "operators", len(s.acc.tokens))
	return operator.Serve(ctx, lis, s.acc.tokens, operator.NewServer(s.acc.operator, s.log), s.cfg.ShutdownGrace)
}

// Operator returns the operator's controls over deps' PostgreSQL and
// JetStream, as the OperatorService runs them (for `ingest operator ...`).
func Operator(cfg Config, deps Deps) (*operator.Controls, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	rev := revoker{revs: auth.NewRevocations(deps.JetStream, cfg.NATS.StreamReplicas)}
	e := newEraser(cfg, deps, rev)
	return operator.New(deps.Pool, accountstate.NewStore(deps.Pool, deps.JetStream, cfg.NATS.StreamReplicas), e), nil
}
