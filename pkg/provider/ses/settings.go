package ses

import (
	"regexp"
	"strings"

	"github.com/namirasoft/email-sender/pkg/provider"
	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// Kind is the provider kind configurations name this provider by.
const Kind = "ses"

// Settings are the non-secret settings of an ses provider configuration: the
// settings JSON stored by ingest (the API's SesSettings) and read by the
// sender (provider.Config.Settings).
type Settings struct {
	Region           string `json:"region"`
	AccessKeyID      string `json:"access_key_id"`
	ConfigurationSet string `json:"configuration_set,omitempty"`
	// Endpoint is no longer a tenant setting: the SES endpoint is the
	// operator's (SES_ENDPOINT, Options.Endpoint), or a tenant could point
	// ingest and the workers at internal addresses and have a fake endpoint
	// vouch for sender identities. Normalize refuses it; a value stored by an
	// earlier version is ignored.
	Endpoint string `json:"endpoint,omitempty"`
}

// Secret is the secret settings of an ses configuration (sealed by ingest,
// provider.Config.Secret).
type Secret struct {
	SecretAccessKey string `json:"secret_access_key,omitempty"`
}

// Fields names the secret fields that are set.
func (s Secret) Fields() []string {
	if s.SecretAccessKey == "" {
		return nil
	}
	return []string{"secret_access_key"}
}

var regionRE = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)

// Normalize validates s with its secret. Errors are *provider.FieldError
// naming the API field and never quote the secret.
func (s *Settings) Normalize(sec Secret) error {
	s.Region = strings.TrimSpace(s.Region)
	if s.Region == "" {
		return provider.Invalid("region", "is required")
	}
	if !regionRE.MatchString(s.Region) {
		return provider.Invalid("region", "%q is not an AWS region such as eu-west-1", s.Region)
	}
	if s.AccessKeyID == "" {
		return provider.Invalid("access_key_id", "is required")
	}
	if err := provider.CheckPlain(s.AccessKeyID); err != nil {
		return provider.Invalid("access_key_id", "%s", err)
	}
	if sec.SecretAccessKey == "" {
		return provider.Invalid("secret_access_key", "is required")
	}
	if err := provider.CheckPlain(s.ConfigurationSet); err != nil {
		return provider.Invalid("configuration_set", "%s", err)
	}
	if s.Endpoint != "" {
		return provider.Invalid("endpoint", "is an operator setting (SES_ENDPOINT of ingest and the worker), not a provider setting; leave it empty")
	}
	return nil
}

// FromAPI is the settings and secret that in (the API's SesSettings) sets,
// not yet normalized; an empty secret_access_key keeps stored's.
func FromAPI(in *emailsenderv1.SesSettings, stored Secret) (Settings, Secret) {
	s := Settings{Region: in.GetRegion(), AccessKeyID: in.GetAccessKeyId(),
		ConfigurationSet: in.GetConfigurationSet(), Endpoint: in.GetEndpoint()}
	sec := stored
	if k := in.GetSecretAccessKey(); k != "" {
		sec.SecretAccessKey = k
	}
	return s, sec
}

// API is s as the API shows it: no secret.
func (s Settings) API() *emailsenderv1.SesSettings {
	return &emailsenderv1.SesSettings{Region: s.Region, AccessKeyId: s.AccessKeyID,
		ConfigurationSet: s.ConfigurationSet}
}
