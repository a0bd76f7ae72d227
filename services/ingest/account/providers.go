package account

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/kinds"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest/store"
)

// encoded is a configuration in its stored form.
type encoded struct {
	kind     string
	settings []byte
	// secret is the plaintext secret JSON; nil when no field is set.
	secret []byte
	fields []string
}

// PutProvider creates or replaces a configuration. On replace, secret fields
// left empty keep their stored values (when the kind is unchanged).
func (s *Server) PutProvider(ctx context.Context, req *emailsenderv1.PutProviderRequest) (*emailsenderv1.PutProviderResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := checkName("name", req.GetName()); err != nil {
		return nil, err
	}
	id, name := req.GetId(), req.GetName()
	var old []byte // the stored secret's plaintext, on replace
	if id != "" {
		cur, err := store.GetProviderConfig(ctx, s.d.DB, p.AccountID, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, fieldErr(codes.NotFound, "id", "no such provider configuration in this account")
		}
		if err != nil {
			return nil, internal(ctx, s.log, "get provider", err)
		}
		if name == "" {
			name = cur.Name
		}
		if kind, _ := kindOf(req); len(cur.Secret) > 0 && cur.Kind == kind {
			if s.d.Keyring == nil {
				return nil, fieldErr(codes.FailedPrecondition, "id", "the stored secret cannot be opened: ingest has no MASTER_KEYS")
			}
			if old, err = s.d.Keyring.Open(cur.Secret, []byte(cur.ID)); err != nil {
				return nil, internal(ctx, s.log, "open provider secret", err)
			}
		}
	}
	enc, err := encode(req, old)
	if err != nil {
		return nil, err
	}
	if name == "" {
		name = enc.kind
	}
	create := id == ""
	if create {
		id = uuid.NewString()
	}
	var sealed []byte
	if enc.secret != nil {
		if s.d.Keyring == nil {
			return nil, fieldErr(codes.FailedPrecondition, enc.kind, "secrets cannot be stored: ingest has no MASTER_KEYS configured")
		}
		if sealed, err = s.d.Keyring.Seal(enc.secret, []byte(id)); err != nil {
			return nil, internal(ctx, s.log, "seal provider secret", err)
		}
	}
	put := store.PutProviderConfig{
		ID: id, AccountID: p.AccountID, Name: name, Kind: enc.kind, Settings: enc.settings, Secret: sealed,
		SecretFields: enc.fields, FallbackID: req.GetFallbackProviderId(), MakeDefault: req.GetMakeDefault(),
	}
	if create {
		err = store.InsertProviderConfig(ctx, s.d.DB, put)
	} else {
		err = store.UpdateProviderConfig(ctx, s.d.DB, put)
	}
	var unknown *store.UnknownProviderError
	switch {
	case errors.Is(err, store.ErrNameTaken):
		return nil, fieldErr(codes.AlreadyExists, "name", fmt.Sprintf("%q is the name of another provider configuration of this account", name))
	case errors.As(err, &unknown):
		return nil, fieldErr(codes.InvalidArgument, "fallback_provider_id", "must be another provider configuration of this account")
	case errors.Is(err, store.ErrNotFound):
		return nil, fieldErr(codes.NotFound, "id", "no such provider configuration in this account")
	case err != nil:
		return nil, internal(ctx, s.log, "put provider", err)
	}
	s.configChanged(ctx, p.AccountID)
	cfg, err := store.GetProviderConfig(ctx, s.d.DB, p.AccountID, id)
	if err != nil {
		return nil, internal(ctx, s.log, "get provider", err)
	}
	s.log.InfoContext(ctx, "provider configuration stored", "account_id", p.AccountID, "provider_id", id, "provider", enc.kind, "created", create)
	return &emailsenderv1.PutProviderResponse{Provider: providerProto(cfg)}, nil
}

// settingsOneof is the name of the oneof of PutProviderRequest and Provider
// whose fields, one per kind, are named for the kind (kinds.Kind.Name).
const settingsOneof = "settings"

// kindOf is the kind whose settings req sets ("" for none), and its API message.
func kindOf(req *emailsenderv1.PutProviderRequest) (string, protoreflect.Message) {
	m := req.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().ByName(settingsOneof))
	if fd == nil || fd.Message() == nil {
		return "", nil
	}
	return string(fd.Name()), m.Get(fd).Message()
}

// encode validates the request's settings with the kind's schema and returns
// their stored form. old is the stored secret JSON of the same kind (on
// replace), whose values fill secret fields left empty.
func encode(req *emailsenderv1.PutProviderRequest, old []byte) (encoded, error) {
	name, msg := kindOf(req)
	k, ok := kinds.Lookup(name)
	if !ok {
		return encoded{}, fieldErr(codes.InvalidArgument, "settings", "one of "+kinds.OneOf()+" is required")
	}
	st, err := k.Schema.FromAPI(msg.Interface(), old)
	if err != nil {
		return encoded{}, settingsErr(k.Name, err)
	}
	return encoded{kind: k.Name, settings: st.Settings, secret: st.Secret, fields: st.SecretFields}, nil
}

// ListProviders lists configurations; secrets are never decrypted for it.
func (s *Server) ListProviders(ctx context.Context, _ *emailsenderv1.ListProvidersRequest) (*emailsenderv1.ListProvidersResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	cfgs, err := store.ListProviderConfigs(ctx, s.d.DB, p.AccountID)
	if err != nil {
		return nil, internal(ctx, s.log, "list providers", err)
	}
	out := &emailsenderv1.ListProvidersResponse{}
	for _, c := range cfgs {
		out.Providers = append(out.Providers, providerProto(c))
	}
	return out, nil
}

// DeleteProvider deletes a configuration. Messages still queued for it fail
// (the worker finds no configuration); the account's default is cleared when
// it was this one.
func (s *Server) DeleteProvider(ctx context.Context, req *emailsenderv1.DeleteProviderRequest) (*emailsenderv1.DeleteProviderResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	err = store.DeleteProviderConfig(ctx, s.d.DB, p.AccountID, req.GetId())
	if errors.Is(err, store.ErrNotFound) {
		return nil, fieldErr(codes.NotFound, "id", "no such provider configuration in this account")
	}
	if err != nil {
		return nil, internal(ctx, s.log, "delete provider", err)
	}
	s.configChanged(ctx, p.AccountID)
	s.log.InfoContext(ctx, "provider configuration deleted", "account_id", p.AccountID, "provider_id", req.GetId())
	return &emailsenderv1.DeleteProviderResponse{}, nil
}

// verifyRecord is the stored JSON of a VerifyResult.
type verifyRecord struct {
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	// SES is GetAccount's answer for ses configurations.
	SES *sesInfo `json:"ses,omitempty"`
}

// VerifyProvider logs in to the provider and sends nothing; the result is
// stored. A refused login marks the configuration unhealthy, a good one healthy.
func (s *Server) VerifyProvider(ctx context.Context, req *emailsenderv1.VerifyProviderRequest) (*emailsenderv1.VerifyProviderResponse, error) {
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
	pc := provider.Config{ID: cfg.ID, AccountID: cfg.AccountID, Kind: cfg.Kind, Settings: cfg.Settings, Version: cfg.UpdatedAt}
	if len(cfg.Secret) > 0 {
		if s.d.Keyring == nil {
			return nil, fieldErr(codes.FailedPrecondition, "id", "the stored secret cannot be opened: ingest has no MASTER_KEYS")
		}
		if pc.Secret, err = s.d.Keyring.Open(cfg.Secret, []byte(cfg.ID)); err != nil {
			return nil, internal(ctx, s.log, "open provider secret", err)
		}
	}
	rec, healthy := s.verify(ctx, pc)
	at := s.now()
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, internal(ctx, s.log, "encode verification", err)
	}
	note := ""
	if healthy != nil && !*healthy {
		note = "verification: " + rec.Detail
	}
	if err := store.RecordVerify(ctx, s.d.DB, p.AccountID, cfg.ID, b, at, healthy, note); err != nil {
		return nil, internal(ctx, s.log, "record verification", err)
	}
	if healthy != nil {
		s.configChanged(ctx, p.AccountID)
	}
	s.log.InfoContext(ctx, "provider verified", "account_id", p.AccountID, "provider_id", cfg.ID, "provider", cfg.Kind, "ok", rec.OK)
	return &emailsenderv1.VerifyProviderResponse{Result: &emailsenderv1.VerifyResult{
		Ok: rec.OK, Detail: rec.Detail, CheckedAt: timestamppb.New(at), Ses: rec.SES.proto(),
	}}, nil
}

// verify runs the kind's check (kinds.Kind.Verify). healthy is what the
// configuration's health becomes: true after a good login, false after
// refused credentials, nil when the check says nothing about the credentials
// (network trouble).
func (s *Server) verify(ctx context.Context, pc provider.Config) (verifyRecord, *bool) {
	v, ok := s.d.Verifiers[pc.Kind]
	if !ok || v.Verify == nil {
		return verifyRecord{Detail: fmt.Sprintf("no verifier for %s providers in this ingest", pc.Kind)}, nil
	}
	vctx, cancel := context.WithTimeout(ctx, s.cfg.VerifyTimeout)
	defer cancel()
	res := v.Verify(vctx, pc)
	rec := verifyRecord{OK: res.OK, Detail: res.Detail}
	if q := res.Quota; q != nil {
		rec.SES = &sesInfo{Max24HourSend: q.Max24HourSend, MaxSendRate: q.MaxSendRate, SentLast24Hours: q.SentLast24Hours,
			ProductionAccess: q.ProductionAccess, SendingEnabled: q.SendingEnabled}
	}
	return rec, res.Healthy
}

// providerProto is cfg with every secret left out: the settings are rebuilt
// from the non-secret settings JSON only.
func providerProto(c store.ProviderConfig) *emailsenderv1.Provider {
	out := &emailsenderv1.Provider{
		Id: c.ID, Name: c.Name, Kind: c.Kind, SecretsSet: c.SecretFields, IsDefault: c.IsDefault,
		Healthy: c.Healthy, HealthNote: c.HealthNote, FallbackProviderId: c.FallbackID,
		CreatedAt: timestamppb.New(c.CreatedAt), UpdatedAt: timestamppb.New(c.UpdatedAt),
	}
	if k, ok := kinds.Lookup(c.Kind); ok {
		m := out.ProtoReflect()
		if fd := m.Descriptor().Oneofs().ByName(settingsOneof).Fields().ByName(protoreflect.Name(k.Name)); fd != nil {
			m.Set(fd, protoreflect.ValueOfMessage(k.Schema.ToAPI(c.Settings).ProtoReflect()))
		}
	}
	if c.LastVerify != nil {
		var rec verifyRecord
		if json.Unmarshal(c.LastVerify, &rec) == nil {
			out.LastVerify = &emailsenderv1.VerifyResult{Ok: rec.OK, Detail: rec.Detail, CheckedAt: ts(c.VerifiedAt), Ses: rec.SES.proto()}
		}
	}
	return out
}
