package gmail

import (
	"errors"
	"fmt"

	"github.com/namirasoft/email-sender/pkg/provider"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// Kind is the provider kind configurations name this provider by.
const Kind = "gmail"

// DefaultTokenURL is Google's OAuth 2.0 token endpoint.
const DefaultTokenURL = "https://oauth2.googleapis.com/token"

// ErrSettings is wrapped by every error about a configuration's settings.
var ErrSettings = errors.New("invalid gmail settings")

// Settings are the non-secret settings of a gmail provider configuration: the
// settings JSON stored by ingest (the API's GmailSettings) and read by the
// sender (provider.Config.Settings).
type Settings struct {
	ClientID string `json:"client_id"`
	// SenderUser is the mailbox that sends: "me" (default) or an address.
	SenderUser string `json:"sender_user"`
	// TokenURL and APIEndpoint are no longer tenant settings: the endpoints
	// are the operator's (GMAIL_TOKEN_URL, GMAIL_API_ENDPOINT; Options), or a
	// tenant could point ingest and the workers at internal addresses.
	// Normalize refuses them; values stored by an earlier version are
	// ignored.
	TokenURL    string `json:"token_url,omitempty"`
	APIEndpoint string `json:"api_endpoint,omitempty"`
}

// Secret is the secret settings of a gmail configuration (sealed by ingest,
// provider.Config.Secret).
type Secret struct {
	ClientSecret string `json:"client_secret,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

// Fields names the secret fields that are set.
func (s Secret) Fields() []string {
	var out []string
	if s.ClientSecret != "" {
		out = append(out, "client_secret")
	}
	if s.RefreshToken != "" {
		out = append(out, "refresh_token")
	}
	return out
}

// Normalize applies the defaults and validates g with its secret. Errors are
// *provider.FieldError naming the API field and never quote a secret.
func (g *Settings) Normalize(sec Secret) error {
	if g.ClientID == "" {
		return provider.Invalid("client_id", "is required")
	}
	if err := provider.CheckPlain(g.ClientID); err != nil {
		return provider.Invalid("client_id", "%s", err)
	}
	if sec.ClientSecret == "" {
		return provider.Invalid("client_secret", "is required")
	}
	if sec.RefreshToken == "" {
		return provider.Invalid("refresh_token", "is required")
	}
	if g.SenderUser == "" {
		g.SenderUser = "me"
	}
	if err := provider.CheckPlain(g.SenderUser); err != nil {
		return provider.Invalid("sender_user", "%s", err)
	}
	if g.TokenURL != "" {
		return provider.Invalid("token_url", "is an operator setting (GMAIL_TOKEN_URL of ingest and the worker), not a provider setting; leave it empty")
	}
	if g.APIEndpoint != "" {
		return provider.Invalid("api_endpoint", "is an operator setting (GMAIL_API_ENDPOINT of ingest and the worker), not a provider setting; leave it empty")
	}
	return nil
}

// FromAPI is the settings and secret that in (the API's GmailSettings) sets,
// not yet normalized; empty secret fields keep stored's.
func FromAPI(in *emailsenderv1.GmailSettings, stored Secret) (Settings, Secret) {
	s := Settings{ClientID: in.GetClientId(), SenderUser: in.GetSenderUser(),
		TokenURL: in.GetTokenUrl(), APIEndpoint: in.GetApiEndpoint()}
	sec := stored
	if v := in.GetClientSecret(); v != "" {
		sec.ClientSecret = v
	}
	if v := in.GetRefreshToken(); v != "" {
		sec.RefreshToken = v
	}
	return s, sec
}

// API is g as the API shows it: no secret.
func (g Settings) API() *emailsenderv1.GmailSettings {
	return &emailsenderv1.GmailSettings{ClientId: g.ClientID, SenderUser: g.SenderUser}
}

// config is a parsed provider.Config.
type config struct {
	Settings
	secret Secret
}

func parseConfig(cfg provider.Config) (config, error) {
	var c config
	if err := provider.DecodeConfig(cfg, ErrSettings, &c.Settings, &c.secret); err != nil {
		return c, err
	}
	// Endpoints stored by an earlier version, when tenants could set them,
	// are not used: the operator's (Options) are.
	c.TokenURL, c.APIEndpoint = "", ""
	if err := c.Normalize(c.secret); err != nil {
		// FieldError texts name the field, never its value.
		return c, fmt.Errorf("%w: %v", ErrSettings, err)
	}
	return c, nil
}
