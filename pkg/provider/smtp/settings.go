package smtp

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/namirasoft/email-sender/pkg/provider"
	"github.com/namirasoft/email-sender/pkg/providerconfig"
)

// TLS modes of Settings.TLS.
const (
	TLSNone                  = "none"
	TLSStartTLS              = "starttls"
	TLSStartTLSOpportunistic = "starttls_opportunistic"
	TLSImplicit              = "implicit"
)

// ErrSettings is wrapped by every error about a configuration's settings.
var ErrSettings = errors.New("invalid smtp settings")

// Settings are the non-secret settings of an smtp provider configuration
// (provider.Config.Settings).
type Settings struct {
	Host string `json:"host"`
	// Port defaults to 465 with implicit TLS, 25 without TLS, else 587.
	Port int `json:"port"`
	// TLS is one of none, starttls (default), starttls_opportunistic, implicit.
	TLS      string `json:"tls"`
	Username string `json:"username"`
	// PoolSize bounds the open connections per configuration; default 4.
	PoolSize int `json:"pool_size"`
	// HELO is the name sent in EHLO: a fully qualified domain name or an
	// address literal. Default: the worker's (Options.HELO), which is the
	// host's FQDN or else the connection's address literal; never
	// "localhost".
	HELO string `json:"helo"`
	// TimeoutSeconds bounds dialling and each SMTP command; default 30.
	TimeoutSeconds int `json:"timeout_seconds"`
}

// secret is provider.Config.Secret.
type secret struct {
	Password string `json:"password"`
}

// config is a parsed provider.Config.
type config struct {
	Settings
	password string
	timeout  time.Duration
}

// ParseSettings decodes and validates cfg's settings and applies defaults.
func ParseSettings(cfg provider.Config) (Settings, error) {
	c, err := parseConfig(cfg)
	return c.Settings, err
}

func parseConfig(cfg provider.Config) (config, error) {
	var c config
	if len(cfg.Settings) == 0 {
		return c, fmt.Errorf("%w: settings are empty", ErrSettings)
	}
	if err := json.Unmarshal(cfg.Settings, &c.Settings); err != nil {
		return c, fmt.Errorf("%w: %v", ErrSettings, err)
	}
	if len(cfg.Secret) > 0 {
		var s secret
		// The decoder's error could quote the secret; never pass it on.
		if err := json.Unmarshal(cfg.Secret, &s); err != nil {
			return c, fmt.Errorf("%w: secret is not a JSON object with a password", ErrSettings)
		}
		c.password = s.Password
	}
	if c.Host == "" {
		return c, fmt.Errorf("%w: host is required", ErrSettings)
	}
	switch c.TLS {
	case "":
		c.TLS = TLSStartTLS
	case TLSNone, TLSStartTLS, TLSStartTLSOpportunistic, TLSImplicit:
	default:
		return c, fmt.Errorf("%w: tls %q is not one of none, starttls, starttls_opportunistic, implicit", ErrSettings, c.TLS)
	}
	if c.Port == 0 {
		switch c.TLS {
		case TLSImplicit:
			c.Port = 465
		case TLSNone:
			c.Port = 25
		default:
			c.Port = 587
		}
	}
	if c.Port < 1 || c.Port > 65535 {
		return c, fmt.Errorf("%w: port %d is out of range", ErrSettings, c.Port)
	}
	if c.PoolSize == 0 {
		c.PoolSize = 4
	}
	if c.PoolSize < 1 || c.PoolSize > 256 {
		return c, fmt.Errorf("%w: pool_size %d is out of range 1..256", ErrSettings, c.PoolSize)
	}
	if c.HELO != "" {
		if err := providerconfig.CheckHELO(c.HELO); err != nil {
			return c, fmt.Errorf("%w: helo %v", ErrSettings, err)
		}
	}
	if c.TimeoutSeconds == 0 {
		c.TimeoutSeconds = 30
	}
	if c.TimeoutSeconds < 0 {
		return c, fmt.Errorf("%w: timeout_seconds must be positive", ErrSettings)
	}
	if c.Username != "" && c.password == "" {
		return c, fmt.Errorf("%w: username without a password", ErrSettings)
	}
	c.timeout = time.Duration(c.TimeoutSeconds) * time.Second
	return c, nil
}
