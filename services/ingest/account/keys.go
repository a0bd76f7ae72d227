package account

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/address"
	"github.com/namirasoft/email-sender/pkg/auth"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest/store"
)

const maxNameBytes = 100

// checkName validates a display name of a key or provider configuration.
func checkName(field, name string) error {
	if len(name) > maxNameBytes {
		return fieldErr(codes.InvalidArgument, field, fmt.Sprintf("is %d bytes, over the limit of %d", len(name), maxNameBytes))
	}
	if err := address.CheckText(name); err != nil {
		return fieldErr(codes.InvalidArgument, field, "must not contain control characters")
	}
	return nil
}

// CreateApiKey makes a key; its secret is only in the answer.
func (s *Server) CreateApiKey(ctx context.Context, req *emailsenderv1.CreateApiKeyRequest) (*emailsenderv1.CreateApiKeyResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkName("name", req.GetName()); err != nil {
		return nil, err
	}
	scopes := req.GetScopes()
	if len(scopes) == 0 {
		scopes = []string{auth.ScopeSend, auth.ScopeRead}
	}
	var clean []string
	for i, sc := range scopes {
		switch sc {
		case auth.ScopeSend, auth.ScopeRead, auth.ScopeAdmin:
		default:
			return nil, fieldErr(codes.InvalidArgument, fmt.Sprintf("scopes[%d]", i), fmt.Sprintf("%q is not one of send, read, admin", sc))
		}
		if !slices.Contains(clean, sc) {
			clean = append(clean, sc)
		}
	}
	now := s.now()
	var expires time.Time
	if ts := req.GetExpiresAt(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return nil, fieldErr(codes.InvalidArgument, "expires_at", "is not a valid timestamp")
		}
		if expires = ts.AsTime(); !expires.After(now) {
			return nil, fieldErr(codes.InvalidArgument, "expires_at", "must be in the future")
		}
	}
	secret, prefix, hash, err := auth.NewKey()
	if err != nil {
		return nil, internal(ctx, s.log, "new api key", err)
	}
	id := uuid.NewString()
	err = store.CreateAPIKey(ctx, s.d.DB, store.NewAPIKey{
		ID: id, AccountID: p.AccountID, Name: req.GetName(), Prefix: prefix, Hash: hash, Scopes: clean, ExpiresAt: expires,
	})
	if err != nil {
		return nil, internal(ctx, s.log, "create api key", err)
	}
	k, err := store.GetAPIKey(ctx, s.d.DB, p.AccountID, id)
	if err != nil {
		return nil, internal(ctx, s.log, "read api key", err)
	}
	s.log.InfoContext(ctx, "api key created", "account_id", p.AccountID, "key_id", id, "prefix", prefix, "scopes", clean)
	return &emailsenderv1.CreateApiKeyResponse{Key: keyProto(k), Secret: secret}, nil
}

// ListApiKeys lists the account's keys, revoked ones included.
func (s *Server) ListApiKeys(ctx context.Context, _ *emailsenderv1.ListApiKeysRequest) (*emailsenderv1.ListApiKeysResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	keys, err := store.ListAPIKeys(ctx, s.d.DB, p.AccountID)
	if err != nil {
		return nil, internal(ctx, s.log, "list api keys", err)
	}
	out := &emailsenderv1.ListApiKeysResponse{}
	for _, k := range keys {
		out.Keys = append(out.Keys, keyProto(k))
	}
	return out, nil
}

// RevokeApiKey revokes a key in the database, then announces it to every
// replica; it answers once the announcement is stored by JetStream. When that
// fails the key is revoked but other replicas may accept it from their cache
// for up to their cache TTL: the call answers UNAVAILABLE and may be retried.
func (s *Server) RevokeApiKey(ctx context.Context, req *emailsenderv1.RevokeApiKeyRequest) (*emailsenderv1.RevokeApiKeyResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	k, err := store.RevokeAPIKey(ctx, s.d.DB, p.AccountID, req.GetId(), s.now())
	if errors.Is(err, store.ErrNotFound) {
		return nil, fieldErr(codes.NotFound, "id", "no such API key in this account")
	}
	if err != nil {
		return nil, internal(ctx, s.log, "revoke api key", err)
	}
	if err := s.d.Revoker.Revoke(ctx, k.ID); err != nil {
		s.log.WarnContext(ctx, "announce api key revocation", "account_id", p.AccountID, "key_id", k.ID, "error", err)
		return nil, status.Error(codes.Unavailable, "the key is revoked, but the revocation could not be announced to every replica yet; retry RevokeApiKey")
	}
	s.log.InfoContext(ctx, "api key revoked", "account_id", p.AccountID, "key_id", k.ID)
	return &emailsenderv1.RevokeApiKeyResponse{Key: keyProto(k)}, nil
}

func keyProto(k store.APIKey) *emailsenderv1.ApiKey {
	return &emailsenderv1.ApiKey{
		Id: k.ID, Name: k.Name, Prefix: k.Prefix, Scopes: k.Scopes,
		CreatedAt: timestamppb.New(k.CreatedAt), ExpiresAt: ts(k.ExpiresAt),
		RevokedAt: ts(k.RevokedAt), LastUsedAt: ts(k.LastUsedAt),
	}
}

func ts(t *time.Time) *timestamppb.Timestamp {
	if t == nil {
		return nil
	}
	return timestamppb.New(*t)
}
