package account

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/reputation"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest/store"
)

// ResumeProvider lifts the reputation guard's pause of one of the caller's
// provider configurations (pkg/reputation.Resume): it answers once every
// replica applied the lift, so a send right after is accepted and the held
// mail is on its way.
func (s *Server) ResumeProvider(ctx context.Context, req *emailsenderv1.ResumeProviderRequest) (*emailsenderv1.ResumeProviderResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	cfg, err := store.GetProviderConfig(ctx, s.d.DB, p.AccountID, req.GetId())
	if errors.Is(err, store.ErrNotFound) {
		return nil, fieldErr(codes.NotFound, "id", "no such provider configuration in this account")
	}
	if err != nil {
		return nil, internal(ctx, s.log, "get provider", err)
	}
	if s.d.States == nil || s.d.JetStream == nil {
		return nil, internal(ctx, s.log, "resume provider", errors.New("no account state store"))
	}
	now := s.now()
	_, err = reputation.Resume(ctx, s.d.DB, s.d.States, s.d.JetStream, reputation.Key{Account: p.AccountID, Provider: cfg.ID}, "owner", now)
	switch {
	case errors.Is(err, reputation.ErrNotPaused):
		return nil, fieldErr(codes.FailedPrecondition, "id", "the provider configuration is not paused")
	case err != nil:
		return nil, internal(ctx, s.log, "resume provider", err)
	}
	s.log.InfoContext(ctx, "provider configuration resumed by its owner", "account_id", p.AccountID, "provider_id", cfg.ID)
	return &emailsenderv1.ResumeProviderResponse{ResumedAt: timestamppb.New(now)}, nil
}
