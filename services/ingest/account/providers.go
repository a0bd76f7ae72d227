package account

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/gmail"
	"github.com/namirasoft/email-sender/pkg/provider/smtp"
	"github.com/namirasoft/email-sender/pkg/providerconfig"
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
		if len(cur.Secret) > 0 && cur.Kind == kindOf(req) {
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
	cfg, err := store.GetProviderConfig(ctx, s.d.DB, p.AccountID, id)
	if err != nil {
		return nil, internal(ctx, s.log, "get provider", err)
	}
	s.log.InfoContext(ctx, "provider configuration stored", "account_id", p.AccountID, "provider_id", id, "provider", enc.kind, "created", create)
	return &emailsenderv1.PutProviderResponse{Provider: providerProto(cfg)}, nil
}

func kindOf(req *emailsenderv1.PutProviderRequest) string {
	switch req.GetSettings().(type) {
	case *emailsenderv1.PutProviderRequest_Smtp:
		return providerconfig.KindSMTP
	case *emailsenderv1.PutProviderRequest_Ses:
		return providerconfig.KindSES
	case *emailsenderv1.PutProviderRequest_Gmail:
		return providerconfig.KindGmail
	case *emailsenderv1.PutProviderRequest_Sandbox:
		return providerconfig.KindSandbox
	}
	return ""
}

// keep returns v, or the stored value when v is empty.
func keep(v, stored string) string {
	if v == "" {
		return stored
	}
	return v
}

// encode validates the request's settings and returns their stored form. old
// is the stored secret JSON of the same kind (on replace), whose values fill
// secret fields left empty.
func encode(req *emailsenderv1.PutProviderRequest, old []byte) (encoded, error) {
	var (
		settings, secret any
		fields           []string
		kind             = kindOf(req)
	)
	set := func(name, v string) {
		if v != "" {
			fields = append(fields, name)
		}
	}
	switch kind {
	case providerconfig.KindSMTP:
		in := req.GetSmtp()
		var prev providerconfig.SMTPSecret
		_ = json.Unmarshal(old, &prev)
		st := providerconfig.SMTP{Host: in.GetHost(), Port: int(in.GetPort()), TLS: in.GetTlsMode(),
			Username: in.GetUsername(), PoolSize: int(in.GetPoolSize()), HELO: in.GetHelo()}
		sec := providerconfig.SMTPSecret{Password: keep(in.GetPassword(), prev.Password)}
		if err := st.Normalize(sec); err != nil {
			return encoded{}, settingsErr("smtp", err)
		}
		set("password", sec.Password)
		settings, secret = st, sec
	case providerconfig.KindSES:
		in := req.GetSes()
		var prev providerconfig.SESSecret
		_ = json.Unmarshal(old, &prev)
		st := providerconfig.SES{Region: in.GetRegion(), AccessKeyID: in.GetAccessKeyId(),
			ConfigurationSet: in.GetConfigurationSet(), Endpoint: in.GetEndpoint()}
		sec := providerconfig.SESSecret{SecretAccessKey: keep(in.GetSecretAccessKey(), prev.SecretAccessKey)}
		if err := st.Normalize(sec); err != nil {
			return encoded{}, settingsErr("ses", err)
		}
		set("secret_access_key", sec.SecretAccessKey)
		settings, secret = st, sec
	case providerconfig.KindGmail:
		in := req.GetGmail()
		var prev providerconfig.GmailSecret
		_ = json.Unmarshal(old, &prev)
		st := providerconfig.Gmail{ClientID: in.GetClientId(), SenderUser: in.GetSenderUser(),
			TokenURL: in.GetTokenUrl(), APIEndpoint: in.GetApiEndpoint()}
		sec := providerconfig.GmailSecret{ClientSecret: keep(in.GetClientSecret(), prev.ClientSecret),
			RefreshToken: keep(in.GetRefreshToken(), prev.RefreshToken)}
		if err := st.Normalize(sec); err != nil {
			return encoded{}, settingsErr("gmail", err)
		}
		set("client_secret", sec.ClientSecret)
		set("refresh_token", sec.RefreshToken)
		settings, secret = st, sec
	case providerconfig.KindSandbox:
		settings = struct{}{}
	default:
		return encoded{}, fieldErr(codes.InvalidArgument, "settings", "one of smtp, ses, gmail or sandbox is required")
	}
	out := encoded{kind: kind, fields: fields}
	var err error
	if out.settings, err = json.Marshal(settings); err != nil {
		return encoded{}, fmt.Errorf("encode settings: %w", err)
	}
	if len(fields) > 0 {
		if out.secret, err = json.Marshal(secret); err != nil {
			return encoded{}, fmt.Errorf("encode secret: %w", err)
		}
	}
	return out, nil
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
	s.log.InfoContext(ctx, "provider verified", "account_id", p.AccountID, "provider_id", cfg.ID, "provider", cfg.Kind, "ok", rec.OK)
	return &emailsenderv1.VerifyProviderResponse{Result: &emailsenderv1.VerifyResult{
		Ok: rec.OK, Detail: rec.Detail, CheckedAt: timestamppb.New(at), Ses: rec.SES.proto(),
	}}, nil
}

// detailVerifier is a provider.Verifier that also describes what it found
// (gmail: the mailbox's address and counts from users.getProfile).
type detailVerifier interface {
	VerifyDetail(ctx context.Context, cfg provider.Config) (string, error)
}

// verify runs the kind's check. healthy is what the configuration's health
// becomes: true after a good login, false after refused credentials, nil when
// the check says nothing about the credentials (network trouble).
func (s *Server) verify(ctx context.Context, pc provider.Config) (verifyRecord, *bool) {
	yes, no := true, false
	switch pc.Kind {
	case providerconfig.KindSES:
		return s.verifySES(ctx, pc)
	}
	v, ok := s.d.Verifiers[pc.Kind]
	if !ok {
		return verifyRecord{Detail: fmt.Sprintf("no verifier for %s providers in this ingest", pc.Kind)}, nil
	}
	vctx, cancel := context.WithTimeout(ctx, s.cfg.VerifyTimeout)
	defer cancel()
	start := time.Now()
	var detail string
	var err error
	if dv, ok := v.(detailVerifier); ok {
		detail, err = dv.VerifyDetail(vctx, pc)
	} else {
		err = v.Verify(vctx, pc)
	}
	took := time.Since(start).Round(time.Millisecond)
	if err != nil {
		if errors.Is(err, smtp.ErrAuth) || errors.Is(err, gmail.ErrAuth) {
			return verifyRecord{Detail: err.Error()}, &no
		}
		return verifyRecord{Detail: err.Error()}, nil
	}
	if detail != "" {
		return verifyRecord{OK: true, Detail: fmt.Sprintf("%s (%s)", detail, took)}, &yes
	}
	if pc.Kind != providerconfig.KindSMTP {
		return verifyRecord{OK: true, Detail: pc.Kind + ": ok, nothing to log in to"}, &yes
	}
	st, _ := smtp.ParseSettings(pc)
	login := "no AUTH (no username configured)"
	if st.Username != "" {
		login = fmt.Sprintf("authenticated as %s", st.Username)
	}
	return verifyRecord{OK: true, Detail: fmt.Sprintf("connected to %s:%d (tls %s), %s, quit in %s; nothing was sent",
		st.Host, st.Port, st.TLS, login, took)}, &yes
}

// providerProto is cfg with every secret left out: the settings are rebuilt
// from the non-secret settings JSON only.
func providerProto(c store.ProviderConfig) *emailsenderv1.Provider {
	out := &emailsenderv1.Provider{
		Id: c.ID, Name: c.Name, Kind: c.Kind, SecretsSet: c.SecretFields, IsDefault: c.IsDefault,
		Healthy: c.Healthy, HealthNote: c.HealthNote, FallbackProviderId: c.FallbackID,
		CreatedAt: timestamppb.New(c.CreatedAt), UpdatedAt: timestamppb.New(c.UpdatedAt),
	}
	switch c.Kind {
	case providerconfig.KindSMTP:
		var st providerconfig.SMTP
		_ = json.Unmarshal(c.Settings, &st)
		out.Settings = &emailsenderv1.Provider_Smtp{Smtp: &emailsenderv1.SmtpSettings{
			Host: st.Host, Port: int32(st.Port), TlsMode: st.TLS, Username: st.Username, PoolSize: int32(st.PoolSize), Helo: st.HELO,
		}}
	case providerconfig.KindSES:
		var st providerconfig.SES
		_ = json.Unmarshal(c.Settings, &st)
		out.Settings = &emailsenderv1.Provider_Ses{Ses: &emailsenderv1.SesSettings{
			Region: st.Region, AccessKeyId: st.AccessKeyID, ConfigurationSet: st.ConfigurationSet, Endpoint: st.Endpoint,
		}}
	case providerconfig.KindGmail:
		var st providerconfig.Gmail
		_ = json.Unmarshal(c.Settings, &st)
		out.Settings = &emailsenderv1.Provider_Gmail{Gmail: &emailsenderv1.GmailSettings{
			ClientId: st.ClientID, SenderUser: st.SenderUser, TokenUrl: st.TokenURL, ApiEndpoint: st.APIEndpoint,
		}}
	case providerconfig.KindSandbox:
		out.Settings = &emailsenderv1.Provider_Sandbox{Sandbox: &emailsenderv1.SandboxSettings{}}
	}
	if c.LastVerify != nil {
		var rec verifyRecord
		if json.Unmarshal(c.LastVerify, &rec) == nil {
			out.LastVerify = &emailsenderv1.VerifyResult{Ok: rec.OK, Detail: rec.Detail, CheckedAt: ts(c.VerifiedAt), Ses: rec.SES.proto()}
		}
	}
	return out
}
