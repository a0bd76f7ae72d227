package operator

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/accountstate"
	"github.com/namirasoft/email-sender/pkg/operatortoken"
	operatorv1 "github.com/namirasoft/email-sender/proto/emailsender/operator/v1"
)

// Token is an operator token (pkg/operatortoken).
type Token = operatortoken.Token

// ParseTokens reads OPERATOR_TOKEN_SHA256: name:sha256hex, comma separated.
func ParseTokens(s string) ([]Token, error) { return operatortoken.Parse(s) }

type actorKey struct{}

// authenticate is the operator listener's only gate: a bearer token whose
// SHA-256 is one of tokens. Tenant API keys and tokens are not operator
// tokens: PERMISSION_DENIED.
func authenticate(tokens []Token) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		var bearer string
		for _, v := range md.Get("authorization") {
			if after, ok := strings.CutPrefix(v, "Bearer "); ok {
				bearer = strings.TrimSpace(after)
			}
		}
		if bearer == "" {
			return nil, status.Error(codes.Unauthenticated, "an operator token is required (authorization: Bearer ...)")
		}
		name := operatortoken.Match(tokens, bearer)
		if name == "" {
			return nil, status.Error(codes.PermissionDenied, "not an operator token: the operator service accepts only OPERATOR_TOKEN_SHA256 tokens")
		}
		return handler(context.WithValue(ctx, actorKey{}, name), req)
	}
}

// Server is the OperatorService.
type Server struct {
	operatorv1.UnimplementedOperatorServiceServer
	c   *Controls
	log *slog.Logger
}

// NewServer serves c.
func NewServer(c *Controls, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{c: c, log: log}
}

func actor(ctx context.Context) string {
	name, _ := ctx.Value(actorKey{}).(string)
	return "operator:" + name
}

func (s *Server) fail(ctx context.Context, what string, err error) error {
	switch {
	case errors.Is(err, ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrState):
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	s.log.ErrorContext(ctx, "operator action failed", "action", what, "error", err)
	return status.Errorf(codes.Internal, "%s failed", what)
}

func stateProto(e accountstate.Entry) *operatorv1.AccountState {
	st := &operatorv1.AccountState{AccountId: e.Account, State: string(e.State), Reason: e.Reason, Actor: e.Actor}
	if !e.ChangedAt.IsZero() {
		st.ChangedAt = timestamppb.New(e.ChangedAt)
	}
	return st
}

func (s *Server) SuspendAccount(ctx context.Context, req *operatorv1.SuspendAccountRequest) (*operatorv1.SuspendAccountResponse, error) {
	o, err := s.c.Suspend(ctx, actor(ctx), req.GetAccountId(), req.GetReason())
	if err != nil {
		return nil, s.fail(ctx, ActionSuspend, err)
	}
	return &operatorv1.SuspendAccountResponse{State: stateProto(o.State), AuditId: o.AuditID}, nil
}

func (s *Server) ResumeAccount(ctx context.Context, req *operatorv1.ResumeAccountRequest) (*operatorv1.ResumeAccountResponse, error) {
	o, err := s.c.Resume(ctx, actor(ctx), req.GetAccountId(), req.GetReason())
	if err != nil {
		return nil, s.fail(ctx, ActionResume, err)
	}
	return &operatorv1.ResumeAccountResponse{State: stateProto(o.State), AuditId: o.AuditID}, nil
}

func (s *Server) TerminateAccount(ctx context.Context, req *operatorv1.TerminateAccountRequest) (*operatorv1.TerminateAccountResponse, error) {
	if req.GetConfirmAccountId() != req.GetAccountId() {
		return nil, status.Error(codes.InvalidArgument, "confirm_account_id: must repeat account_id")
	}
	o, err := s.c.Terminate(ctx, actor(ctx), req.GetAccountId(), req.GetReason())
	if err != nil {
		return nil, s.fail(ctx, ActionTerminate, err)
	}
	return &operatorv1.TerminateAccountResponse{State: stateProto(o.State), AuditId: o.AuditID,
		RowsDeleted: o.Erased.Rows, StreamMessagesPurged: o.Erased.Purged}, nil
}

func (s *Server) GetAccountState(ctx context.Context, req *operatorv1.GetAccountStateRequest) (*operatorv1.GetAccountStateResponse, error) {
	e, err := s.c.State(ctx, req.GetAccountId())
	if err != nil {
		return nil, s.fail(ctx, "get account state", err)
	}
	return &operatorv1.GetAccountStateResponse{State: stateProto(e)}, nil
}

func (s *Server) ListOperatorAudit(ctx context.Context, req *operatorv1.ListOperatorAuditRequest) (*operatorv1.ListOperatorAuditResponse, error) {
	list, err := s.c.Audit(ctx, req.GetAccountId(), int(req.GetPageSize()))
	if err != nil {
		return nil, s.fail(ctx, "list operator audit", err)
	}
	resp := &operatorv1.ListOperatorAuditResponse{}
	for _, a := range list {
		resp.Actions = append(resp.Actions, &operatorv1.OperatorAction{Id: a.ID, At: timestamppb.New(a.At), Actor: a.Actor,
			Action: a.Action, AccountId: a.Account, Reason: a.Reason, Detail: a.Detail})
	}
	return resp, nil
}

// Serve serves the OperatorService on lis, authenticated by tokens, until
// ctx ends (then in-flight calls get grace to finish).
func Serve(ctx context.Context, lis net.Listener, tokens []Token, srv *Server, grace time.Duration) error {
	gs := grpc.NewServer(grpc.ChainUnaryInterceptor(authenticate(tokens)))
	operatorv1.RegisterOperatorServiceServer(gs, srv)
	stop := context.AfterFunc(ctx, func() {
		done := make(chan struct{})
		go func() { gs.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(grace):
			gs.Stop()
		}
	})
	defer stop()
	err := gs.Serve(lis)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}
