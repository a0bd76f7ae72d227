package gmail

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/providerconfig"
)

// DefaultTokenURL is Google's OAuth 2.0 token endpoint.
const DefaultTokenURL = "https://oauth2.googleapis.com/token"

// ErrSettings is wrapped by every error about a configuration's settings.
var ErrSettings = errors.New("invalid gmail settings")

// config is a parsed provider.Config.
type config struct {
	providerconfig.Gmail
	secret providerconfig.GmailSecret
}

func parseConfig(cfg provider.Config) (config, error) {
	var c config
	if len(cfg.Settings) == 0 {
		return c, fmt.Errorf("%w: settings are empty", ErrSettings)
	}
	if err := json.Unmarshal(cfg.Settings, &c.Gmail); err != nil {
		return c, fmt.Errorf("%w: %v", ErrSettings, err)
	}
	if len(cfg.Secret) > 0 {
		// The decoder's error could quote the secret; never pass it on.
		if err := json.Unmarshal(cfg.Secret, &c.secret); err != nil {
			return c, fmt.Errorf("%w: secret is not a JSON object with client_secret and refresh_token", ErrSettings)
		}
	}
	if err := c.Normalize(c.secret); err != nil {
		// FieldError texts name the field, never its value.
		return c, fmt.Errorf("%w: %v", ErrSettings, err)
	}
	if c.TokenURL == "" {
		c.TokenURL = DefaultTokenURL
	}
	if c.APIEndpoint != "" && !strings.HasSuffix(c.APIEndpoint, "/") {
		// The client resolves "gmail/v1/users/..." against it.
		c.APIEndpoint += "/"
	}
	return c, nil
}
