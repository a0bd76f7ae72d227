package account

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/namirasoft/email-sender/pkg/mime"
	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/ses"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest/store"
)

// sesInfo is the stored SES part of a VerifyResult (GetAccount's answer).
type sesInfo struct {
	Max24HourSend    float64 `json:"max_24_hour_send"`
	MaxSendRate      float64 `json:"max_send_rate"`
	SentLast24Hours  float64 `json:"sent_last_24_hours"`
	ProductionAccess bool    `json:"production_access"`
	SendingEnabled   bool    `json:"sending_enabled"`
}

func (i *sesInfo) proto() *emailsenderv1.SesAccountInfo {
	if i == nil {
		return nil
	}
	return &emailsenderv1.SesAccountInfo{
		Max_24HourSend: i.Max24HourSend, MaxSendRate: i.MaxSendRate, SentLast_24Hours: i.SentLast24Hours,
		ProductionAccess: i.ProductionAccess, SendingEnabled: i.SendingEnabled,
	}
}

// verifySES calls SES GetAccount with the configuration and keeps its sending
// quota and status. Refused credentials, a suspended account or paused
// sending make the configuration unhealthy.
func (s *Server) verifySES(ctx context.Context, pc provider.Config) (verifyRecord, *bool) {
	yes, no := true, false
	vctx, cancel := context.WithTimeout(ctx, s.cfg.VerifyTimeout)
	defer cancel()
	info, err := ses.Verify(vctx, pc)
	if err != nil {
		if errors.Is(err, ses.ErrCredentials) {
			return verifyRecord{Detail: err.Error()}, &no
		}
		return verifyRecord{Detail: err.Error()}, nil
	}
	rec := verifyRecord{OK: info.SendingEnabled, Detail: "SES GetAccount: " + info.String() + "; nothing was sent",
		SES: &sesInfo{Max24HourSend: info.Max24HourSend, MaxSendRate: info.MaxSendRate, SentLast24Hours: info.SentLast24Hours,
			ProductionAccess: info.ProductionAccess, SendingEnabled: info.SendingEnabled}}
	if !info.SendingEnabled {
		return rec, &no
	}
	return rec, &yes
}

// providerConfig loads a configuration of accountID with its secret opened.
func (s *Server) providerConfig(ctx context.Context, accountID, id string) (provider.Config, error) {
	cfg, err := store.GetProviderConfig(ctx, s.d.DB, accountID, id)
	if err != nil {
		return provider.Config{}, err
	}
	pc := provider.Config{ID: cfg.ID, AccountID: cfg.AccountID, Kind: cfg.Kind, Settings: cfg.Settings, Version: cfg.UpdatedAt}
	if len(cfg.Secret) > 0 {
		if s.d.Keyring == nil {
			return provider.Config{}, errors.New("the stored secret cannot be opened: ingest has no MASTER_KEYS")
		}
		if pc.Secret, err = s.d.Keyring.Open(cfg.Secret, []byte(cfg.ID)); err != nil {
			return provider.Config{}, fmt.Errorf("open provider secret: %w", err)
		}
	}
	return pc, nil
}

// sesIdentityVerified reports whether the SES account of providerID has an
// identity verified for sending that covers key: the address itself or its
// domain (key is an address, or a domain when isDomain). Errors (SES
// unreachable, refused credentials) count as not verified; they are logged.
func (s *Server) sesIdentityVerified(ctx context.Context, accountID, providerID, key string, isDomain bool) bool {
	pc, err := s.providerConfig(ctx, accountID, providerID)
	if err != nil {
		s.log.WarnContext(ctx, "ses identity check: load provider", "provider_id", providerID, "error", err)
		return false
	}
	addr := key
	if isDomain {
		addr = "postmaster@" + key
	}
	ascii, err := mime.CanonicalAddress(addr)
	if err != nil {
		return false
	}
	domain := ascii[strings.LastIndexByte(ascii, '@')+1:]
	identities := []string{domain}
	if !isDomain {
		identities = []string{ascii, domain}
	}
	vctx, cancel := context.WithTimeout(ctx, s.cfg.VerifyTimeout)
	defer cancel()
	for _, id := range identities {
		ok, err := ses.IdentityVerified(vctx, pc, id)
		if err != nil {
			s.log.WarnContext(ctx, "ses identity check", "provider_id", providerID, "identity", id, "error", err)
			return false
		}
		if ok {
			return true
		}
	}
	return false
}
