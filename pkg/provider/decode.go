package provider

import (
	"encoding/json"
	"fmt"
)

// DecodeConfig decodes a stored configuration's settings JSON into settings
// and its secret JSON (when there is one) into secret. Every error wraps
// errSettings (the kind's "invalid settings" error); a malformed secret is
// reported without the decoder's text, which could quote the secret.
func DecodeConfig(cfg Config, errSettings error, settings, secret any) error {
	if len(cfg.Settings) == 0 {
		return fmt.Errorf("%w: settings are empty", errSettings)
	}
	if err := json.Unmarshal(cfg.Settings, settings); err != nil {
		return fmt.Errorf("%w: %v", errSettings, err)
	}
	if len(cfg.Secret) > 0 {
		if err := json.Unmarshal(cfg.Secret, secret); err != nil {
			return fmt.Errorf("%w: the secret is not a JSON object of this kind's secret fields", errSettings)
		}
	}
	return nil
}
