package account

import (
	"context"
	"errors"
	"fmt"

	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/provider/kinds"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/ingest/store"
)

// sesInfo is the stored quota part of a VerifyResult (provider.Quota; SES
// GetAccount's answer, the API's SesAccountInfo).
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

// senderVerified reports whether the provider of providerID (of kind k)
// already vouches for a sender: an identity of its own verified for sending
// covers key, the address or its domain (key is an address, or a domain when
// isDomain). False when the kind keeps no identities; errors (the provider
// unreachable, refused credentials) count as not verified and are logged.
func (s *Server) senderVerified(ctx context.Context, k kinds.Kind, accountID, providerID, key string, isDomain bool) bool {
	check := s.d.Verifiers[k.Name].SenderVerified
	if check == nil {
		return false
	}
	pc, err := s.providerConfig(ctx, accountID, providerID)
	if err != nil {
		s.log.WarnContext(ctx, "sender identity check: load provider", "provider_id", providerID, "error", err)
		return false
	}
	vctx, cancel := context.WithTimeout(ctx, s.cfg.VerifyTimeout)
	defer cancel()
	ok, err := check(vctx, pc, key, isDomain)
	if err != nil {
		s.log.WarnContext(ctx, "sender identity check", "provider_id", providerID, "provider", k.Name, "error", err)
		return false
	}
	return ok
}
