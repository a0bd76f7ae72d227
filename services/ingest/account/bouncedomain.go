package account

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/address"
	"github.com/namirasoft/email-sender/pkg/bouncedomain"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// SetBounceDomain registers the caller's own bounce domain, pending until
// VerifyBounceDomain finds its TXT record (pkg/bouncedomain).
func (s *Server) SetBounceDomain(ctx context.Context, req *emailsenderv1.SetBounceDomainRequest) (*emailsenderv1.SetBounceDomainResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	raw := strings.TrimSpace(req.GetDomain())
	if raw == "" {
		return nil, fieldErr(codes.InvalidArgument, "domain", "is required")
	}
	domain, err := bouncedomain.Normalize(raw)
	if err != nil {
		return nil, fieldErr(codes.InvalidArgument, "domain", fmt.Sprintf("%q is not a domain name: %s", raw,
			strings.TrimPrefix(err.Error(), address.ErrInvalid.Error()+": ")))
	}
	if op := strings.ToLower(strings.TrimSuffix(s.d.OperatorBounceDomain, ".")); op != "" && (domain == op || strings.HasSuffix(domain, "."+op)) {
		return nil, fieldErr(codes.InvalidArgument, "domain", "is the operator's bounce domain (or under it); register a domain of your own")
	}
	r, err := bouncedomain.Register(ctx, s.d.DB, p.AccountID, domain, s.now())
	switch {
	case errors.Is(err, bouncedomain.ErrOtherDomain):
		return nil, fieldErr(codes.FailedPrecondition, "domain", fmt.Sprintf("%s (%q)", err, r.Domain))
	case err != nil:
		return nil, internal(ctx, s.log, "set bounce domain", err)
	}
	s.log.InfoContext(ctx, "bounce domain registered", "account_id", p.AccountID, "domain", domain, "verified", r.Verified())
	return &emailsenderv1.SetBounceDomainResponse{BounceDomain: bounceDomainProto(r)}, nil
}

// GetBounceDomain returns the caller's bounce domain.
func (s *Server) GetBounceDomain(ctx context.Context, _ *emailsenderv1.GetBounceDomainRequest) (*emailsenderv1.GetBounceDomainResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	r, err := bouncedomain.Get(ctx, s.d.DB, p.AccountID)
	switch {
	case errors.Is(err, bouncedomain.ErrNotFound):
		return nil, fieldErr(codes.NotFound, "domain", "the account has no bounce domain")
	case err != nil:
		return nil, internal(ctx, s.log, "get bounce domain", err)
	}
	return &emailsenderv1.GetBounceDomainResponse{BounceDomain: bounceDomainProto(r)}, nil
}

// VerifyBounceDomain looks up the caller's bounce domain's TXT record and
// marks it verified when the record holds the registration's token. The
// worker and the inbound service are told (bouncedomain.Announce).
func (s *Server) VerifyBounceDomain(ctx context.Context, _ *emailsenderv1.VerifyBounceDomainRequest) (*emailsenderv1.VerifyBounceDomainResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	r, err := bouncedomain.Get(ctx, s.d.DB, p.AccountID)
	switch {
	case errors.Is(err, bouncedomain.ErrNotFound):
		return nil, fieldErr(codes.NotFound, "domain", "the account has no bounce domain; set one first")
	case err != nil:
		return nil, internal(ctx, s.log, "get bounce domain", err)
	}
	if r.Verified() {
		return &emailsenderv1.VerifyBounceDomainResponse{BounceDomain: bounceDomainProto(r)}, nil
	}
	lctx, cancel := context.WithTimeout(ctx, s.cfg.VerifyTimeout)
	checkErr := bouncedomain.Check(lctx, s.d.Resolver, r.Domain, r.Token)
	cancel()
	var ce *bouncedomain.CheckError
	switch {
	case errors.Is(checkErr, bouncedomain.ErrLookup):
		s.log.WarnContext(ctx, "bounce domain lookup failed", "account_id", p.AccountID, "domain", r.Domain, "error", checkErr)
		return nil, status.Errorf(codes.Unavailable, "the DNS lookup of %s failed; try again later", bouncedomain.RecordName(r.Domain))
	case errors.As(checkErr, &ce):
		if _, err := bouncedomain.Checked(ctx, s.d.DB, p.AccountID, r.Domain, false, ce.Error(), s.now()); err != nil && !errors.Is(err, bouncedomain.ErrNotFound) {
			return nil, internal(ctx, s.log, "record bounce domain check", err)
		}
		return nil, fieldErr(codes.FailedPrecondition, "domain", fmt.Sprintf("%s: publish a TXT record %q there and verify again", ce, bouncedomain.RecordValue(r.Token)))
	case checkErr != nil:
		return nil, internal(ctx, s.log, "check bounce domain", checkErr)
	}
	domain := r.Domain
	r, err = bouncedomain.Checked(ctx, s.d.DB, p.AccountID, domain, true, "", s.now())
	switch {
	case errors.Is(err, bouncedomain.ErrTaken):
		return nil, fieldErr(codes.AlreadyExists, "domain", fmt.Sprintf("%q %s", domain, err))
	case errors.Is(err, bouncedomain.ErrNotFound):
		return nil, fieldErr(codes.NotFound, "domain", "the bounce domain was removed or replaced meanwhile")
	case err != nil:
		return nil, internal(ctx, s.log, "verify bounce domain", err)
	}
	s.announceBounceDomains(ctx)
	s.log.InfoContext(ctx, "bounce domain verified", "account_id", p.AccountID, "domain", r.Domain)
	return &emailsenderv1.VerifyBounceDomainResponse{BounceDomain: bounceDomainProto(r)}, nil
}

// RemoveBounceDomain removes the caller's bounce domain.
func (s *Server) RemoveBounceDomain(ctx context.Context, _ *emailsenderv1.RemoveBounceDomainRequest) (*emailsenderv1.RemoveBounceDomainResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	r, err := bouncedomain.Remove(ctx, s.d.DB, p.AccountID)
	switch {
	case errors.Is(err, bouncedomain.ErrNotFound):
		return nil, fieldErr(codes.NotFound, "domain", "the account has no bounce domain")
	case err != nil:
		return nil, internal(ctx, s.log, "remove bounce domain", err)
	}
	if r.Verified() {
		s.announceBounceDomains(ctx)
	}
	s.log.InfoContext(ctx, "bounce domain removed", "account_id", p.AccountID, "domain", r.Domain)
	return &emailsenderv1.RemoveBounceDomainResponse{}, nil
}

// announceBounceDomains tells the inbound services the verified domains
// changed; a lost announcement costs their refresh interval, so it is only
// logged.
func (s *Server) announceBounceDomains(ctx context.Context) {
	if s.d.JetStream == nil {
		return
	}
	if err := bouncedomain.Announce(s.d.JetStream.Conn()); err != nil {
		s.log.WarnContext(ctx, "announce bounce domain change; the inbound services reload it within their refresh interval", "error", err)
	}
}

func bounceDomainProto(r bouncedomain.Registration) *emailsenderv1.BounceDomain {
	out := &emailsenderv1.BounceDomain{
		Domain: r.Domain, Status: "pending",
		VerificationRecordName:  bouncedomain.RecordName(r.Domain),
		VerificationRecordValue: bouncedomain.RecordValue(r.Token),
		CreatedAt:               timestamppb.New(r.CreatedAt), VerifiedAt: ts(r.VerifiedAt), CheckedAt: ts(r.CheckedAt),
		LastCheck: r.LastCheck,
	}
	if r.Verified() {
		out.Status = "verified"
	}
	return out
}
