package account

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/address"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest/store"
)

// Suppression page sizes.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

func suppressionKey(field, raw string) (string, error) {
	if strings.TrimSpace(raw) == "" {
		return "", fieldErr(codes.InvalidArgument, field, "is required")
	}
	a, err := address.Parse(raw)
	if err != nil {
		return "", fieldErr(codes.InvalidArgument, field, fmt.Sprintf("%q is not a valid address: %s", raw,
			strings.TrimPrefix(err.Error(), address.ErrInvalid.Error()+": ")))
	}
	return a.Lower(), nil
}

// AddSuppression suppresses an address: messages to it mark it SUPPRESSED and
// send it nothing.
func (s *Server) AddSuppression(ctx context.Context, req *emailsenderv1.AddSuppressionRequest) (*emailsenderv1.AddSuppressionResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	addr, err := suppressionKey("address", req.GetAddress())
	if err != nil {
		return nil, err
	}
	reason := req.GetReason()
	switch reason {
	case "":
		reason = "manual"
	case "manual", "bounce", "complaint":
	default:
		return nil, fieldErr(codes.InvalidArgument, "reason", fmt.Sprintf("%q is not one of manual, bounce, complaint", reason))
	}
	sup, err := store.AddSuppression(ctx, s.d.DB, p.AccountID, addr, reason, s.now())
	if err != nil {
		return nil, internal(ctx, s.log, "add suppression", err)
	}
	return &emailsenderv1.AddSuppressionResponse{Suppression: suppressionProto(sup)}, nil
}

// ListSuppressions pages through the suppressions by address.
func (s *Server) ListSuppressions(ctx context.Context, req *emailsenderv1.ListSuppressionsRequest) (*emailsenderv1.ListSuppressionsResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, fieldErr(codes.InvalidArgument, "page_size", "must not be negative")
	case size == 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize
	}
	var after string
	if tok := req.GetPageToken(); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(b) == 0 {
			return nil, fieldErr(codes.InvalidArgument, "page_token", "is not a token from a previous answer")
		}
		after = string(b)
	}
	contains := strings.TrimSpace(req.GetAddressContains())
	if utf8.RuneCountInString(contains) > 320 {
		return nil, fieldErr(codes.InvalidArgument, "address_contains", "must be at most 320 characters")
	}
	list, err := store.ListSuppressions(ctx, s.d.DB, p.AccountID, after, contains, size+1)
	if err != nil {
		return nil, internal(ctx, s.log, "list suppressions", err)
	}
	out := &emailsenderv1.ListSuppressionsResponse{}
	if len(list) > size {
		list = list[:size]
		out.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(list[size-1].Address))
	}
	for _, x := range list {
		out.Suppressions = append(out.Suppressions, suppressionProto(x))
	}
	return out, nil
}

// RemoveSuppression lifts a suppression.
func (s *Server) RemoveSuppression(ctx context.Context, req *emailsenderv1.RemoveSuppressionRequest) (*emailsenderv1.RemoveSuppressionResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	addr, err := suppressionKey("address", req.GetAddress())
	if err != nil {
		return nil, err
	}
	err = store.RemoveSuppression(ctx, s.d.DB, p.AccountID, addr)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fieldErr(codes.NotFound, "address", "is not suppressed in this account")
	}
	if err != nil {
		return nil, internal(ctx, s.log, "remove suppression", err)
	}
	return &emailsenderv1.RemoveSuppressionResponse{}, nil
}

func suppressionProto(x store.Suppression) *emailsenderv1.Suppression {
	return &emailsenderv1.Suppression{Address: x.Address, Reason: x.Reason, CreatedAt: timestamppb.New(x.CreatedAt)}
}
